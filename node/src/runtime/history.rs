//! The client's operation history, served at `GET /history` for the checker:
//! every operation with its invocation and completion times (Unix
//! microseconds, so histories of processes on one host share a clock), its
//! arguments and its result. An operation still running when the history is
//! read is reported `pending`, which a checker must treat as unknown.

pub use crate::api::{HistoryDump, HistoryOp, Outcome};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// Operations beyond this many are counted but not kept, so a long load run
/// cannot exhaust memory.
const MAX_OPS: usize = 2_000_000;

#[derive(Default)]
struct Inner {
    next: u64,
    done: Vec<HistoryOp>,
    running: BTreeMap<u64, HistoryOp>,
    truncated: u64,
}

#[derive(Default)]
pub struct History {
    inner: Mutex<Inner>,
}

pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl History {
    /// The history even if a thread panicked while holding it: a panic must
    /// not turn recording into a silent no-op, since a lost entry can change
    /// a verdict.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records an invocation; returns its id for [`History::complete`].
    pub fn invoke(&self, client: &str, kind: &str, request: serde_json::Value) -> u64 {
        let mut h = self.lock();
        h.next += 1;
        let id = h.next;
        h.running.insert(
            id,
            HistoryOp {
                id,
                client: client.to_string(),
                kind: kind.to_string(),
                request,
                invoke_us: unix_us(),
                complete_us: None,
                outcome: Outcome::Pending,
                reply: None,
                note: None,
            },
        );
        id
    }

    pub fn complete(&self, id: u64, outcome: Outcome, reply: serde_json::Value) {
        let mut h = self.lock();
        let Some(mut op) = h.running.remove(&id) else {
            debug_assert!(false, "history op {id} completed twice or never invoked");
            tracing::error!(
                id,
                "history: completion of an operation that is not running"
            );
            return;
        };
        op.complete_us = Some(unix_us());
        op.outcome = outcome;
        op.reply = Some(reply);
        if h.done.len() < MAX_OPS {
            h.done.push(op);
        } else {
            h.truncated += 1;
        }
    }

    pub fn dump(&self) -> HistoryDump {
        let h = self.lock();
        let mut ops: Vec<HistoryOp> = h.done.iter().chain(h.running.values()).cloned().collect();
        ops.sort_by_key(|o| (o.invoke_us, o.id));
        HistoryDump {
            ops,
            truncated: h.truncated,
        }
    }
}
