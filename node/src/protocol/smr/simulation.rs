//! The seeded simulation of state machine replication that the tests run,
//! on the generic simulator ([`Sim`]) with the system's FIFO links: three
//! replicas and five clients; up to two replicas crash (t - 1), and half of
//! them restart from their records and rejoin by snapshot; one client
//! crashes for good, one is paused past its timeout (expelled, it joins
//! again when it wakes), one crashes and restarts (a join mid-run). After
//! every event the replicas' logs must be prefixes of one another and every
//! reply that completed must equal a sequential replay of the order at the
//! index it names; at the end every operation of the clients no fault
//! touched must have its answer (liveness).

use super::db::{Availability, Command, Db, DbError};
use super::order::Body;
use super::replica::Executed;
use super::{Bugs, Params, Reply, Request, SmrNode};
use crate::protocol::Time;
use crate::sim::{NetConfig, Sim, Step};
use crate::system::Channels;
use rand::Rng;
use std::collections::BTreeMap;
use std::sync::Arc;

const SECOND: u64 = 1_000_000;
const MS: u64 = 1_000;
/// The workload runs to here; faults are over by then.
const WORKLOAD_END: Time = 8 * SECOND;
const END: Time = 14 * SECOND;

/// What one simulated run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub ops: usize,
    pub done: usize,
    pub unknown: usize,
    pub replicas_crashed: usize,
    pub replicas_rejoined: usize,
    /// The longest log at the end.
    pub executed: u64,
}

pub fn params(bugs: Bugs) -> Params {
    let mut p = Params::with_defaults(
        vec!["r1".into(), "r2".into(), "r3".into()],
        (1..=5).map(|i| format!("c{i}")).collect(),
    );
    p.bugs = bugs;
    p
}

/// A request's client, command and answer at its index of the replay.
type Answer = (String, Command, Result<Vec<String>, DbError>);

/// The order's replay so far: the database after the first `upto` entries
/// of the (agreed) order, and what each request answered there.
#[derive(Default)]
struct Replay {
    db: Db,
    upto: u64,
    answers: BTreeMap<u64, Answer>,
}

impl Replay {
    /// Replays `log`'s entries past `upto` (the log reaches back to it).
    fn extend(&mut self, log: &[&Executed]) -> Result<(), String> {
        let from = self.upto;
        for x in log.iter().filter(|x| x.index > from) {
            if x.index != self.upto + 1 {
                return Err(format!(
                    "the replay is at {} and the log jumps to {}",
                    self.upto, x.index
                ));
            }
            if let Body::Request { command, .. } = &x.entry.body {
                let answer = self.db.apply(command);
                self.answers.insert(
                    x.index,
                    (x.entry.source.node.clone(), command.clone(), answer),
                );
            }
            self.upto = x.index;
        }
        Ok(())
    }
}

/// The invariants after one event: logs are prefixes of one another, and
/// every reply completed by the event is the replay's answer at its index.
struct Checker {
    replay: Replay,
}

impl Checker {
    fn check(&mut self, sim: &Sim<SmrNode>, step: &Step) -> Result<(), String> {
        let logs: Vec<(&str, &std::collections::VecDeque<Executed>)> = sim
            .nodes()
            .filter_map(|n| n.replica())
            .map(|r| (r.me().node.as_str(), &r.log))
            .collect();
        // The node the event touched against every other replica, where
        // both have an index (the others were checked when they grew).
        if let Some((id, log)) = step
            .node
            .as_deref()
            .and_then(|n| logs.iter().find(|(id, _)| *id == n))
        {
            for (other, theirs) in logs.iter().filter(|(o, _)| o != id) {
                let Some(first) = theirs.front().map(|x| x.index) else {
                    continue;
                };
                for x in log.iter().rev() {
                    let Some(y) = x
                        .index
                        .checked_sub(first)
                        .and_then(|k| theirs.get(k as usize))
                    else {
                        continue;
                    };
                    if (&y.entry.source, y.entry.seq) != (&x.entry.source, x.entry.seq) {
                        return Err(format!(
                            "{id} and {other} diverge at index {}: {:?} vs {:?}",
                            x.index, x.entry, y.entry
                        ));
                    }
                    // Older entries were compared when they were new.
                    if x.index + 4 < log.back().map_or(0, |b| b.index) {
                        break;
                    }
                }
            }
        }
        for &i in &step.completed {
            let op = &sim.history[i];
            let Some((_, Reply::Done { index, lines })) = &op.completed else {
                continue;
            };
            if *index > self.replay.upto {
                let longest = logs
                    .iter()
                    .max_by_key(|(_, l)| l.back().map_or(0, |x| x.index))
                    .map(|(_, l)| l.iter().collect::<Vec<_>>())
                    .unwrap_or_default();
                self.replay.extend(&longest)?;
            }
            let Request::Command(command) = &op.request else {
                return Err(format!("{} got a database answer to quit", op.node));
            };
            match self.replay.answers.get(index) {
                Some((client, c, Ok(want)))
                    if *client == op.node && c == command && want == lines => {}
                other => {
                    return Err(format!(
                    "{} got {lines:?} for {command:?} at index {index}; the replay has {other:?}",
                    op.node
                ))
                }
            }
        }
        Ok(())
    }
}

fn command(rng: &mut impl Rng) -> Command {
    let sites = ["Harvard University", "MIT", "Tufts", "BU"];
    let site = sites[rng.random_range(0..sites.len())].to_string();
    match rng.random_range(0..10) {
        0 => Command::List,
        1..=3 => Command::View { site },
        4..=5 => Command::Add {
            site,
            zip: "02138".into(),
        },
        _ => Command::Edit {
            site,
            availability: Availability::Count(rng.random_range(0..100)),
        },
    }
}

/// Runs one seed; returns the first violation (with the seed) or the
/// outcome and the simulator.
pub fn run_seed(seed: u64, bugs: Bugs) -> Result<(Outcome, Sim<SmrNode>), String> {
    let p = Arc::new(params(bugs));
    let cores = p
        .replicas
        .iter()
        .chain(&p.clients)
        .map(|id| SmrNode::new(id, &p))
        .collect();
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed ^ 0x5eed_0001);
    // Reliable FIFO links (QUIC streams), with delays: the model's links.
    let net = NetConfig {
        drop: 0.0,
        duplicate: 0.0,
        delay_min_us: 100,
        delay_max_us: rng.random_range(500..20_000),
    };
    let mut sim = Sim::with_channels(seed, cores, net, Channels::Fifo);
    let mut out = Outcome::default();

    // Workload: 250 commands over 8 s from the five clients.
    for _ in 0..250 {
        let at = rng.random_range(0..WORKLOAD_END);
        let c = format!("c{}", rng.random_range(1..=5));
        sim.invoke_at(at, &c, Request::Command(command(&mut rng)));
    }

    // Faults, as (time, what, node).
    let mut events: Vec<(Time, &'static str, String)> = Vec::new();
    let first = rng.random_range(0..3usize);
    let crashes = match rng.random_range(0..4) {
        0 => 0,
        1 | 2 => 1,
        _ => 2,
    };
    for k in 0..crashes {
        let r = p.replicas[(first + k) % 3].clone();
        let at = rng.random_range(500 * MS..6 * SECOND);
        events.push((at, "crash", r.clone()));
        if rng.random_bool(0.5) {
            events.push((at + rng.random_range(200 * MS..2 * SECOND), "restart", r));
            out.replicas_rejoined += 1;
        }
        out.replicas_crashed += 1;
    }
    events.push((rng.random_range(300 * MS..5 * SECOND), "crash", "c4".into()));
    let pause = rng.random_range(500 * MS..4 * SECOND);
    events.push((pause, "pause", "c3".into()));
    events.push((pause + 3 * SECOND, "resume", "c3".into()));
    let c5 = rng.random_range(500 * MS..5 * SECOND);
    events.push((c5, "crash", "c5".into()));
    events.push((
        c5 + rng.random_range(100 * MS..SECOND),
        "restart",
        "c5".into(),
    ));
    events.sort();

    let mut checker = Checker {
        replay: Replay::default(),
    };
    let mut check = |sim: &Sim<SmrNode>, step: &Step| checker.check(sim, step);
    let with_seed = |e: String| format!("seed {seed}: {e}");
    for (at, what, node) in events {
        sim.run_until(at, 5_000_000, &mut check)
            .map_err(with_seed)?;
        match what {
            "crash" => sim.crash(&node),
            "restart" => sim.restart(SmrNode::new(&node, &p)),
            "pause" => sim.pause(&node),
            _ => sim.resume(&node),
        }
    }
    sim.run_until(END, 20_000_000, &mut check)
        .map_err(with_seed)?;

    // Liveness: the clients no fault touched had every command answered,
    // and executed (every stall is bounded by a timeout well under the
    // deadline).
    for op in &sim.history {
        out.ops += 1;
        match &op.completed {
            Some((_, Reply::Done { .. })) => out.done += 1,
            Some((_, Reply::Unknown { .. })) | None => out.unknown += 1,
            Some(_) => {}
        }
        if ["c1", "c2"].contains(&op.node.as_str())
            && !matches!(op.completed, Some((_, Reply::Done { .. })))
        {
            return Err(with_seed(format!(
                "{} invoked {:?} at {} us and got {:?} by the end",
                op.node, op.request, op.invoked, op.completed
            )));
        }
    }
    out.executed = sim
        .nodes()
        .filter_map(|n| n.replica())
        .map(|r| r.index)
        .max()
        .unwrap_or(0);
    // Every replica that lives at the end is in the order, not joining.
    for r in sim.nodes().filter_map(|n| n.replica()) {
        if !sim.is_crashed(&r.me().node) && r.is_joining() {
            return Err(with_seed(format!("{} never rejoined", r.me())));
        }
    }
    Ok((out, sim))
}
