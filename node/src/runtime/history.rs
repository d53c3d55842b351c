//! The client's operation history, served at `GET /history` for the checker:
//! every operation with its invocation and completion times (Unix
//! microseconds, so histories of processes on one host share a clock), its
//! arguments and its result. An operation still running when the history is
//! read is reported `pending`, which a checker must treat as unknown.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HistoryOp {
    pub id: u64,
    pub client: String,
    pub kind: String,
    pub request: serde_json::Value,
    pub invoke_us: u64,
    pub complete_us: Option<u64>,
    /// ok | failed | unknown | pending
    pub outcome: String,
    pub reply: Option<serde_json::Value>,
}

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

#[derive(Serialize)]
pub struct HistoryDump {
    pub ops: Vec<HistoryOp>,
    pub truncated: u64,
}

impl History {
    /// Records an invocation; returns its id for [`History::complete`].
    pub fn invoke(&self, client: &str, kind: &str, request: serde_json::Value) -> u64 {
        let Ok(mut h) = self.inner.lock() else {
            return 0;
        };
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
                outcome: "pending".into(),
                reply: None,
            },
        );
        id
    }

    pub fn complete(&self, id: u64, outcome: &str, reply: serde_json::Value) {
        let Ok(mut h) = self.inner.lock() else { return };
        let Some(mut op) = h.running.remove(&id) else {
            return;
        };
        op.complete_us = Some(unix_us());
        op.outcome = outcome.to_string();
        op.reply = Some(reply);
        if h.done.len() < MAX_OPS {
            h.done.push(op);
        } else {
            h.truncated += 1;
        }
    }

    pub fn dump(&self) -> HistoryDump {
        let Ok(h) = self.inner.lock() else {
            return HistoryDump {
                ops: Vec::new(),
                truncated: 0,
            };
        };
        let mut ops: Vec<HistoryOp> = h.done.iter().chain(h.running.values()).cloned().collect();
        ops.sort_by_key(|o| (o.invoke_us, o.id));
        HistoryDump {
            ops,
            truncated: h.truncated,
        }
    }
}
