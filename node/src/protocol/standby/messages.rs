//! Wire messages, client requests and replies, log entries and durable
//! records of the standby bank. Kept apart from the logic so the codec and
//! the fault layer can name every kind.

use super::{AccountId, Balance, Bank, Epoch};
use crate::api::Outcome;
use crate::protocol::{MessageKind, NodeId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A client operation, as `/ops` takes it. Amounts are non-negative by type;
/// one above [`super::MAX_AMOUNT`] is refused before it reaches a server.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    Lookup { account: AccountId },
    Withdraw { account: AccountId, amount: u64 },
    Deposit { account: AccountId, amount: u64 },
}

impl Request {
    /// The `kind` label of metrics and histories.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Lookup { .. } => "lookup",
            Request::Withdraw { .. } => "withdraw",
            Request::Deposit { .. } => "deposit",
        }
    }

    pub fn account(&self) -> AccountId {
        match self {
            Request::Lookup { account }
            | Request::Withdraw { account, .. }
            | Request::Deposit { account, .. } => *account,
        }
    }

    /// Writes go through the log; lookups do not.
    pub fn is_write(&self) -> bool {
        !matches!(self, Request::Lookup { .. })
    }
}

/// A request's identity, chosen by its client and kept across retries and
/// failovers: the key of deduplication.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId {
    pub client: NodeId,
    pub seq: u64,
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.client, self.seq)
    }
}

/// What the bank answered. Every answer is definite: a refused withdrawal
/// changed nothing and says the balance it saw.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// The balance after the operation (a lookup's: the current one).
    Balance { balance: Balance },
    /// "Withdraw amount must be less than balance": nothing changed.
    Overdraft { balance: Balance },
    /// The deposit would overflow the balance: nothing changed.
    TooLarge { balance: Balance },
    /// "Account not found".
    NotFound,
}

/// Why an operation failed before any server ran it, or why its outcome is
/// unknown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpError {
    /// Sent to a server: only clients run operations.
    NotAClient,
    /// An amount above the limit (nothing was sent).
    AmountTooLarge { max: u64 },
    /// No server answered before the deadline: it may have been applied.
    Deadline,
    /// The request id is older than the servers' deduplication window, so
    /// its first outcome is forgotten; it was not applied again.
    Expired,
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpError::NotAClient => write!(f, "servers take no client operations; ask a client"),
            OpError::AmountTooLarge { max } => write!(f, "amount above the limit of {max}"),
            OpError::Deadline => write!(
                f,
                "no server answered before the deadline; the operation may or may not have been applied"
            ),
            OpError::Expired => write!(
                f,
                "the request is older than the servers' deduplication window; its outcome is unknown"
            ),
        }
    }
}

/// A client node's reply to `/ops`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// A server ran it: the answer, and which server acknowledged it in
    /// which epoch, at which log position (writes; a lookup's is the
    /// position it read).
    Done {
        id: RequestId,
        answer: Answer,
        server: NodeId,
        epoch: u64,
        action_id: u64,
    },
    /// It did not run and never will.
    Failed { error: OpError },
    /// It may or may not have run.
    Unknown { id: RequestId, error: OpError },
}

impl Reply {
    pub fn outcome(&self) -> Outcome {
        match self {
            Reply::Done { .. } => Outcome::Ok,
            Reply::Failed { .. } => Outcome::Failed,
            Reply::Unknown { .. } => Outcome::Unknown,
        }
    }
}

/// One write in a server's log. `action_id` is its position (the seed's
/// action id), `epoch` the epoch of the primary that ordered it, `answer`
/// what it answered (a standby recomputes it and must agree).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub action_id: u64,
    pub epoch: u64,
    pub id: RequestId,
    pub request: Request,
    pub answer: Answer,
}

/// A server's answer to a client's request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    Done {
        answer: Answer,
        epoch: u64,
        action_id: u64,
    },
    /// Not the primary; the one this server knows of, if any.
    NotPrimary { primary: Option<NodeId> },
    /// The primary cannot serve now (a new epoch is being chosen); retry.
    Busy,
    /// The request id is below the deduplication window.
    Expired,
}

/// The kind of a message is its variant's name in snake_case.
#[derive(
    Clone, Debug, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
#[strum(serialize_all = "snake_case")]
pub enum Msg {
    /// Client -> server. `tag` matches the answer to the attempt.
    Op {
        tag: u64,
        id: RequestId,
        request: Request,
    },
    /// Server -> client.
    OpReply { tag: u64, result: OpResult },
    /// Primary -> standby: entries in log order (possibly none: a
    /// heartbeat), and a probe number the standby echoes so that reads can
    /// tell the standby still follows this epoch.
    Replicate {
        epoch: Epoch,
        entries: Vec<Entry>,
        probe: u64,
    },
    /// Standby -> primary: everything up to `applied` is durable here.
    ReplicateAck {
        epoch: u64,
        applied: u64,
        probe: u64,
    },
    /// Standby -> primary: I do not follow your log; send a snapshot
    /// answering `nonce` (drawn at random by this process, so no snapshot
    /// sent before it, duplicated or delayed, can pass for the answer).
    NeedSnapshot { epoch: u64, nonce: u64 },
    /// Primary -> standby: the whole state (state transfer), answering a
    /// request's nonce, or `None` when a standby that follows this log has
    /// fallen behind what the log still keeps.
    Snapshot {
        epoch: Epoch,
        bank: Bank,
        nonce: Option<u64>,
    },
    /// Server -> server: your epoch is over; here is a newer one.
    Fenced { epoch: Epoch },
    /// Proposer -> witness: phase 1 of choosing epoch `n`.
    Prepare { n: u64 },
    /// Witness -> proposer: promised `n`; the newest epoch it accepted.
    Promise { n: u64, accepted: Epoch },
    /// Proposer -> witness: phase 2.
    Accept { epoch: Epoch },
    /// Witness -> proposer: accepted this epoch (the value, not only its
    /// number, so an answer to an older proposal cannot count for a newer).
    Accepted { epoch: Epoch },
    /// Witness -> proposer: refused `n`; what it promised and accepted.
    Nack {
        n: u64,
        promised: u64,
        accepted: Epoch,
    },
}

impl MessageKind for Msg {
    const KINDS: &'static [&'static str] = <Msg as strum::VariantNames>::VARIANTS;
    fn kind(&self) -> &'static str {
        self.into()
    }
}

/// A durable log entry. Replaying a node's records rebuilds its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// Server: the epoch it follows or leads from now on.
    Epoch(Epoch),
    /// Server: one write applied, in log order.
    Entry(Entry),
    /// Server: a snapshot installed (replaces the whole state).
    Installed(Bank),
    /// Client: request numbers up to this one may have been used.
    SeqReserved(u64),
    /// Witness: promised not to accept below `n`.
    Promised(u64),
    /// Server: about to propose round `n` (never proposes it again, even
    /// after a restart, so a number always stands for one value).
    Proposed(u64),
    /// Witness: accepted this epoch.
    Accepted(Epoch),
}
