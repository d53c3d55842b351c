//! The seeded simulation of the bitcake network that the tests and the
//! benchmark run, on the generic simulator ([`Sim`]) with non-FIFO links:
//! random transfers (routed to non-neighbours) and bursts while the
//! initiators ask for snapshots again and again, concurrently; the seed's
//! random 0.5-1.5 s message delays by default. The run goes on until the
//! network is quiet, and every snapshot is audited against the ground
//! truth of the transactions ([`audit`]).

use super::audit::{audit, AuditCheck, Network};
use super::graph::{Graph, NodeId};
use super::{Bugs, Params, Reply, Request, SnapNode};
use crate::protocol::Time;
use crate::sim::{NetConfig, Sim};
use crate::system::Channels;
use rand::Rng;
use std::collections::BTreeMap;
use std::sync::Arc;

const MS: u64 = 1_000;
const SECOND: u64 = 1_000_000;

/// One simulated run's shape.
#[derive(Clone, Debug)]
pub struct Setup {
    pub neighbours: BTreeMap<NodeId, Vec<NodeId>>,
    pub initiators: Vec<NodeId>,
    pub bugs: Bugs,
    /// Commands are issued until here.
    pub workload: Time,
    /// Transfers per second over the whole network.
    pub transfer_rate: u64,
    /// Bursts over the run (each at a random node).
    pub bursts: u32,
    /// Each initiator asks for a snapshot this often (refused while its
    /// previous one is being collected).
    pub snapshot_every: Time,
    pub net: NetConfig,
}

impl Setup {
    /// The seed's network, initiators n3 and n4, its delays.
    pub fn seed_network(bugs: Bugs) -> Setup {
        Setup {
            neighbours: super::graph::seed_neighbours(),
            initiators: vec!["n3".into(), "n4".into()],
            bugs,
            workload: 40 * SECOND,
            transfer_rate: 40,
            bursts: 3,
            snapshot_every: 3 * SECOND,
            net: NetConfig {
                drop: 0.0,
                duplicate: 0.0,
                delay_min_us: 500 * MS,
                delay_max_us: 1_500 * MS,
            },
        }
    }
}

/// What one simulated run did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Snapshots collected (distinct epochs).
    pub snapshots: usize,
    /// Epochs with more than one master (concurrent initiators).
    pub concurrent: usize,
    pub transactions: u64,
    pub refused: u64,
    /// Protocol messages sent per snapshot, by kind (summed over epochs).
    pub messages: BTreeMap<String, u64>,
    /// Start to collection, at the masters, simulated microseconds.
    pub took_us: Vec<u64>,
    pub edges: usize,
    pub nodes: usize,
    pub checks: Vec<AuditCheck>,
    /// When the network went quiet.
    pub end: Time,
}

impl Outcome {
    /// The checks that failed, by name.
    pub fn failed(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|c| !c.passed())
            .map(|c| c.name)
            .collect()
    }
}

/// Runs one seed; `Err` if the graph is invalid or the network never went
/// quiet within its step bound.
pub fn run(seed: u64, setup: &Setup) -> Result<Outcome, String> {
    let graph = Graph::new(&setup.neighbours).map_err(|e| e.to_string())?;
    let mut params = Params::new(graph.clone(), setup.initiators.clone());
    params.bugs = setup.bugs.clone();
    let params = Arc::new(params);
    let ids: Vec<NodeId> = graph.nodes().cloned().collect();
    let cores: Vec<SnapNode> = ids.iter().map(|id| SnapNode::new(id, &params)).collect();
    let mut sim = Sim::with_channels(seed, cores, setup.net.clone(), Channels::NonFifo);

    let seconds = setup.workload / SECOND;
    let transfers = setup.transfer_rate * seconds.max(1);
    for _ in 0..transfers {
        let at = sim.rng().random_range(0..setup.workload);
        let from = ids[sim.rng().random_range(0..ids.len())].clone();
        let to = ids[sim.rng().random_range(0..ids.len())].clone();
        let amount = sim.rng().random_range(1..=50);
        sim.invoke_at(at, &from, Request::Transfer { to, amount });
    }
    for _ in 0..setup.bursts {
        let at = sim.rng().random_range(0..setup.workload);
        let node = ids[sim.rng().random_range(0..ids.len())].clone();
        sim.invoke_at(at, &node, Request::Burst);
    }
    for i in &setup.initiators {
        let mut at = sim.rng().random_range(0..setup.snapshot_every.max(1));
        // Bounded by the workload's length.
        while at < setup.workload {
            sim.invoke_at(at, i, Request::Snapshot);
            at += setup.snapshot_every.max(1);
        }
    }
    // Quiet: nothing is scheduled (no script, so no ticks).
    let bound = 50_000_000;
    sim.run_until(Time::MAX / 2, bound, &mut |_, _| Ok(()))?;
    if sim.steps() >= bound {
        return Err(format!("seed {seed}: not quiet after {bound} steps"));
    }
    let end = sim.now;
    let states: BTreeMap<NodeId, _> = sim
        .nodes()
        .map(|n| {
            (
                crate::protocol::Core::id(n).clone(),
                crate::protocol::Core::state(n),
            )
        })
        .collect();
    let edges = graph.edge_list();
    let checks = audit(
        &Network {
            nodes: &ids,
            edges: &edges,
            initial: params.initial,
        },
        &states,
        true,
    );
    let mut out = Outcome {
        checks,
        end,
        edges: edges.len(),
        nodes: ids.len(),
        ..Outcome::default()
    };
    let mut masters: BTreeMap<u64, usize> = BTreeMap::new();
    for s in states.values() {
        out.transactions += s.transactions_sent;
        out.refused += s.refused;
        for (_, kinds) in &s.messages {
            for (k, n) in kinds {
                *out.messages.entry(k.clone()).or_default() += n;
            }
        }
        for e in &s.started {
            *masters.entry(*e).or_default() += 1;
        }
        for c in &s.collected {
            if let Some(t) = c.took_us {
                out.took_us.push(t);
            }
        }
    }
    out.snapshots = states
        .values()
        .flat_map(|s| s.collected.iter().map(|c| c.epoch))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    out.concurrent = masters.values().filter(|m| **m > 1).count();
    let refused_snapshots = sim
        .history
        .iter()
        .filter(|e| matches!(e.completed, Some((_, Reply::Refused { .. }))))
        .count();
    debug_assert!(refused_snapshots as u64 <= out.refused);
    Ok(out)
}
