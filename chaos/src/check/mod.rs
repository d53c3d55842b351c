//! History checkers.
//!
//! The linearizability checker is split so that each piece can be reused on its own:
//! - [`history`]: what a recorded client history is (operations with call/return times and
//!   possibly unknown outcomes), plus the call/return event form histories are recorded in.
//! - [`model`]: the sequential specifications a history is judged against (`Model`), and the
//!   generic models: a register and a key-value store (a system's model lives in its folder).
//! - [`linearizability`]: the Wing-Gong-Lowe search with P-compositionality, bounds and
//!   counter-examples.
//! - [`porcupine`]: parsers for Porcupine's public test histories, the checker's external test.

pub mod history;
pub mod linearizability;
pub mod model;
pub mod porcupine;

pub use history::{ClientId, Event, HistoryError, Operation, Outcome, Time};
pub use linearizability::{
    check, check_parallel, CheckError, CheckOptions, CheckResult, Counterexample, Limit,
    StepReport, UnplacedOp, Verdict,
};
pub use model::{
    KeyValue, KvInput, KvOp, KvOutput, KvValue, Model, Partition, Register, RegisterInput,
    RegisterOutput,
};
