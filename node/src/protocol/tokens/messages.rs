//! Wire messages, client requests and replies, and durable records of the
//! token system. Kept apart from the logic so the codec and the fault layer can
//! name every kind.

use super::{Config, Tag, TokenId, TokenState};
use crate::api::Outcome;
use crate::protocol::{MessageKind, NodeId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Which tokens a read asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Selection {
    One(TokenId),
    All,
}

/// One register write. `prev` is the tag the payer read; a write-back has none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteEntry {
    pub token: TokenId,
    pub tag: Tag,
    pub owner: NodeId,
    pub prev: Option<Tag>,
}

/// Why a server refused a request. None of these is an acknowledgement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// The sender's epoch is older than the server's; here is the newer one.
    StaleEpoch(Config),
    /// A reconfiguration froze this configuration; retry later.
    Frozen,
    /// The server is not (yet) a serving member of the sender's epoch.
    NotReady { epoch: u64 },
    /// The payer does not own the token at the version it read.
    NotOwner { token: TokenId },
    /// The server already holds another write of this pay's version: the
    /// payer's read was stale (never happens in a correct client).
    Conflict { token: TokenId, version: u64 },
    /// The new owner is not a client, or the token does not exist.
    Invalid(String),
}

/// A Paxos ballot for choosing the next configuration: `(round, proposer)`.
pub type BallotNo = (u64, NodeId);

/// The kind of a message is its variant's name in snake_case (`read_ok`),
/// derived so that the list of kinds cannot drift from the enum.
#[derive(
    Clone, Debug, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
#[strum(serialize_all = "snake_case")]
pub enum Msg {
    /// Client -> server: quorum read. `rid` identifies the phase of one operation.
    Read {
        rid: u64,
        epoch: u64,
        sel: Selection,
    },
    ReadOk {
        rid: u64,
        entries: Vec<(TokenId, TokenState)>,
    },
    Write {
        rid: u64,
        epoch: u64,
        entries: Vec<WriteEntry>,
    },
    WriteOk {
        rid: u64,
    },
    Refused {
        rid: u64,
        why: Refusal,
    },
    /// Reconfiguration, phase 1: promise not to serve `epoch - 1` any more and
    /// not to accept lower ballots for `epoch`.
    Prepare {
        rid: u64,
        epoch: u64,
        ballot: BallotNo,
    },
    Promise {
        rid: u64,
        epoch: u64,
        tokens: Vec<TokenState>,
        accepted: Option<(BallotNo, Config)>,
    },
    /// Reconfiguration, phase 2.
    Accept {
        rid: u64,
        ballot: BallotNo,
        config: Config,
    },
    Accepted {
        rid: u64,
    },
    /// A higher ballot exists; retry above it.
    Nack {
        rid: u64,
        promised: BallotNo,
    },
    /// Reconfiguration, phase 3: the chosen configuration and the state the new
    /// servers start from.
    Install {
        rid: u64,
        config: Config,
        tokens: Vec<TokenState>,
    },
    Installed {
        rid: u64,
        epoch: u64,
    },
    /// A newer configuration exists (gossip; no reply).
    News {
        config: Config,
    },
    /// A member of `epoch` that has not installed it asks a peer for state.
    Fetch {
        epoch: u64,
    },
    /// Payer -> new owner after a pay is at a majority: the token's tag, so
    /// the new owner can pay it on without reading it first. A hint only.
    Gift {
        token: TokenId,
        tag: Tag,
    },
}

impl MessageKind for Msg {
    const KINDS: &'static [&'static str] = <Msg as strum::VariantNames>::VARIANTS;
    fn kind(&self) -> &'static str {
        self.into()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    Pay { token: TokenId, to: NodeId },
    GetTokens { owner: NodeId },
    Transform,
}

impl Request {
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Pay { .. } => "pay",
            Request::GetTokens { .. } => "gettokens",
            Request::Transform => "transform",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Reply {
    /// The pay is durable at a majority: `tag` is the token's new version.
    Paid {
        token: TokenId,
        tag: Tag,
    },
    /// The owner's tokens with their versions, read atomically.
    Tokens {
        owner: NodeId,
        tokens: Vec<(TokenId, u64)>,
    },
    /// The node now has the role named, in the configuration given.
    Transformed {
        role: String,
        config: Config,
    },
    Failed {
        error: OpError,
    },
    /// The operation may or may not have taken effect; it will never take
    /// effect later than its next write by the same client.
    Unknown {
        reason: String,
    },
}

impl Reply {
    pub fn outcome(&self) -> Outcome {
        match self {
            Reply::Failed { .. } => Outcome::Failed,
            Reply::Unknown { .. } => Outcome::Unknown,
            _ => Outcome::Ok,
        }
    }
}

/// A definite failure: the operation changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "error", content = "detail", rename_all = "snake_case")]
pub enum OpError {
    UnknownToken(TokenId),
    UnknownNode(NodeId),
    NotOwned(TokenId),
    NotAClient(NodeId),
    ServersCannotPay,
    ServersCannotGetTokens,
    MinServers(usize),
    MaxServers(usize),
    NoQuorum(String),
    Conflict(String),
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpError::UnknownToken(t) => write!(f, "unknown token {t}"),
            OpError::UnknownNode(n) => write!(f, "unknown node {n:?}"),
            OpError::NotOwned(t) => write!(f, "token {t} is not owned by this client"),
            OpError::NotAClient(n) => write!(f, "{n} is not a client, so it cannot own tokens"),
            OpError::ServersCannotPay => write!(f, "servers cannot initiate payments"),
            OpError::ServersCannotGetTokens => write!(f, "servers cannot send gettokens requests"),
            OpError::MinServers(n) => {
                write!(
                    f,
                    "minimum server count ({n}) reached; cannot transform to client"
                )
            }
            OpError::MaxServers(n) => {
                write!(
                    f,
                    "maximum server count ({n}) reached; cannot transform to server"
                )
            }
            OpError::NoQuorum(what) => write!(f, "no majority answered: {what}"),
            OpError::Conflict(what) => write!(f, "{what}"),
        }
    }
}

/// Durable state changes, replayed in order on restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A server applied a write.
    Token {
        token: TokenId,
        state: TokenState,
    },
    /// This node installed `config` as a server with this full table.
    Installed {
        config: Config,
        tokens: Vec<TokenState>,
    },
    /// This node learned `config` and is not one of its serving members.
    Learned {
        config: Config,
    },
    Promised {
        epoch: u64,
        ballot: BallotNo,
    },
    Accepted {
        epoch: u64,
        ballot: BallotNo,
        config: Config,
    },
    /// Nonces below this value may have been used.
    NonceReserved {
        upto: u64,
    },
    /// A pay ended unknown; its write must be completed before the client
    /// writes the token again.
    Unresolved {
        entry: WriteEntry,
    },
    /// That write is now at a majority.
    Resolved {
        token: TokenId,
    },
}
