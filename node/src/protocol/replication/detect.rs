//! Failure detection (seed 002), sans IO: the local fault detector (LFD)
//! that heartbeats its replica with a timeout that really fires (the
//! seed's never did), and the global fault detector (GFD) that builds the
//! membership from the LFDs' reports and times out a silent LFD, so a dead
//! host is removed (the seed never removed one). Times are microseconds on
//! the driver's clock.

use crate::protocol::{NodeId, Time};
use std::collections::BTreeMap;

/// What an LFD asks its driver to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LfdOut {
    /// To the replica: echo `seq`.
    Heartbeat { seq: u64 },
    /// To the GFD: the replica's health now.
    Report {
        replica: NodeId,
        alive: bool,
        seq: u64,
    },
}

/// One local fault detector, watching one replica.
#[derive(Clone, Debug)]
pub struct Lfd {
    pub replica: NodeId,
    period: Time,
    timeout: Time,
    seq: u64,
    next_beat: Time,
    /// When the replica last echoed.
    last_echo: Option<Time>,
    pub alive: bool,
    /// Alive-to-dead transitions, and when each was noticed.
    pub deaths: Vec<Time>,
    /// At the last death: how long the replica had been silent (from its
    /// last echo to the suspicion), µs; at least the timeout.
    pub last_silence: Option<Time>,
    /// Heartbeats whose echo had not come when the next one was due.
    pub missed: u64,
    /// The newest heartbeat echoed.
    echoed: u64,
    pub out: Vec<LfdOut>,
}

impl Lfd {
    /// Heartbeats every `period` µs; dead after `timeout` µs without an
    /// echo (`timeout >= period`).
    pub fn new(replica: &str, period: Time, timeout: Time) -> Self {
        assert!(period > 0 && timeout >= period, "timeout below the period");
        Lfd {
            replica: replica.to_string(),
            period,
            timeout,
            seq: 0,
            next_beat: 0,
            last_echo: None,
            alive: false,
            deaths: Vec::new(),
            last_silence: None,
            missed: 0,
            echoed: 0,
            out: Vec::new(),
        }
    }

    pub fn next_tick(&self) -> Time {
        self.next_beat
    }

    /// Heartbeats sent.
    pub fn sent(&self) -> u64 {
        self.seq
    }

    /// Sends the next heartbeat and reports when due; notices a replica
    /// silent past the timeout.
    pub fn on_tick(&mut self, now: Time) {
        if now < self.next_beat {
            return;
        }
        let fresh = self
            .last_echo
            .is_some_and(|t| now.saturating_sub(t) <= self.timeout);
        if self.alive && !fresh {
            self.deaths.push(now);
            self.last_silence = self.last_echo.map(|t| now.saturating_sub(t));
        }
        // By its echo's number, not its age: a tick that fires a little
        // late must not count an echo that came as missed.
        if self.seq > 0 && self.echoed < self.seq {
            self.missed += 1;
        }
        self.alive = fresh;
        self.seq += 1;
        self.out.push(LfdOut::Heartbeat { seq: self.seq });
        self.out.push(LfdOut::Report {
            replica: self.replica.clone(),
            alive: self.alive,
            seq: self.seq,
        });
        // Never behind: a driver that ticks late skips the missed beats.
        self.next_beat = (self.next_beat + self.period).max(now + 1);
    }

    /// The replica echoed heartbeat `seq`.
    pub fn on_echo(&mut self, now: Time, seq: u64) {
        if seq == 0 || seq > self.seq {
            return; // not one of ours
        }
        self.last_echo = Some(now);
        self.echoed = self.echoed.max(seq);
        if !self.alive {
            self.alive = true;
            self.out.push(LfdOut::Report {
                replica: self.replica.clone(),
                alive: true,
                seq: self.seq,
            });
        }
    }
}

/// The membership the GFD sends the RM: replicas alive, in join order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    /// Numbered by the GFD; a restarted GFD goes on after its last.
    pub number: u64,
    pub members: Vec<NodeId>,
}

/// The global fault detector.
#[derive(Clone, Debug)]
pub struct Gfd {
    period: Time,
    lfd_timeout: Time,
    /// Per LFD: its replica, whether it says alive, when it last spoke,
    /// and the highest report number taken.
    lfds: BTreeMap<NodeId, (NodeId, bool, Time, u64)>,
    pub membership: Membership,
    next_push: Time,
    /// Memberships to send the RM (every change at once, the whole one
    /// every period).
    pub out: Vec<Membership>,
    /// A membership number to make durable before it is sent.
    pub persist: Option<u64>,
}

impl Gfd {
    /// `first_number`: one above the last number this GFD persisted.
    pub fn new(period: Time, lfd_timeout: Time, first_number: u64) -> Self {
        Gfd {
            period,
            lfd_timeout,
            lfds: BTreeMap::new(),
            membership: Membership {
                number: first_number.saturating_sub(1),
                members: Vec::new(),
            },
            next_push: 0,
            out: Vec::new(),
            persist: None,
        }
    }

    pub fn next_tick(&self) -> Time {
        self.next_push
    }

    /// LFD `lfd` reports its replica.
    pub fn on_report(&mut self, now: Time, lfd: &str, replica: &str, alive: bool, seq: u64) {
        let e = self
            .lfds
            .entry(lfd.to_string())
            .or_insert_with(|| (replica.to_string(), false, now, 0));
        // A reordered older report says nothing new about health, but the
        // LFD is alive.
        e.2 = now;
        if seq >= e.3 {
            e.3 = seq;
            e.0 = replica.to_string();
            e.1 = alive;
        }
        self.recompute();
    }

    pub fn on_tick(&mut self, now: Time) {
        let timeout = self.lfd_timeout;
        for (_, e) in self.lfds.iter_mut() {
            if now.saturating_sub(e.2) > timeout {
                e.1 = false;
            }
        }
        self.recompute();
        if now >= self.next_push {
            self.out.push(self.membership.clone());
            self.next_push = (self.next_push + self.period).max(now + 1);
        }
    }

    fn recompute(&mut self) {
        let alive: Vec<&NodeId> = self.lfds.values().filter(|e| e.1).map(|e| &e.0).collect();
        let mut members: Vec<NodeId> = self
            .membership
            .members
            .iter()
            .filter(|m| alive.contains(m))
            .cloned()
            .collect();
        for a in alive {
            if !members.contains(a) {
                members.push(a.clone());
            }
        }
        if members != self.membership.members {
            self.membership = Membership {
                number: self.membership.number + 1,
                members,
            };
            self.persist = Some(self.membership.number);
            self.out.push(self.membership.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Time = 1_000;

    #[test]
    fn a_late_tick_does_not_count_an_echo_that_came_as_missed() {
        let mut l = Lfd::new("r1", 50 * MS, 150 * MS);
        l.on_tick(0);
        l.on_echo(40 * MS, 1);
        // The next tick is 60 ms late: the echo is 70 ms old, but it came.
        l.on_tick(110 * MS);
        assert_eq!(l.missed, 0);
        l.on_tick(160 * MS);
        assert_eq!(l.missed, 1, "heartbeat 2 had no echo");
    }

    #[test]
    fn the_lfd_timeout_fires_and_an_echo_revives() {
        let mut l = Lfd::new("r1", 50 * MS, 150 * MS);
        l.on_tick(0);
        assert_eq!(l.out[0], LfdOut::Heartbeat { seq: 1 });
        assert!(!l.alive, "not alive before the first echo");
        l.on_echo(2 * MS, 1);
        assert!(l.alive);
        // Echoes stop after 2 ms: dead once 150 ms have passed.
        let mut t = 50 * MS;
        while t <= 150 * MS {
            l.on_tick(t);
            t += 50 * MS;
        }
        assert!(l.alive, "at 150 ms the last echo is 148 ms old");
        l.on_tick(200 * MS);
        assert!(!l.alive);
        assert_eq!(l.deaths, vec![200 * MS]);
        assert_eq!(l.missed, 3, "heartbeats 2, 3 and 4 were never echoed");
        assert!(matches!(
            l.out.last(),
            Some(LfdOut::Report { alive: false, .. })
        ));
        // Echoes of heartbeats never sent are ignored; a real one revives.
        l.on_echo(201 * MS, 99);
        assert!(!l.alive);
        l.on_echo(202 * MS, 4);
        assert!(l.alive);
    }

    #[test]
    fn the_gfd_orders_members_by_join_and_drops_a_silent_lfd() {
        let mut g = Gfd::new(50 * MS, 200 * MS, 1);
        g.on_report(0, "l1", "r1", true, 1);
        g.on_report(1, "l2", "r2", true, 1);
        g.on_report(2, "l3", "r3", true, 1);
        assert_eq!(g.membership.members, ["r1", "r2", "r3"]);
        assert_eq!(g.membership.number, 3);
        // r1 reported dead, then back: it joins at the end.
        g.on_report(10, "l1", "r1", false, 2);
        g.on_report(20, "l1", "r1", true, 3);
        assert_eq!(g.membership.members, ["r2", "r3", "r1"]);
        // A reordered old report does not undo the news.
        g.on_report(30, "l1", "r1", false, 2);
        assert_eq!(g.membership.members, ["r2", "r3", "r1"]);
        // l2 falls silent (its host died): removed after the timeout.
        for t in [100 * MS, 200 * MS] {
            g.on_report(t, "l1", "r1", true, 4);
            g.on_report(t, "l3", "r3", true, 4);
            g.on_tick(t);
        }
        assert_eq!(g.membership.members, ["r2", "r3", "r1"], "l2 spoke at 1 µs");
        g.on_tick(201 * MS + 1);
        assert_eq!(g.membership.members, ["r3", "r1"]);
        // A restarted GFD numbers after what it persisted.
        let last = g.persist.expect("persisted");
        let g2 = Gfd::new(50 * MS, 200 * MS, last + 1);
        assert_eq!(g2.membership.number, last);
    }
}
