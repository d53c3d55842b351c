//! The seeded simulation of replication that the tests run, on the
//! generic simulator ([`Sim`]) with FIFO links: three replicas with their
//! LFDs, the GFD, the RM and three clients updating a few counters and
//! registers. Faults, one at a time: a replica killed and restarted (in
//! passive mode the primary half of the time; it comes back as a backup
//! and takes the state by transfer), a replica paused past its timeout (a
//! false suspicion: it wakes up in an older view), in passive mode the
//! primary replaced behind its back (it stops answering its LFD and,
//! like one client, misses the new view: that client keeps sending to
//! it), the GFD and the RM killed and restarted; all along, replies,
//! forwards, acknowledgements and echoes lost now and then. At the end:
//! no request applied twice on any replica (their logs), the final view's
//! replicas agree (the same store, the same order applied), every
//! acknowledged write is in their state, and every operation invoked
//! after the faults healed was answered.

use super::node::{Mode, ReplNode, ReplicationNode};
use super::store::{Op, RequestId, Store};
use super::{Bugs, Params, Reply};
use crate::protocol::{NodeId, Time};
use crate::sim::{NetConfig, Sim};
use crate::system::Channels;
use rand::Rng;
use std::collections::BTreeSet;
use std::sync::Arc;

const MS: Time = 1_000;
const SECOND: Time = 1_000_000;
const WORKLOAD_END: Time = 8 * SECOND;
const END: Time = 14 * SECOND;

/// What one simulated run did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub ops: usize,
    pub done: usize,
    pub unknown: usize,
    pub faults: Vec<String>,
    /// The RM's last view number.
    pub views: u64,
}

fn replica_store(n: &ReplicationNode) -> Option<(&Store, bool, u64)> {
    match &n.role {
        ReplNode::Replica {
            mode: Mode::Passive(x),
            ..
        } => Some((&x.store, x.ready, x.view.number)),
        ReplNode::Replica {
            mode: Mode::Active(a),
            ..
        } => Some((&a.store, a.ready, a.view.number)),
        _ => None,
    }
}

/// Runs one seed; `Err` names the first violation.
pub fn run_seed(seed: u64, active: bool, bugs: Bugs) -> Result<Outcome, String> {
    let mut p = Params::standard(active, 3, 3);
    p.bugs = bugs;
    let p = Arc::new(p);
    let ids: Vec<NodeId> = p
        .replicas
        .iter()
        .chain(p.pairs.keys())
        .chain([&p.gfd, &p.rm])
        .chain(p.clients.iter())
        .cloned()
        .collect();
    let cores: Vec<ReplicationNode> = ids.iter().map(|id| ReplicationNode::new(id, &p)).collect();
    let net = NetConfig {
        drop: 0.0,
        duplicate: 0.0,
        delay_min_us: 200,
        delay_max_us: 3 * MS,
    };
    let mut sim = Sim::with_channels(seed, cores, net, Channels::Fifo);
    let mut out = Outcome::default();

    // The workload: every client, random operations on three keys.
    for c in &p.clients {
        for _ in 0..40 {
            let at = sim.rng().random_range(300 * MS..WORKLOAD_END);
            let key = format!("k{}", sim.rng().random_range(0..3));
            let op = match sim.rng().random_range(0..3) {
                0 => Op::Add { key, n: 1 },
                1 => Op::Put {
                    key,
                    value: sim.rng().random_range(0..100).to_string(),
                },
                _ => Op::Get { key },
            };
            sim.invoke_at(at, c, op);
        }
    }

    // Replies lost now and then (every replica's fault layer): clients
    // retry the same request number, at the new primary after a failover.
    // Forwards and acknowledgements lost too, more rarely (a connection
    // reset loses what it carried): the primary sends waiting entries
    // again. And heartbeats and echoes now and then: an LFD must not
    // suspect a replica for one lost beat (it takes three in a row).
    use crate::faults::{FaultRule, Side};
    let lose = |kind: &str, at: Side, drop: f64| FaultRule {
        id: None,
        from: "*".into(),
        to: "*".into(),
        kind: kind.into(),
        at,
        drop,
        duplicate: 0.0,
        delay_ms: 0.0,
        jitter_ms: 0.0,
        reorder: None,
        cut: false,
    };
    let drop_replies = crate::api::PutFaults {
        rules: vec![
            lose("reply", Side::Send, 0.2),
            lose("forward", Side::Send, 0.02),
            lose("ack", Side::Send, 0.02),
            lose("echo", Side::Send, 0.05),
        ],
        lease_ms: None,
        seed: None,
    };
    for r in &p.replicas {
        sim.put_faults(r, &drop_replies);
    }
    let with = |rules: Vec<FaultRule>| crate::api::PutFaults {
        rules,
        lease_ms: None,
        seed: None,
    };
    // The faults, one at a time, between 1 s and 7 s.
    let mut t = SECOND;
    let step = |sim: &mut Sim<ReplicationNode>, until: Time| {
        sim.run_until(until, 5_000_000, &mut |_, _| Ok(()))
    };
    for _ in 0..3 {
        // Passive mode has one more: a primary replaced behind its back.
        let kind = sim.rng().random_range(0..if active { 4 } else { 5 });
        let gap = sim.rng().random_range(300 * MS..900 * MS);
        t += sim.rng().random_range(200 * MS..600 * MS);
        step(&mut sim, t)?;
        let primary = sim.node(&p.rm).and_then(|n| match &n.role {
            ReplNode::Rm { rm, .. } => rm.view.primary.clone(),
            _ => None,
        });
        let target = match kind {
            0 | 1 => {
                let r = if kind == 0 && !active {
                    primary.unwrap_or_else(|| p.replicas[0].clone())
                } else {
                    p.replicas[sim.rng().random_range(0..p.replicas.len())].clone()
                };
                out.faults.push(format!("kill {r}"));
                r
            }
            2 => {
                let r = primary.unwrap_or_else(|| p.replicas[0].clone());
                out.faults.push(format!("pause {r}"));
                sim.pause(&r);
                t += gap;
                step(&mut sim, t)?;
                sim.resume(&r);
                continue;
            }
            4 => {
                // The primary stops answering its LFD (it is removed from
                // the view) and, like one client, never hears the RM's new
                // view: that client keeps sending to the replaced primary,
                // which must get no backup to acknowledge it (fencing).
                let r = primary.unwrap_or_else(|| p.replicas[0].clone());
                let c = p.clients[sim.rng().random_range(0..p.clients.len())].clone();
                out.faults
                    .push(format!("replace {r} behind its and {c}'s back"));
                let mut cut_off = drop_replies.rules.clone();
                cut_off.extend([
                    lose("echo", Side::Send, 1.0),
                    lose("view", Side::Receive, 1.0),
                ]);
                sim.put_faults(&r, &with(cut_off));
                sim.put_faults(&c, &with(vec![lose("view", Side::Receive, 1.0)]));
                t += gap + SECOND;
                step(&mut sim, t)?;
                sim.put_faults(&r, &drop_replies);
                sim.put_faults(&c, &with(Vec::new()));
                t += SECOND;
                continue;
            }
            _ => {
                let who = if sim.rng().random_bool(0.5) {
                    p.gfd.clone()
                } else {
                    p.rm.clone()
                };
                out.faults.push(format!("kill {who}"));
                who
            }
        };
        sim.crash(&target);
        t += gap;
        step(&mut sim, t)?;
        sim.restart(ReplicationNode::new(&target, &p));
        // Time to rejoin before the next fault.
        t += SECOND;
    }
    let healed = t;
    step(&mut sim, END)?;

    // Exactly once, from every replica's log.
    for r in &p.replicas {
        let Some((store, _, _)) = sim.node(r).and_then(replica_store) else {
            continue;
        };
        let mut seen: BTreeSet<&RequestId> = BTreeSet::new();
        for id in &store.history {
            if !seen.insert(id) {
                return Err(format!(
                    "seed {seed}: {r} applied {id} twice ({:?})",
                    out.faults
                ));
            }
        }
    }
    // The final view's ready replicas agree.
    let rm_view = sim.node(&p.rm).and_then(|n| match &n.role {
        ReplNode::Rm { rm, .. } => Some(rm.view.clone()),
        _ => None,
    });
    let Some(view) = rm_view else {
        return Err(format!("seed {seed}: no RM"));
    };
    out.views = view.number;
    let mut finals: Vec<(&NodeId, &Store)> = Vec::new();
    for r in &view.members {
        if let Some((store, ready, v)) = sim.node(r).and_then(replica_store) {
            if ready && v == view.number {
                finals.push((r, store));
            }
        }
    }
    if finals.is_empty() {
        return Err(format!(
            "seed {seed}: no ready replica in view {}",
            view.number
        ));
    }
    for (r, s) in &finals[1..] {
        let (r0, s0) = finals[0];
        // The same state and the same order of requests applied (adds
        // commute: only the order shows two members that disagreed).
        if s.counters != s0.counters || s.registers != s0.registers || s.history != s0.history {
            if std::env::var("REPL_DEBUG").is_ok() {
                for r in &p.replicas {
                    if let Some(ReplNode::Replica {
                        mode: Mode::Active(a),
                        ..
                    }) = sim.node(r).map(|n| &n.role)
                    {
                        eprintln!(
                            "{r}: view {} executed {} stable {} ready {} log {:?}",
                            a.view.number,
                            a.executed,
                            a.stable,
                            a.ready,
                            a.debug_log()
                        );
                    }
                }
            }
            let first = s
                .history
                .iter()
                .zip(s0.history.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(s.history.len().min(s0.history.len()));
            return Err(format!(
                "seed {seed}: {r} and {r0} disagree in view {}: their logs part at entry {first} of {} and {} ({:?} vs {:?}): {:?} / {:?} vs {:?} / {:?} ({:?})",
                view.number,
                s.history.len(),
                s0.history.len(),
                s.history.get(first),
                s0.history.get(first),
                s.counters,
                s.registers,
                s0.counters,
                s0.registers,
                out.faults
            ));
        }
    }
    // Every acknowledged write survives; every late operation is answered.
    let state: BTreeSet<&RequestId> = finals[0].1.history.iter().collect();
    for e in &sim.history {
        out.ops += 1;
        match &e.completed {
            Some((_, Reply::Done { seq, .. })) => {
                out.done += 1;
                let id = RequestId {
                    client: e.node.clone(),
                    seq: *seq,
                };
                if !matches!(e.request, Op::Get { .. }) && !state.contains(&id) {
                    return Err(format!(
                        "seed {seed}: {id} ({:?}) was acknowledged and is not in {}'s state ({:?})",
                        e.request, finals[0].0, out.faults
                    ));
                }
            }
            Some((_, Reply::Unknown { .. })) => out.unknown += 1,
            Some((_, Reply::Failed { error })) => {
                return Err(format!("seed {seed}: {:?} failed: {error}", e.request))
            }
            None if e.invoked > healed + SECOND => {
                return Err(format!(
                    "seed {seed}: {:?} at {} invoked {} ms after the faults healed, never answered ({:?})",
                    e.request,
                    e.node,
                    (e.invoked - healed) / MS,
                    out.faults
                ))
            }
            None => {}
        }
    }
    Ok(out)
}
