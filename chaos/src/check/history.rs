//! Client histories: what the workload recorded, in the two shapes checkers need.
//!
//! A history is a list of [`Operation`]s, each with the time its client invoked it, the time it
//! returned (if it did) and what it returned. Workloads and Jepsen-style logs record the other
//! shape, a stream of call and return [`Event`]s matched through the client id;
//! [`operations_from_events`] turns one into the other. Types here are generic over the model's
//! input and output so the same history type serves every model.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use thiserror::Error;

/// A point in time on the history's clock. Only the order matters, so any monotonic unit works
/// (nanoseconds since the run started, or line numbers of a log).
pub type Time = u64;

/// The client (Jepsen's "process") that issued an operation. A client has at most one operation
/// open at a time; a client whose outcome is unknown should retire and come back under a new id,
/// as Jepsen does, because its next call could otherwise overlap the lost one.
pub type ClientId = u64;

/// What an operation returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome<O> {
    /// The operation completed and returned this output (which may itself be a refusal, such as
    /// a failed compare-and-set: a definite answer either way).
    Ok(O),
    /// Nobody knows: the request timed out, the connection dropped, the client crashed (Jepsen's
    /// `:info`). The operation may have taken effect at any time after its call, even after the
    /// client stopped waiting, or never.
    Unknown,
}

impl<O> Outcome<O> {
    /// The output if it is known.
    pub fn known(&self) -> Option<&O> {
        match self {
            Outcome::Ok(o) => Some(o),
            Outcome::Unknown => None,
        }
    }

    /// True for [`Outcome::Ok`].
    pub fn is_known(&self) -> bool {
        matches!(self, Outcome::Ok(_))
    }
}

/// One operation of a history.
///
/// `ret` is `None` when the client never saw a reply. For an [`Outcome::Unknown`] operation the
/// checker ignores `ret` (it treats the return as +infinity): a request the client gave up on
/// can still be applied later by the system, so its return time bounds nothing. `ret` is kept
/// for reports. An operation with a known output must have `ret`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation<I, O> {
    pub client: ClientId,
    pub input: I,
    pub call: Time,
    pub ret: Option<Time>,
    pub output: Outcome<O>,
}

impl<I, O> Operation<I, O> {
    /// An operation that returned `output` at `ret`.
    pub fn ok(client: ClientId, input: I, call: Time, ret: Time, output: O) -> Self {
        Operation {
            client,
            input,
            call,
            ret: Some(ret),
            output: Outcome::Ok(output),
        }
    }

    /// An operation whose outcome is unknown; `ret` is when the client gave up, if it did.
    pub fn unknown(client: ClientId, input: I, call: Time, ret: Option<Time>) -> Self {
        Operation {
            client,
            input,
            call,
            ret,
            output: Outcome::Unknown,
        }
    }

    /// Checks the invariants the checker relies on.
    pub fn validate(&self) -> Result<(), HistoryError> {
        if let Some(ret) = self.ret {
            if ret < self.call {
                return Err(HistoryError::ReturnBeforeCall {
                    client: self.client,
                    call: self.call,
                    ret,
                });
            }
        }
        if self.output.is_known() && self.ret.is_none() {
            return Err(HistoryError::KnownOutputWithoutReturn {
                client: self.client,
                call: self.call,
            });
        }
        Ok(())
    }
}

/// A history event, the form clients record as they go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event<I, O> {
    Call {
        time: Time,
        client: ClientId,
        input: I,
    },
    Return {
        time: Time,
        client: ClientId,
        output: Outcome<O>,
    },
}

impl<I, O> Event<I, O> {
    pub fn time(&self) -> Time {
        match self {
            Event::Call { time, .. } | Event::Return { time, .. } => *time,
        }
    }
}

/// Malformed histories.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HistoryError {
    #[error("client {client}: return at time {time} without an open call")]
    ReturnWithoutCall { client: ClientId, time: Time },
    #[error(
        "client {client}: call at time {time} while its call at time {open_since} is still open"
    )]
    AlreadyOpen {
        client: ClientId,
        time: Time,
        open_since: Time,
    },
    #[error("client {client}: return at time {ret} is before its call at time {call}")]
    ReturnBeforeCall {
        client: ClientId,
        call: Time,
        ret: Time,
    },
    #[error(
        "client {client}: operation called at time {call} has a known output but no return time"
    )]
    KnownOutputWithoutReturn { client: ClientId, call: Time },
}

/// Pairs calls with returns through the client id.
///
/// Operations come out in the order of their calls. A call still open at the end becomes an
/// [`Outcome::Unknown`] operation with no return, which is what a Jepsen `:info` means.
pub fn operations_from_events<I, O>(
    events: impl IntoIterator<Item = Event<I, O>>,
) -> Result<Vec<Operation<I, O>>, HistoryError> {
    let mut ops: Vec<Operation<I, O>> = Vec::new();
    let mut open: HashMap<ClientId, usize> = HashMap::new();
    for event in events {
        match event {
            Event::Call {
                time,
                client,
                input,
            } => {
                if let Some(&idx) = open.get(&client) {
                    return Err(HistoryError::AlreadyOpen {
                        client,
                        time,
                        open_since: ops[idx].call,
                    });
                }
                open.insert(client, ops.len());
                ops.push(Operation::unknown(client, input, time, None));
            }
            Event::Return {
                time,
                client,
                output,
            } => {
                let idx = open
                    .remove(&client)
                    .ok_or(HistoryError::ReturnWithoutCall { client, time })?;
                let op = &mut ops[idx];
                if time < op.call {
                    return Err(HistoryError::ReturnBeforeCall {
                        client,
                        call: op.call,
                        ret: time,
                    });
                }
                op.ret = Some(time);
                op.output = output;
            }
        }
    }
    Ok(ops)
}

/// The event form of a history, sorted by time with calls before returns at equal times (the
/// checker's own tie rule: equal timestamps count as concurrent).
pub fn events_from_operations<I: Clone, O: Clone>(ops: &[Operation<I, O>]) -> Vec<Event<I, O>> {
    /// Time, calls (0) before returns (1), then operation order.
    type Key = (Time, u8, usize);
    let mut keyed: Vec<(Key, Event<I, O>)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        keyed.push((
            (op.call, 0, i),
            Event::Call {
                time: op.call,
                client: op.client,
                input: op.input.clone(),
            },
        ));
        if let Some(ret) = op.ret {
            keyed.push((
                (ret, 1, i),
                Event::Return {
                    time: ret,
                    client: op.client,
                    output: op.output.clone(),
                },
            ));
        }
    }
    keyed.sort_by_key(|(k, _)| *k);
    keyed.into_iter().map(|(_, e)| e).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_open_calls_become_unknown() {
        let events: Vec<Event<&str, i32>> = vec![
            Event::Call {
                time: 0,
                client: 1,
                input: "a",
            },
            Event::Call {
                time: 1,
                client: 2,
                input: "b",
            },
            Event::Return {
                time: 2,
                client: 1,
                output: Outcome::Ok(7),
            },
            Event::Call {
                time: 3,
                client: 1,
                input: "c",
            },
            Event::Return {
                time: 4,
                client: 1,
                output: Outcome::Unknown,
            },
        ];
        let ops = operations_from_events(events.clone()).expect("well formed");
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0], Operation::ok(1, "a", 0, 2, 7));
        assert_eq!(ops[1], Operation::unknown(2, "b", 1, None));
        assert_eq!(ops[2], Operation::unknown(1, "c", 3, Some(4)));
        assert_eq!(events_from_operations(&ops), events);
    }

    #[test]
    fn malformed_event_streams_are_rejected() {
        let double: Vec<Event<(), ()>> = vec![
            Event::Call {
                time: 0,
                client: 1,
                input: (),
            },
            Event::Call {
                time: 1,
                client: 1,
                input: (),
            },
        ];
        assert!(matches!(
            operations_from_events(double),
            Err(HistoryError::AlreadyOpen { client: 1, .. })
        ));
        let orphan: Vec<Event<(), ()>> = vec![Event::Return {
            time: 0,
            client: 3,
            output: Outcome::Ok(()),
        }];
        assert!(matches!(
            operations_from_events(orphan),
            Err(HistoryError::ReturnWithoutCall { client: 3, .. })
        ));
    }

    #[test]
    fn validate_catches_inverted_and_missing_returns() {
        let mut op = Operation::ok(1, (), 5, 4, ());
        assert!(op.validate().is_err());
        op.ret = None;
        assert!(matches!(
            op.validate(),
            Err(HistoryError::KnownOutputWithoutReturn { .. })
        ));
        assert!(Operation::<(), ()>::unknown(1, (), 5, None)
            .validate()
            .is_ok());
    }
}
