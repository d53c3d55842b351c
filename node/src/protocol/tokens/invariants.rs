//! Safety invariants of the token system, checked against live node states
//! (by the simulator after every event) and against client histories.
//!
//! - no (token, tag) ever has two owners, on any server, at any time;
//! - a server's tag for a token never goes back while it keeps its table;
//! - every owner is a node of the cluster;
//! - every acknowledged pay is durable: in every configuration that can
//!   still serve reads, fewer than a majority of its serving members hold an
//!   older tag, so any read quorum sees it;
//! - every acknowledged pay is visible to every later read of its new owner;
//! - no two different pays of one (token, version) are acknowledged.

use super::*;
use std::collections::{BTreeMap, HashMap};

#[derive(Default)]
pub struct Checker {
    owners: HashMap<(TokenId, Tag), NodeId>,
    /// Last tag seen per (server, token), while that server keeps its table.
    last: HashMap<(NodeId, TokenId), Tag>,
    /// Highest acknowledged pay per token.
    acked: BTreeMap<TokenId, Tag>,
    /// Every acknowledged pay by (token, version).
    paid: HashMap<(TokenId, u64), Tag>,
}

impl Checker {
    /// Checks one node's table after it changed.
    pub fn observe(&mut self, node: &TokensNode) -> Result<(), String> {
        let id = node.id_str();
        let Some(table) = node.table() else {
            self.last.retain(|(n, _), _| n != id);
            return Ok(());
        };
        for (t, s) in table.iter().enumerate() {
            let t = t as TokenId;
            if !node.params().nodes.contains(&s.owner) {
                return Err(format!(
                    "{id}: token {t} owned by unknown node {:?}",
                    s.owner
                ));
            }
            match self.owners.get(&(t, s.tag.clone())) {
                Some(o) if *o != s.owner => {
                    return Err(format!(
                        "token {t} tag {:?} has two owners: {o} and {} (at {id})",
                        s.tag, s.owner
                    ))
                }
                Some(_) => {}
                None => {
                    self.owners.insert((t, s.tag.clone()), s.owner.clone());
                }
            }
            let key = (id.to_string(), t);
            if let Some(prev) = self.last.get(&key) {
                if s.tag < *prev {
                    return Err(format!(
                        "{id}: token {t} went back from {prev:?} to {:?}",
                        s.tag
                    ));
                }
            }
            self.last.insert(key, s.tag.clone());
        }
        Ok(())
    }

    /// Records a pay answered `paid`. Two different acknowledged pays of one
    /// (token, version) are a double spend: one of them cannot be placed.
    pub fn acknowledge(&mut self, token: TokenId, tag: &Tag) -> Result<(), String> {
        if let Some(other) = self.paid.insert((token, tag.version), tag.clone()) {
            if other != *tag {
                return Err(format!(
                    "token {token} version {} paid twice: {other:?} and {tag:?}",
                    tag.version
                ));
            }
        }
        let e = self.acked.entry(token).or_insert_with(|| tag.clone());
        if *tag > *e {
            *e = tag.clone();
        }
        Ok(())
    }

    /// Every acknowledged pay must be seen by any read quorum of any
    /// configuration that can still form one among its serving members.
    pub fn check_durable<'a>(
        &self,
        up: impl Iterator<Item = &'a TokensNode>,
    ) -> Result<(), String> {
        let mut by_epoch: BTreeMap<u64, (Config, Vec<&[TokenState]>)> = BTreeMap::new();
        for n in up {
            if !n.is_serving() {
                continue;
            }
            if let Some(table) = n.table() {
                by_epoch
                    .entry(n.config().epoch)
                    .or_insert_with(|| (n.config().clone(), Vec::new()))
                    .1
                    .push(table);
            }
        }
        for (epoch, (config, tables)) in by_epoch {
            let m = config.majority();
            if tables.len() < m {
                continue;
            }
            for (&token, acked) in &self.acked {
                let mut tags: Vec<&Tag> = tables
                    .iter()
                    .filter_map(|t| t.get(token as usize).map(|s| &s.tag))
                    .collect();
                tags.sort();
                if tags.get(m - 1).is_some_and(|t| *t < acked) {
                    return Err(format!(
                        "acknowledged pay of token {token} at {acked:?} is invisible to a read quorum of epoch {epoch} (servers {:?})",
                        config.servers
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One finished operation, as a history checker needs it.
pub struct Done<'a> {
    pub node: &'a str,
    pub request: &'a Request,
    pub invoked: u64,
    pub completed: Option<(u64, &'a Reply)>,
}

/// Every pay acknowledged before a read of the new owner began is in that
/// read, unless another pay of the token that had not finished by then
/// (which may have moved it on) started before the read ended.
pub fn check_reads(ops: &[Done<'_>]) -> Result<(), String> {
    let pays: Vec<(&Done, TokenId, &NodeId, &Tag, u64)> = ops
        .iter()
        .filter_map(|d| match (d.request, d.completed) {
            (Request::Pay { to, .. }, Some((at, Reply::Paid { token, tag }))) => {
                Some((d, *token, to, tag, at))
            }
            _ => None,
        })
        .collect();
    for r in ops {
        let Some((r_end, Reply::Tokens { owner, tokens })) = r.completed else {
            continue;
        };
        for (p, token, to, tag, p_end) in &pays {
            if *to != owner || *p_end >= r.invoked {
                continue;
            }
            // Another pay of the token that had not finished when this one
            // did (queued behind it, concurrent, or later) may have moved it.
            let moved = ops.iter().any(|o| {
                !std::ptr::eq(o, *p)
                    && matches!(o.request, Request::Pay { token: t, .. } if *t == *token)
                    && o.completed.is_none_or(|(end, _)| end >= *p_end)
                    && o.invoked <= r_end
            });
            if moved {
                continue;
            }
            let seen = tokens.iter().find(|(t, _)| t == token);
            if seen.is_none_or(|(_, v)| *v < tag.version) {
                return Err(format!(
                    "pay of token {token} to {owner} by {} acknowledged at {p_end}us (version {}) is missing from gettokens({owner}) invoked at {}us by {}: saw {:?}",
                    p.node, tag.version, r.invoked, r.node, seen
                ));
            }
        }
    }
    Ok(())
}
