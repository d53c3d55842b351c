//! faultline-node: the polymorphic node of the faultline testbed.
//!
//! Layout:
//! - [`protocol`]: sans-IO protocol cores, one module per system. No I/O, no
//!   clocks, no ambient randomness: drivers pass `now` and an RNG in.
//! - [`sim`]: a seeded discrete-event simulator that runs any core on a
//!   faulty in-memory network; every system's property tests use it.
//! - [`config`]: the cluster file, validated with positions in errors.
//! - [`faults`]: the message fault layer's rules and decisions (pure).
//! - [`transport`]: QUIC with mutual TLS, framing, the connection mesh.
//! - [`runtime`]: drives a core over the mesh; durable log, admin API,
//!   client history, load generator.
//! - [`metrics`]: the process's Prometheus registry.
//! - [`cli`]: the `faultline-node client` verbs and prompt.
//! - [`system`]: the seam every system implements, and the registry.
//! - [`api`]: the typed admin API shared with the controller.
//! - [`hash`]: FNV-1a for reproducible seeds.
pub mod api;
pub mod cli;
pub mod config;
pub mod faults;
pub mod hash;
pub mod logging;
pub mod metrics;
pub mod protocol;
pub mod runtime;
pub mod sim;
pub mod system;
pub mod transport;
