//! The seeded simulation of the token system that the tests run: a cluster
//! of 3..7 servers and 6 clients on a faulty in-memory network, a random
//! workload of pays, gettokens and transforms, invariants checked after every
//! event, healing, and a final liveness and ownership check. It lives in the
//! library so the node's tests and the controller's linearizability test
//! drive exactly the same runs.

use super::invariants::{check_reads, Checker, Done};
use super::{Bugs, Params, Reply, Request, Tokens, TokensNode};
use crate::api::PutFaults;
use crate::protocol::Core;
use crate::sim::{NetConfig, Sim};
use crate::system::{Channels, System};
use rand::seq::IndexedRandom;
use rand::Rng;
use std::sync::Arc;

const SECOND: u64 = 1_000_000;

/// What one simulated run did.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub ops: usize,
    pub ok: usize,
    pub transforms_ok: usize,
}

/// A seeded cluster: 3..7 servers, 6 clients, a network that drops,
/// duplicates and reorders, and omission on f < n/2 of the servers.
pub fn cluster(seed: u64, bugs: Bugs) -> (Sim<TokensNode>, Vec<String>) {
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed ^ 0x5eed);
    let n_servers = rng.random_range(3..=7usize);
    let servers: Vec<String> = (1..=n_servers).map(|i| format!("s{i}")).collect();
    let clients: Vec<String> = (1..=6).map(|i| format!("c{i}")).collect();
    let nodes: Vec<String> = servers.iter().chain(&clients).cloned().collect();
    let mut params = Params::with_defaults(
        nodes.clone(),
        servers.clone(),
        Params::round_robin_owners(&clients, 60),
    );
    params.op_deadline_us = SECOND;
    params.reconfig_recovery_us = 2 * SECOND;
    params.bugs = bugs;
    let params = Arc::new(params);
    let cores = nodes
        .iter()
        .map(|id| TokensNode::new(id.clone(), params.clone()))
        .collect();
    let net = NetConfig {
        drop: rng.random_range(0.0..0.1),
        duplicate: rng.random_range(0.0..0.1),
        delay_min_us: 50,
        delay_max_us: rng.random_range(500..20_000),
    };
    // The token system's links are FIFO, but its protocol does not rely on
    // order (every phase is a quorum round matched by request id), so the
    // simulation reorders anyway: a stronger adversary than the real links.
    debug_assert_eq!(Tokens::CHANNELS, Channels::Fifo);
    let mut sim = Sim::with_channels(seed, cores, net, Channels::NonFifo);
    // Omission on f < n/2 of the initial servers.
    let f = (n_servers - 1) / 2;
    for s in servers.choose_multiple(&mut rng, f) {
        let p = rng.random_range(0.3..=1.0);
        sim.omission.insert(s.clone(), p);
    }
    (sim, nodes)
}

/// Runs one seed with invariants after every event; returns the first
/// violation, with the seed in the message, or the outcome and the
/// simulator (whose history a caller may check further).
pub fn run_seed(seed: u64, bugs: Bugs) -> Result<(Outcome, Sim<TokensNode>), String> {
    run_seed_with(seed, bugs, None)
}

/// [`run_seed`] with every node's message fault layer programmed as
/// `PUT /faults` would program it, for the whole run until healing.
pub fn run_seed_with(
    seed: u64,
    bugs: Bugs,
    faults: Option<&PutFaults>,
) -> Result<(Outcome, Sim<TokensNode>), String> {
    let (mut sim, nodes) = cluster(seed, bugs);
    if let Some(f) = faults {
        sim.put_faults_all(f);
    }
    let mut checker = Checker::default();
    let mut check = |sim: &Sim<TokensNode>, step: &crate::sim::Step| -> Result<(), String> {
        let mut durable_dirty = false;
        if let Some(id) = &step.node {
            if let Some(n) = sim.node(id) {
                checker.observe(n)?;
                durable_dirty = true;
            }
        }
        for &i in &step.completed {
            if let Some((_, Reply::Paid { token, tag })) = &sim.history[i].completed {
                checker.acknowledge(*token, tag)?;
            }
        }
        if durable_dirty || !step.completed.is_empty() {
            checker.check_durable(sim.nodes().filter(|n| !sim.is_crashed(n.id_str())))?;
        }
        Ok(())
    };

    // Workload: 40 operations over 3 simulated seconds, overlapping.
    let mut t = 0;
    for _ in 0..40 {
        t += sim.rng().random_range(0..150_000);
        let node = nodes.choose(sim.rng()).cloned().unwrap_or_default();
        let roll = sim.rng().random_range(0..100);
        let request = if roll < 8 {
            Request::Transform
        } else if roll < 30 {
            Request::GetTokens {
                owner: nodes.choose(sim.rng()).cloned().unwrap_or_default(),
            }
        } else {
            // Pay a token this node probably owns: token i starts at client i mod 6.
            let token = match node.strip_prefix('c').and_then(|c| c.parse::<u32>().ok()) {
                Some(c) => (c - 1) + 6 * sim.rng().random_range(0..10),
                None => sim.rng().random_range(0..60),
            };
            let to = nodes
                .iter()
                .filter(|n| n.starts_with('c'))
                .cloned()
                .collect::<Vec<_>>()
                .choose(sim.rng())
                .cloned()
                .unwrap_or_default();
            Request::Pay { token, to }
        };
        sim.invoke_at(t, &node, request);
    }
    // A client racing itself: a gettokens of its own tokens, and pays of one
    // of them that start while the read (or its write-back) is in flight.
    // Paying to itself keeps the token, so every pay after the first may take
    // the cached-tag fast path: a tag cached across one of these pays would
    // make the next pay write the same version twice.
    for _ in 0..8 {
        let c = sim.rng().random_range(1..=6u32);
        let client = format!("c{c}");
        let token = (c - 1) + 6 * sim.rng().random_range(0..10);
        let at = sim.rng().random_range(0..3 * SECOND);
        sim.invoke_at(
            at,
            &client,
            Request::GetTokens {
                owner: client.clone(),
            },
        );
        let mut t = at;
        for _ in 0..3 {
            t += sim.rng().random_range(0..20_000);
            let to = client.clone();
            sim.invoke_at(t, &client, Request::Pay { token, to });
            sim.invoke_at(
                t,
                &client,
                Request::GetTokens {
                    owner: client.clone(),
                },
            );
        }
    }
    sim.run_until(4 * SECOND, 2_000_000, &mut check)
        .map_err(|e| format!("seed {seed}: {e}"))?;

    // Heal and let it settle: every client must then read successfully.
    sim.omission.clear();
    sim.net.drop = 0.0;
    sim.put_faults_all(&PutFaults {
        rules: Vec::new(),
        lease_ms: None,
        seed: None,
    });
    sim.run_until(12 * SECOND, 2_000_000, &mut check)
        .map_err(|e| format!("seed {seed} (healing): {e}"))?;
    let clients: Vec<String> = sim
        .nodes()
        .filter(|n| n.role() == "client")
        .map(|n| n.id_str().to_string())
        .collect();
    let mut reads = Vec::new();
    let at = sim.now;
    for c in &clients {
        for owner in &nodes {
            reads.push(sim.invoke_at(
                at,
                c,
                Request::GetTokens {
                    owner: owner.clone(),
                },
            ));
        }
    }
    sim.run_until(at + 4 * SECOND, 2_000_000, &mut check)
        .map_err(|e| format!("seed {seed} (final reads): {e}"))?;
    // After quiescence the reads of one client partition the 60 tokens.
    let mut seen = vec![0u32; 60];
    for &i in reads.iter().take(nodes.len()) {
        match &sim.history[i].completed {
            Some((_, Reply::Tokens { tokens, .. })) => {
                for (t, _) in tokens {
                    seen[*t as usize] += 1;
                }
            }
            other => {
                let states: Vec<String> = sim
                    .nodes()
                    .map(|n| {
                        let mut state = n.state();
                        state.tokens = None;
                        format!("{}: {state:?}", n.id())
                    })
                    .collect();
                return Err(format!(
                    "seed {seed}: final read not live after healing: {other:?}\n{}",
                    states.join("\n")
                ));
            }
        }
    }
    // The reads run concurrently, and the write of a pay that ended unknown
    // may still sit at a minority and take effect between two of them, so a
    // token with such a pay may be listed by none or two of the reads (the
    // linearizability check in the chaos crate judges those). Every other
    // token must be listed exactly once.
    let uncertain: std::collections::BTreeSet<u32> = sim
        .history
        .iter()
        .filter_map(|e| match (&e.request, &e.completed) {
            (Request::Pay { token, .. }, None | Some((_, Reply::Unknown { .. }))) => Some(*token),
            _ => None,
        })
        .collect();
    if let Some(t) = (0..60u32).find(|t| seen[*t as usize] != 1 && !uncertain.contains(t)) {
        return Err(format!(
            "seed {seed}: token {t} has {} owners at quiescence",
            seen[t as usize]
        ));
    }

    let done: Vec<Done> = sim
        .history
        .iter()
        .map(|e| Done {
            node: &e.node,
            request: &e.request,
            invoked: e.invoked,
            completed: e.completed.as_ref().map(|(t, r)| (*t, r)),
        })
        .collect();
    check_reads(&done).map_err(|e| format!("seed {seed}: {e}"))?;
    if let Some(e) = sim.history.iter().find(|e| e.completed.is_none()) {
        return Err(format!(
            "seed {seed}: operation never answered: {} {:?} at {}",
            e.node, e.request, e.invoked
        ));
    }
    let outcome = Outcome {
        ops: sim.history.len(),
        ok: sim
            .history
            .iter()
            .filter(|e| {
                e.completed
                    .as_ref()
                    .is_some_and(|(_, r)| r.outcome() == crate::api::Outcome::Ok)
            })
            .count(),
        transforms_ok: sim
            .history
            .iter()
            .filter(|e| matches!(e.completed, Some((_, Reply::Transformed { .. }))))
            .count(),
    };
    Ok((outcome, sim))
}
