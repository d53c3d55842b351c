//! faultline-chaos: the chaos controller.
//!
//! Layout:
//! - `check`: history checkers (linearizability search over sequential models).
//! - `proxy`: the UDP packet proxy, one port per directed link, with packet faults.
//! - `record`: a run as recorded in its directory; `results`: its verdict.
//! - `prom`: the Prometheus text format parser used by the scraper.
//! - `scenario`: scenario files and the seeded nemesis schedule.
//! - `platform`: where nodes run (local processes, docker compose,
//!   Kubernetes); `freezer`: the sidecar that pauses a node in its pod.
//! - `nemesis`: applying and healing faults at the message, packet and
//!   process layers; `workload`: driving clients and recording histories.
//! - `systems`: what the controller knows of each system (workload, checks,
//!   model), behind one trait and one registry.
//! - `runner`: one whole run; `judge`: the checks; `report`: the outputs.
//! - `terminal`: `up`/`down`/`status`/`fault` for a cluster kept running.
//! - `metrics`: the controller's own Prometheus metrics; `jobs`: scheduled
//!   runs (`schedule`) with their results index.
pub mod check;
pub mod freezer;
pub mod jobs;
pub mod judge;
pub mod metrics;
pub mod nemesis;
pub mod platform;
pub mod prom;
pub mod proxy;
pub mod record;
pub mod report;
pub mod results;
pub mod runner;
pub mod scenario;
pub mod systems;
pub mod terminal;
pub mod workload;
