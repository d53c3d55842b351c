//! Active and passive replication with fault detectors and a replication
//! manager (seed 002), being built to the design in `docs/replication.md`
//! (issue 10). Built so far: detection ([`detect`]: the LFD's heartbeats
//! with a timeout that fires, the GFD's membership that drops a silent
//! LFD) views ([`view`]: the RM's numbered views, never reused), the keyed
//! store with its outcome table ([`store`]), passive mode's replica
//! ([`passive`]) and active mode's ([`active`]: a sequencer's total order,
//! stable before execution, carried across view changes by a sync). Not yet a system: it is not in the registry.

pub mod active;
pub mod detect;
pub mod passive;
pub mod store;
pub mod view;
