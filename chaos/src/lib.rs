//! faultline-chaos: the chaos controller.
//!
//! Layout:
//! - `check`: history checkers (linearizability search over sequential models).
//! - `proxy`: the UDP packet proxy, one port per directed link, with packet faults.
//! - `record`: a run as recorded in its directory; `results`: its verdict.
//! - `prom`: the Prometheus text format parser used by the scraper.
pub mod check;
pub mod judge;
pub mod prom;
pub mod proxy;
pub mod record;
pub mod report;
pub mod results;
