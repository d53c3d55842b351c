//! The replication manager's views (seed 002), sans IO: memberships from
//! the GFD become numbered views `{number, members, primary}` pushed to
//! every replica and client until each acknowledges. The RM makes a view's
//! number durable before anyone sees it, so a restarted RM never reuses
//! one. In passive mode the primary stays while it is a member; otherwise
//! it is the member in the views longest (the first in join order).

use super::detect::Membership;
use crate::protocol::{NodeId, Time};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A numbered view of the replica group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    pub number: u64,
    /// In join order.
    pub members: Vec<NodeId>,
    /// Passive mode: the one member that executes and replies.
    pub primary: Option<NodeId>,
}

/// How many made views an RM remembers (a view is a few dozen bytes).
pub const MADE_KEPT: usize = 10_000;

/// The replication manager.
#[derive(Clone, Debug)]
pub struct Rm {
    passive: bool,
    period: Time,
    /// Everyone a view goes to (replicas and clients).
    audience: Vec<NodeId>,
    pub view: View,
    /// The highest GFD membership number taken.
    membership: u64,
    /// Per node: the highest view number it acknowledged.
    acked: BTreeMap<NodeId, u64>,
    next_push: Time,
    /// Views to send: (to, view).
    pub out: Vec<(NodeId, View)>,
    /// A view number to make durable before the view is sent.
    pub persist: Option<u64>,
    /// The views this RM made since it started, with when (µs on its
    /// clock): the controller measures detection times (fault to view)
    /// from them. The last [`MADE_KEPT`] only.
    pub made: Vec<(View, Time)>,
}

impl Rm {
    /// `last_number`: the last view number this RM persisted (0: none).
    pub fn new(passive: bool, period: Time, audience: Vec<NodeId>, last_number: u64) -> Self {
        Rm {
            passive,
            period,
            audience,
            view: View {
                number: last_number,
                ..View::default()
            },
            membership: 0,
            acked: BTreeMap::new(),
            next_push: 0,
            out: Vec::new(),
            persist: None,
            made: Vec::new(),
        }
    }

    pub fn next_tick(&self) -> Time {
        self.next_push
    }

    /// A membership from the GFD (an older or repeated one changes
    /// nothing).
    pub fn on_membership(&mut self, now: Time, m: Membership) {
        if m.number < self.membership {
            return;
        }
        self.membership = m.number;
        if m.members == self.view.members && self.view.number > 0 {
            return;
        }
        let primary = if !self.passive {
            None
        } else {
            match &self.view.primary {
                Some(p) if m.members.contains(p) => Some(p.clone()),
                _ => m.members.first().cloned(),
            }
        };
        self.view = View {
            number: self.view.number + 1,
            members: m.members,
            primary,
        };
        self.persist = Some(self.view.number);
        if self.made.len() >= MADE_KEPT {
            self.made.remove(0);
        }
        self.made.push((self.view.clone(), now));
        self.push_unacked();
    }

    /// `from` has view `number`.
    pub fn on_ack(&mut self, from: &str, number: u64) {
        let a = self.acked.entry(from.to_string()).or_default();
        *a = (*a).max(number);
    }

    /// Pushes the view again to those that have not acknowledged it.
    pub fn on_tick(&mut self, now: Time) {
        if now >= self.next_push {
            if self.view.number > 0 {
                self.push_unacked();
            }
            self.next_push = (self.next_push + self.period).max(now + 1);
        }
    }

    fn push_unacked(&mut self) {
        for n in &self.audience {
            if self.acked.get(n).copied().unwrap_or(0) < self.view.number {
                self.out.push((n.clone(), self.view.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(number: u64, members: &[&str]) -> Membership {
        Membership {
            number,
            members: members.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_primary_stays_while_a_member_and_numbers_never_repeat() {
        let audience = vec!["r1".to_string(), "r2".into(), "c1".into()];
        let mut rm = Rm::new(true, 50_000, audience.clone(), 0);
        rm.on_membership(0, m(1, &["r1", "r2"]));
        assert_eq!(rm.view.number, 1);
        assert_eq!(rm.view.primary.as_deref(), Some("r1"));
        assert_eq!(rm.persist, Some(1));
        assert_eq!(rm.out.len(), 3, "to everyone");
        // r3 joins: r1 stays primary.
        rm.on_membership(10, m(2, &["r1", "r2", "r3"]));
        assert_eq!(
            (rm.view.number, rm.view.primary.as_deref()),
            (2, Some("r1"))
        );
        // A stale membership (reordered) changes nothing.
        rm.on_membership(11, m(1, &["r1", "r2"]));
        assert_eq!(rm.view.number, 2);
        // r1 dies: the longest member, r2, is primary; r1 comes back as a
        // backup at the end.
        rm.on_membership(20, m(3, &["r2", "r3"]));
        assert_eq!(
            (rm.view.number, rm.view.primary.as_deref()),
            (3, Some("r2"))
        );
        rm.on_membership(30, m(4, &["r2", "r3", "r1"]));
        assert_eq!(rm.view.primary.as_deref(), Some("r2"));
        // Re-sent until acknowledged.
        rm.out.clear();
        rm.on_ack("r2", 4);
        rm.on_ack("r1", 4);
        rm.on_tick(1_000_000);
        let to: Vec<&str> = rm.out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(to, ["c1"]);
        // A restarted RM goes on after the number it persisted.
        let mut again = Rm::new(true, 50_000, audience, 4);
        again.on_membership(0, m(9, &["r2", "r3", "r1"]));
        assert_eq!(again.view.number, 5);
    }

    #[test]
    fn active_views_have_no_primary() {
        let mut rm = Rm::new(false, 50_000, vec!["r1".into()], 0);
        rm.on_membership(0, m(1, &["r1"]));
        assert_eq!(rm.view.primary, None);
    }
}
