//! The message fault layer's rules and decisions: omission, duplication,
//! delay, hold-and-reorder and one-way cuts, by (from, to, message kind).
//!
//! Faults are placed here rather than on packets because QUIC hides packet
//! faults: a dropped packet is resent, a duplicate discarded. This module is
//! pure (rules in, decision out, RNG per link seeded from the run seed), so a
//! run replays and the layer is tested without sockets; the transport applies
//! the decisions.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Where a rule applies. A node programmed alone can omit both what it sends
/// (`send`) and what it receives (`receive`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    #[default]
    Send,
    Receive,
}

impl Side {
    pub fn as_str(&self) -> &'static str {
        match self {
            Side::Send => "send",
            Side::Receive => "receive",
        }
    }
}

/// Hold messages and release them shuffled once `window` are held or the
/// oldest has waited `max_hold_ms`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reorder {
    pub window: usize,
    #[serde(default = "default_hold_ms")]
    pub max_hold_ms: u64,
}

fn default_hold_ms() -> u64 {
    50
}

fn any() -> String {
    "*".into()
}

/// One rule. Matching fields default to `*`; the actions combine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// Names the rule in metrics and logs; defaults to its position.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default = "any")]
    pub from: String,
    #[serde(default = "any")]
    pub to: String,
    #[serde(default = "any")]
    pub kind: String,
    #[serde(default)]
    pub at: Side,
    /// Drop with this probability.
    #[serde(default)]
    pub drop: f64,
    /// Deliver twice with this probability.
    #[serde(default)]
    pub duplicate: f64,
    #[serde(default)]
    pub delay_ms: f64,
    /// Extra delay, uniform in `[0, jitter_ms]`.
    #[serde(default)]
    pub jitter_ms: f64,
    #[serde(default)]
    pub reorder: Option<Reorder>,
    /// Drop everything matched: a one-way cut.
    #[serde(default)]
    pub cut: bool,
}

impl FaultRule {
    pub fn validate(&self, nodes: &HashSet<String>, kinds: &[&str]) -> Result<(), String> {
        for (field, v) in [("from", &self.from), ("to", &self.to)] {
            if v != "*" && !nodes.contains(v) {
                return Err(format!("{field}: {v:?} is not a node of the cluster"));
            }
        }
        if self.kind != "*" && !kinds.contains(&self.kind.as_str()) {
            return Err(format!(
                "kind: {:?} is not a message kind (one of: {})",
                self.kind,
                kinds.join(", ")
            ));
        }
        for (field, p) in [("drop", self.drop), ("duplicate", self.duplicate)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{field}: {p} is not a probability in [0, 1]"));
            }
        }
        for (field, ms) in [("delay_ms", self.delay_ms), ("jitter_ms", self.jitter_ms)] {
            if !(0.0..=600_000.0).contains(&ms) {
                return Err(format!("{field}: {ms} must be between 0 and 600000"));
            }
        }
        if let Some(r) = &self.reorder {
            if r.window < 2 || r.window > 10_000 {
                return Err("reorder.window must be between 2 and 10000".into());
            }
        }
        Ok(())
    }

    fn matches(&self, from: &str, to: &str, kind: &str, at: Side) -> bool {
        self.at == at
            && (self.from == "*" || self.from == from)
            && (self.to == "*" || self.to == to)
            && (self.kind == "*" || self.kind == kind)
    }
}

/// What to do with one message.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    pub drop: bool,
    /// 1 normally, 2 when duplicated.
    pub copies: u8,
    pub delay: Duration,
    /// Hold in the link's reorder buffer with this window and maximum hold.
    pub reorder: Option<(usize, Duration)>,
    /// (rule id, action) for every fault injected, for metrics and logs.
    pub injected: Vec<(String, &'static str)>,
}

/// The rule set of one node and the per-link RNGs that drive it.
pub struct FaultEngine {
    node: String,
    seed: u64,
    rules: Vec<(String, FaultRule)>,
    rngs: HashMap<(String, String, Side), ChaCha8Rng>,
}

impl FaultEngine {
    pub fn new(node: &str, seed: u64) -> Self {
        FaultEngine {
            node: node.to_string(),
            seed,
            rules: Vec::new(),
            rngs: HashMap::new(),
        }
    }

    /// Replaces the rule set. Rules that concern neither what this node sends
    /// nor what it receives are kept but never match. A new seed restarts the
    /// per-link RNGs, so a replayed run draws the same numbers.
    pub fn set_rules(&mut self, rules: Vec<FaultRule>, seed: Option<u64>) {
        self.rules = rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone().unwrap_or_else(|| format!("rule{i}")), r))
            .collect();
        if let Some(s) = seed {
            self.seed = s;
            self.rngs.clear();
        }
    }

    pub fn rules(&self) -> Vec<FaultRule> {
        self.rules
            .iter()
            .map(|(id, r)| FaultRule {
                id: Some(id.clone()),
                ..r.clone()
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn rng(&mut self, peer: &str, at: Side) -> &mut ChaCha8Rng {
        let (seed, node) = (self.seed, self.node.clone());
        self.rngs
            .entry((node.clone(), peer.to_string(), at))
            .or_insert_with(|| ChaCha8Rng::seed_from_u64(link_seed(seed, &node, peer, at)))
    }

    /// Decides the fate of a message `from -> to` of `kind`, seen at `at`.
    pub fn decide(&mut self, from: &str, to: &str, kind: &str, at: Side) -> Decision {
        let mut d = Decision {
            copies: 1,
            ..Decision::default()
        };
        if self.rules.is_empty() {
            return d;
        }
        let peer = if at == Side::Send { to } else { from };
        let matching: Vec<(String, FaultRule)> = self
            .rules
            .iter()
            .filter(|(_, r)| r.matches(from, to, kind, at))
            .cloned()
            .collect();
        for (id, r) in matching {
            let rng = self.rng(peer, at);
            if r.cut {
                d.drop = true;
                d.injected.push((id.clone(), "cut"));
            } else if r.drop > 0.0 && rng.random_bool(r.drop) {
                d.drop = true;
                d.injected.push((id.clone(), "drop"));
            }
            if d.drop {
                return d;
            }
            if r.duplicate > 0.0 && rng.random_bool(r.duplicate) {
                d.copies = 2;
                d.injected.push((id.clone(), "duplicate"));
            }
            if r.delay_ms > 0.0 || r.jitter_ms > 0.0 {
                let jitter = if r.jitter_ms > 0.0 {
                    rng.random_range(0.0..=r.jitter_ms)
                } else {
                    0.0
                };
                d.delay += Duration::from_secs_f64((r.delay_ms + jitter) / 1000.0);
                d.injected.push((id.clone(), "delay"));
            }
            if let Some(ro) = &r.reorder {
                d.reorder = Some((ro.window, Duration::from_millis(ro.max_hold_ms)));
                d.injected.push((id.clone(), "reorder"));
            }
        }
        d
    }

    /// A shuffle for releasing a reorder buffer, from the link's RNG.
    pub fn shuffle<T>(&mut self, peer: &str, at: Side, items: &mut [T]) {
        let rng = self.rng(peer, at);
        for i in (1..items.len()).rev() {
            let j = rng.random_range(0..=i);
            items.swap(i, j);
        }
    }
}

/// The seed of one link's RNG: (run seed, node, peer, side), mixed with FNV-1a
/// so it does not depend on the standard library's hasher.
fn link_seed(seed: u64, node: &str, peer: &str, at: Side) -> u64 {
    crate::hash::fnv1a_from(
        crate::hash::FNV_OFFSET ^ seed,
        node.bytes()
            .chain([0])
            .chain(peer.bytes())
            .chain([0])
            .chain(at.as_str().bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: &str) -> FaultRule {
        serde_json::from_str(json).expect("rule parses")
    }

    #[test]
    fn drop_rate_is_close_to_p_and_replays() {
        let mut a = FaultEngine::new("s1", 42);
        a.set_rules(vec![rule(r#"{"to":"s2","drop":0.3}"#)], None);
        let drops: Vec<bool> = (0..10_000)
            .map(|_| a.decide("s1", "s2", "read", Side::Send).drop)
            .collect();
        let rate = drops.iter().filter(|d| **d).count() as f64 / 10_000.0;
        assert!((0.27..0.33).contains(&rate), "drop rate {rate}");
        let mut b = FaultEngine::new("s1", 42);
        b.set_rules(vec![rule(r#"{"to":"s2","drop":0.3}"#)], None);
        let again: Vec<bool> = (0..10_000)
            .map(|_| b.decide("s1", "s2", "read", Side::Send).drop)
            .collect();
        assert_eq!(drops, again, "same seed, same decisions");
        assert!(!a.decide("s1", "s3", "read", Side::Send).drop || rate > 0.0);
    }

    #[test]
    fn rules_match_on_link_kind_and_side() {
        let mut e = FaultEngine::new("s1", 1);
        e.set_rules(
            vec![
                rule(r#"{"id":"cut-s2","to":"s2","kind":"write","cut":true}"#),
                rule(r#"{"from":"c1","at":"receive","delay_ms":5,"jitter_ms":5}"#),
                rule(r#"{"to":"s3","duplicate":1.0}"#),
            ],
            None,
        );
        let d = e.decide("s1", "s2", "write", Side::Send);
        assert!(d.drop);
        assert_eq!(d.injected, vec![("cut-s2".to_string(), "cut")]);
        assert!(!e.decide("s1", "s2", "read", Side::Send).drop);
        let d = e.decide("c1", "s1", "read", Side::Receive);
        assert!(d.delay >= Duration::from_millis(5) && d.delay <= Duration::from_millis(10));
        assert_eq!(
            e.decide("c1", "s1", "read", Side::Send).delay,
            Duration::ZERO
        );
        assert_eq!(e.decide("s1", "s3", "read", Side::Send).copies, 2);
    }

    #[test]
    fn bad_rules_are_refused() {
        let nodes: HashSet<String> = ["s1", "s2"].iter().map(|s| s.to_string()).collect();
        assert!(rule(r#"{"to":"s9","drop":0.5}"#)
            .validate(&nodes, &["read"])
            .is_err());
        assert!(rule(r#"{"drop":1.5}"#).validate(&nodes, &["read"]).is_err());
        assert!(rule(r#"{"kind":"nope"}"#)
            .validate(&nodes, &["read"])
            .is_err());
        assert!(rule(r#"{"reorder":{"window":1}}"#)
            .validate(&nodes, &["read"])
            .is_err());
        assert!(rule(r#"{"to":"s2","delay_ms":3}"#)
            .validate(&nodes, &["read"])
            .is_ok());
        assert!(serde_json::from_str::<FaultRule>(r#"{"dorp":0.5}"#).is_err());
    }
}
