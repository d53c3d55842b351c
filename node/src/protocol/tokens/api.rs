//! The token system's state as `/state` serves it (beside the generic id and
//! role), read by the `status` and `tokenstatus` verbs and by the
//! controller's quiescence check.

use super::TokenId;
use crate::protocol::NodeId;
use serde::{Deserialize, Serialize};

/// One node's view: its configuration and, on a server, its token table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokensState {
    /// The newest configuration epoch this node knows.
    pub epoch: u64,
    /// The servers of that epoch, sorted.
    pub servers: Vec<NodeId>,
    /// Serves reads and writes of the current configuration now.
    pub serving: bool,
    /// Frozen by a reconfiguration in progress.
    pub frozen: bool,
    /// The token table, present exactly on a server that installed `epoch`.
    pub tokens: Option<Vec<TokenRow>>,
    /// Client operations still running on this node.
    pub pending_ops: usize,
    /// This node is coordinating a transform.
    pub transforming: bool,
}

/// One token in a server's table: its register value `(tag, owner)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRow {
    pub token: TokenId,
    pub version: u64,
    pub writer: NodeId,
    pub nonce: u64,
    pub owner: NodeId,
}
