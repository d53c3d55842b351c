//! faultline-chaos: the chaos controller.
//!
//! Layout:
//! - `check`: history checkers (linearizability search over sequential models).
//! - `proxy`: the UDP packet proxy, one port per directed link, with packet faults.
pub mod check;
pub mod proxy;
