//! The seeded simulation of the standby bank that the tests run: two servers
//! and three clients (the witnesses) on a lossy, duplicating, reordering
//! network; lost replies; the primary (mostly) crashed at random instants,
//! so across seeds at every step of a write (before the standby has it,
//! after, before the reply); partitions between the servers; restarts from
//! the durable records. After healing, every client must be served again,
//! and the run is judged against the survivor's log (see [`judge`]).

use super::{Answer, Bugs, Entry, Params, Reply, Request, StandbyNode};
use crate::api::PutFaults;
use crate::faults::FaultRule;
use crate::protocol::{Core, Time};
use crate::sim::{Entry as Op, NetConfig, Sim};
use crate::system::Channels;
use rand::Rng;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

const SECOND: u64 = 1_000_000;
const MS: u64 = 1_000;

/// What one simulated run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub ops: usize,
    pub ok: usize,
    pub unknown: usize,
    pub crashes: usize,
    pub failovers: u64,
    pub partitioned: bool,
}

pub fn params(bugs: Bugs) -> Params {
    let mut p = Params::with_defaults(
        ["s1".to_string(), "s2".to_string()],
        vec!["c1".into(), "c2".into(), "c3".into()],
    );
    p.op_deadline_us = 2 * SECOND;
    p.bugs = bugs;
    p
}

pub fn cluster(seed: u64, bugs: Bugs) -> Sim<StandbyNode> {
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed ^ 0x5eed_0003);
    let params = Arc::new(params(bugs));
    let nodes = params.servers.iter().chain(&params.clients);
    let cores = nodes
        .map(|id| StandbyNode::new(id.clone(), params.clone()))
        .collect();
    let net = NetConfig {
        drop: rng.random_range(0.0..0.05),
        duplicate: rng.random_range(0.0..0.05),
        delay_min_us: 50,
        delay_max_us: rng.random_range(300..5_000),
    };
    // The real links are FIFO; replication does not rely on it (see
    // `Standby::CHANNELS`), so the simulation reorders: a stronger adversary.
    Sim::with_channels(seed, cores, net, Channels::NonFifo)
}

fn rule(from: &str, to: &str, kind: &str, drop: f64, cut: bool) -> FaultRule {
    FaultRule {
        id: None,
        from: from.into(),
        to: to.into(),
        kind: kind.into(),
        at: Default::default(),
        drop,
        duplicate: 0.0,
        delay_ms: 0.0,
        jitter_ms: 0.0,
        reorder: None,
        cut,
    }
}

fn faults(rules: Vec<FaultRule>) -> PutFaults {
    PutFaults {
        rules,
        lease_ms: None,
        seed: None,
    }
}

/// Runs one seed; returns the first violation (with the seed) or the
/// outcome and the simulator.
pub fn run_seed(seed: u64, bugs: Bugs) -> Result<(Outcome, Sim<StandbyNode>), String> {
    let mut sim = cluster(seed, bugs.clone());
    let p = Arc::new(params(bugs));
    let mut out = Outcome::default();
    let mut check = |sim: &Sim<StandbyNode>, _: &crate::sim::Step| -> Result<(), String> {
        // No two primaries of one epoch, ever.
        let primaries: Vec<(u64, &str)> = sim
            .nodes()
            .filter(|n| !sim.is_crashed(n.id()))
            .filter_map(|n| n.server())
            .filter(|s| s.is_primary())
            .map(|s| (s.epoch.n, s.id().as_str()))
            .collect();
        if let [(a, x), (b, y)] = primaries[..] {
            if a == b {
                return Err(format!("{x} and {y} are both primary of epoch {a}"));
            }
        }
        Ok(())
    };

    // Lost replies at the servers, for the whole faulty phase.
    let lost = sim.rng().random_range(0.0..0.2);
    let reply_loss = faults(vec![rule("*", "*", "op_reply", lost, false)]);
    for s in &p.servers {
        sim.put_faults(s, &reply_loss);
    }

    // Workload: 300 operations over 6 s from three clients, overlapping.
    let mut accounts: Vec<u64> = p.accounts.keys().copied().collect();
    accounts.push(99);
    for _ in 0..300 {
        let at = sim.rng().random_range(0..6 * SECOND);
        let c = format!("c{}", sim.rng().random_range(1..=3));
        let account = accounts[sim.rng().random_range(0..accounts.len())];
        let amount = sim.rng().random_range(0..=400);
        let request = match sim.rng().random_range(0..10) {
            0..=1 => Request::Lookup { account },
            2..=5 => Request::Withdraw { account, amount },
            _ => Request::Deposit { account, amount },
        };
        sim.invoke_at(at, &c, request);
    }

    // Faults: 1..=3 crashes (the primary, mostly) and maybe a partition
    // between the servers; crashed servers restart after a while.
    let mut events: Vec<(Time, &'static str)> = Vec::new();
    for _ in 0..sim.rng().random_range(1..=3) {
        events.push((sim.rng().random_range(300 * MS..5_500 * MS), "crash"));
    }
    if sim.rng().random_bool(0.3) {
        let t = sim.rng().random_range(200 * MS..5 * SECOND);
        events.push((t, "partition"));
        events.push((
            t + sim.rng().random_range(300 * MS..1_500 * MS),
            "heal-partition",
        ));
        out.partitioned = true;
    }
    events.sort();
    let mut restarts: Vec<(Time, String)> = Vec::new();
    for (at, what) in events {
        // Restarts due before this event happen first.
        restarts.sort();
        while restarts.first().is_some_and(|(t, _)| *t <= at) {
            let (t, id) = restarts.remove(0);
            sim.run_until(t, 5_000_000, &mut check)
                .map_err(|e| format!("seed {seed}: {e}"))?;
            sim.restart(StandbyNode::new(id.clone(), p.clone()));
            sim.put_faults(&id, &reply_loss);
        }
        sim.run_until(at, 5_000_000, &mut check)
            .map_err(|e| format!("seed {seed}: {e}"))?;
        match what {
            "crash" => {
                let primary = sim
                    .nodes()
                    .filter_map(|n| n.server())
                    .find(|s| s.is_primary())
                    .map(|s| s.id().clone());
                let victim = match primary {
                    Some(pr) if sim.rng().random_bool(0.8) => pr,
                    _ => p.servers[sim.rng().random_range(0..2)].clone(),
                };
                if !sim.is_crashed(&victim) {
                    sim.crash(&victim);
                    out.crashes += 1;
                    let back = at + sim.rng().random_range(100 * MS..1_500 * MS);
                    restarts.push((back, victim));
                }
            }
            "partition" => {
                for (a, b) in [("s1", "s2"), ("s2", "s1")] {
                    let mut rules = reply_loss.rules.clone();
                    rules.push(rule(a, b, "*", 0.0, true));
                    rules.push(rule(b, a, "*", 0.0, true));
                    sim.put_faults(a, &faults(rules));
                }
            }
            _ => {
                for s in &p.servers {
                    sim.put_faults(s, &reply_loss);
                }
            }
        }
    }
    restarts.sort();
    for (t, id) in restarts {
        sim.run_until(t, 5_000_000, &mut check)
            .map_err(|e| format!("seed {seed}: {e}"))?;
        sim.restart(StandbyNode::new(id.clone(), p.clone()));
        sim.put_faults(&id, &reply_loss);
    }
    sim.run_until(6 * SECOND, 5_000_000, &mut check)
        .map_err(|e| format!("seed {seed}: {e}"))?;

    // Heal everything and let it settle; then every client must be served.
    sim.net.drop = 0.0;
    sim.net.duplicate = 0.0;
    for s in &p.servers {
        sim.put_faults(s, &faults(Vec::new()));
    }
    sim.run_until(10 * SECOND, 5_000_000, &mut check)
        .map_err(|e| format!("seed {seed} (healing): {e}"))?;
    let at = sim.now;
    let mut finals = Vec::new();
    for c in &p.clients {
        finals.push(sim.invoke_at(
            at,
            c,
            Request::Deposit {
                account: 1,
                amount: 1,
            },
        ));
        for a in p.accounts.keys() {
            finals.push(sim.invoke_at(at, c, Request::Lookup { account: *a }));
        }
    }
    sim.run_until(at + 4 * SECOND, 5_000_000, &mut check)
        .map_err(|e| format!("seed {seed} (final operations): {e}"))?;
    for i in finals {
        match &sim.history[i].completed {
            Some((_, Reply::Done { .. })) => {}
            other => {
                return Err(format!(
                    "seed {seed}: not live after healing: {:?} at {} answered {other:?}",
                    sim.history[i].request, sim.history[i].node
                ))
            }
        }
    }
    judge(&sim, &p).map_err(|e| format!("seed {seed}: {e}"))?;
    out.ops = sim.history.len();
    for e in &sim.history {
        match &e.completed {
            Some((_, Reply::Done { .. })) => out.ok += 1,
            Some((_, Reply::Unknown { .. })) => out.unknown += 1,
            _ => {}
        }
    }
    out.failovers = sim
        .nodes()
        .filter_map(|n| n.server())
        .map(|s| s.failovers)
        .sum();
    Ok((out, sim))
}

/// Where a completed operation sits in the log order: a write at its
/// position, a read just after the position it read.
fn position(op: &Op<StandbyNode>) -> Option<(u64, bool, Time, Time)> {
    let (done, Reply::Done { action_id, .. }) = op.completed.as_ref()? else {
        return None;
    };
    Some((*action_id, op.request.is_write(), op.invoked, *done))
}

/// Judges a healed run against the survivor's log (the primary's): the
/// log's order must explain every acknowledged answer and respect real time,
/// which makes the history linearizable; every acknowledged write is in the
/// log once; no request id is in it twice; the standby agrees; one server
/// per epoch.
pub fn judge(sim: &Sim<StandbyNode>, p: &Params) -> Result<(), String> {
    let servers: Vec<_> = sim.nodes().filter_map(|n| n.server()).collect();
    let primaries: Vec<_> = servers.iter().filter(|s| s.is_primary()).collect();
    let [primary] = primaries[..] else {
        return Err(format!("{} primaries after healing", primaries.len()));
    };
    let log: Vec<&Entry> = primary.bank.log.iter().collect();
    if primary.bank.first_kept().unwrap_or(1) != 1 {
        return Err(format!(
            "the survivor's log starts at {:?}; the run needs all of it",
            primary.bank.first_kept()
        ));
    }
    // The standby converged on the same state.
    for s in servers.iter().filter(|s| !s.is_primary()) {
        if s.bank.balances != primary.bank.balances || s.bank.action_id != primary.bank.action_id {
            return Err(format!(
                "{} did not converge: action id {} vs the primary's {}",
                s.id(),
                s.bank.action_id,
                primary.bank.action_id
            ));
        }
    }
    // No request applied twice.
    let mut ids = HashSet::new();
    for e in &log {
        if !ids.insert(&e.id) {
            return Err(format!(
                "request {} applied twice (again at action id {})",
                e.id, e.action_id
            ));
        }
    }
    // Replay the log: every entry's answer follows, and the states after
    // each position explain every acknowledged answer.
    let mut bank = super::Bank::new(p.accounts.clone());
    let mut states: Vec<BTreeMap<u64, i64>> = vec![bank.balances.clone()];
    for e in &log {
        let answer = bank.apply((*e).clone(), u64::MAX, usize::MAX);
        if answer != e.answer {
            return Err(format!(
                "entry {} answered {:?}, its replay {answer:?}",
                e.action_id, e.answer
            ));
        }
        states.push(bank.balances.clone());
    }
    if bank.balances != primary.bank.balances {
        return Err("replaying the log does not give the primary's balances".into());
    }
    if let Some((a, b)) = bank.negative() {
        return Err(format!("account {a} is negative: {b}"));
    }
    let mut by_epoch: BTreeMap<u64, &str> = BTreeMap::new();
    for op in &sim.history {
        let Some((
            _,
            Reply::Done {
                id,
                answer,
                server,
                epoch,
                action_id,
            },
        )) = &op.completed
        else {
            continue;
        };
        if let Some(other) = by_epoch.insert(*epoch, server) {
            if other != server {
                return Err(format!(
                    "{other} and {server} both acknowledged in epoch {epoch}"
                ));
            }
        }
        if op.request.is_write() {
            let Some(e) = log.get((*action_id as usize).wrapping_sub(1)) else {
                return Err(format!("acknowledged {id} at action id {action_id} is not in the survivor's log (lost)"));
            };
            if e.id != *id || e.answer != *answer {
                return Err(format!(
                    "acknowledged {id} ({answer:?}) at action id {action_id}, but the survivor's log has {} ({:?}) there (lost)",
                    e.id, e.answer
                ));
            }
        } else {
            let Some(state) = states.get(*action_id as usize) else {
                return Err(format!("a lookup read position {action_id}, past the log"));
            };
            let expected = match state.get(&op.request.account()) {
                Some(b) => Answer::Balance { balance: *b },
                None => Answer::NotFound,
            };
            if expected != *answer {
                return Err(format!(
                    "lookup {:?} answered {answer:?} at position {action_id}; the log says {expected:?}",
                    op.request
                ));
            }
        }
    }
    // Real time: an operation that ended before another began comes first
    // in the log, and in an epoch no later.
    let done: Vec<_> = sim
        .history
        .iter()
        .filter_map(|op| Some((position(op)?, op)))
        .collect();
    for ((pa, wa, _, end_a), a) in &done {
        for ((pb, wb, start_b, _), b) in &done {
            if end_a >= start_b {
                continue;
            }
            let ordered = match (wa, wb) {
                (true, true) => pa < pb,
                (true, false) => pa <= pb,
                (false, true) => pa < pb,
                (false, false) => pa <= pb,
            };
            let (
                Some((_, Reply::Done { epoch: ea, .. })),
                Some((_, Reply::Done { epoch: eb, .. })),
            ) = (&a.completed, &b.completed)
            else {
                continue;
            };
            if !ordered || ea > eb {
                return Err(format!(
                    "real time broken: {:?} (position {pa}, epoch {ea}) ended before {:?} (position {pb}, epoch {eb}) began",
                    a.request, b.request
                ));
            }
        }
    }
    Ok(())
}
