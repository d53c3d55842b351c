//! The standby bank's state as `/state` serves it (beside the generic id
//! and role): read by the `status` verb, the metrics, and the controller's
//! checks (the survivor's log, balances, epochs).

use super::{AccountId, Balance, Entry, Epoch, StandbyNode};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandbyState {
    /// The epoch this node follows or leads (a client: the one it accepted
    /// last as a witness).
    pub epoch: Epoch,
    /// Server: `primary`, `standby` (synced with the primary's log) or
    /// `recovering` (waiting for a snapshot or a round); client: `client`.
    pub mode: String,
    /// A primary acknowledging alone, its standby down or not caught up.
    pub degraded: bool,
    /// Asking the witnesses for a new epoch now.
    pub in_round: bool,
    /// Position of the last applied write (the seed's action id).
    pub action_id: u64,
    /// Primary: the standby's acknowledged position.
    pub peer_acked: u64,
    /// Every account and its balance, in account order (a list, not a map:
    /// `/state` is flattened into the generic state, and serde cannot read
    /// number-keyed maps through a flattened struct).
    pub balances: Option<Vec<AccountBalance>>,
    /// The sum of the balances, saturated to the i64 range (JSON numbers
    /// beyond it do not survive every reader).
    pub total: Option<i64>,
    /// The newest log entries this server keeps, oldest first.
    pub log: Option<Vec<Entry>>,
    /// Retries answered from the deduplication table.
    pub deduplicated: u64,
    /// Times this server became primary by taking over.
    pub failovers: u64,
    /// Epochs in which this process acknowledged writes.
    pub acknowledged_in: Vec<u64>,
    /// Operations waiting on this node.
    pub pending_ops: usize,
    /// Witness: the highest round number promised.
    pub promised: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountBalance {
    pub account: AccountId,
    pub balance: Balance,
}

impl StandbyState {
    pub fn of(node: &StandbyNode) -> Self {
        match node {
            StandbyNode::Server(s) => StandbyState {
                epoch: s.epoch.clone(),
                mode: if s.is_primary() {
                    "primary"
                } else if s.is_synced() {
                    "standby"
                } else {
                    "recovering"
                }
                .to_string(),
                degraded: s.is_degraded(),
                in_round: s.in_round(),
                action_id: s.bank.action_id,
                peer_acked: s.peer_acked,
                balances: Some(
                    s.bank
                        .balances
                        .iter()
                        .map(|(&account, &balance)| AccountBalance { account, balance })
                        .collect(),
                ),
                total: Some(
                    i64::try_from(s.bank.total()).unwrap_or(if s.bank.total() < 0 {
                        i64::MIN
                    } else {
                        i64::MAX
                    }),
                ),
                log: Some(s.bank.log.iter().cloned().collect()),
                deduplicated: s.deduplicated,
                failovers: s.failovers,
                acknowledged_in: s.acknowledged_in.iter().copied().collect(),
                pending_ops: s.pending(),
                promised: None,
            },
            StandbyNode::Client(c) => StandbyState {
                epoch: c.witness.accepted.clone(),
                mode: "client".to_string(),
                degraded: false,
                in_round: false,
                action_id: 0,
                peer_acked: 0,
                balances: None,
                total: None,
                log: None,
                deduplicated: 0,
                failovers: 0,
                acknowledged_in: Vec::new(),
                pending_ops: c.pending(),
                promised: Some(c.witness.promised),
            },
        }
    }
}
