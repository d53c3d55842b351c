//! The bitcake network over real processes: the seed's seven nodes and
//! twelve edges (named n1..n7 here), its scripts (bursts at five nodes,
//! snapshots by both initiators, the second one's twice) at a fifth of the
//! seed's times, with the seed's non-FIFO channels (random delays, a fifth
//! of its 0.5-1.5 s); then both initiators at once (Spezialetti-Kearns),
//! and the seed's errors: a snapshot asked of a non-initiator, and of an
//! initiator whose previous one is still being collected. Every snapshot
//! is audited against the transactions' ground truth.

use faultline_chaos::systems::snapshot::is_quiet;
use faultline_e2e::{TestCluster, SECRET};
use faultline_node::api::PutFaults;
use faultline_node::faults::FaultRule;
use faultline_node::protocol::snapshot::audit::{audit, Network};
use faultline_node::protocol::snapshot::graph::{seed_neighbours, Graph};
use faultline_node::protocol::snapshot::SnapshotState;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The seed's node i is n(i+1) here.
fn renamed(n: &str) -> String {
    let i: usize = n.trim_start_matches('n').parse().expect("n<i>");
    format!("n{}", i + 1)
}

fn extra() -> String {
    let mut y = String::from("snapshot:\n  initiators: [n4, n5]\n  burst: 10\n  neighbours:\n");
    for (n, nbs) in seed_neighbours() {
        let nbs: Vec<String> = nbs.iter().map(|m| renamed(m)).collect();
        y += &format!("    {}: [{}]\n", renamed(&n), nbs.join(", "));
    }
    y += "  scripts:\n";
    // The seed's scripts at a fifth of its times: nodes 0, 1, 2, 5, 6
    // burst twice 3 s apart; node 4 snapshots at 0.1 s; node 3 at 3.2 s
    // and 6.2 s.
    for n in ["n1", "n2", "n3", "n6", "n7"] {
        y += &format!("    {n}: [transaction_burst, pause 3000, transaction_burst]\n");
    }
    y += "    n5: [pause 100, bitcake_info]\n";
    y += "    n4: [pause 3200, bitcake_info, pause 3000, bitcake_info]\n";
    y
}

async fn states(c: &TestCluster, ids: &[String]) -> BTreeMap<String, SnapshotState> {
    let mut out = BTreeMap::new();
    for id in ids {
        if let Some(s) = c.state_as::<SnapshotState>(id).await {
            out.insert(id.clone(), s.state);
        }
    }
    out
}

/// Polls until every node answers and the network is quiet.
async fn quiet(
    c: &TestCluster,
    ids: &[String],
    within: Duration,
) -> BTreeMap<String, SnapshotState> {
    let t0 = Instant::now();
    loop {
        let s = states(c, ids).await;
        if s.len() == ids.len() && is_quiet(&s) {
            return s;
        }
        assert!(
            t0.elapsed() < within,
            "not quiet after {within:?}: {:?}",
            s.iter()
                .map(|(id, s)| (
                    id,
                    s.transactions_sent,
                    s.transactions_got,
                    &s.started,
                    s.collected.len()
                ))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_network_with_both_initiators_every_snapshot_checked() {
    let mut c = TestCluster::of_roles("snapshot-seed", "snapshot", &[("node", "n", 7)], &extra());
    let ids = c.ids("node");
    c.start_all();
    c.wait_ready(Duration::from_secs(20)).await;
    // The seed's channels: every message waits 100 ms plus up to 200 ms.
    let delay = PutFaults {
        rules: vec![FaultRule {
            delay_ms: 100.0,
            jitter_ms: 200.0,
            ..serde_json::from_str("{}").expect("a rule with defaults")
        }],
        lease_ms: None,
        seed: None,
    };
    let body = serde_json::to_value(&delay).expect("plain data");
    for id in &ids {
        let (status, v) = c
            .send(
                reqwest::Method::PUT,
                id,
                "/faults",
                Some(&body),
                Some(SECRET),
            )
            .await;
        assert_eq!(status, 200, "{id}: {v}");
    }

    // The seed's errors: nothing changes, everything keeps working.
    let (ok, text) = c.verb("n1", &["snapshot"]);
    assert!(!ok && text.contains("not an initiator"), "{text}");
    let (ok, text) = c.verb("n1", &["transfer", "n9", "5"]);
    assert!(!ok && text.contains("n9"), "{text}");
    let (ok, text) = c.verb("n1", &["transfer", "n5", "-3"]);
    assert!(!ok && text.contains("amount"), "{text}");
    let (ok, text) = c.verb("n1", &["transfer", "n5", "999999"]);
    assert!(!ok && text.contains("cannot give"), "{text}");
    // A routed transfer: n1 (the seed's 0) reaches n5 (its 4) through
    // intermediaries.
    let (ok, text) = c.verb("n1", &["transfer", "n5", "25"]);
    assert!(ok, "{text}");

    // The scripts run to 6.2 s; once the network is quiet, both
    // initiators at once (two client processes side by side): with the
    // channels' delays, each starts before the other's marker arrives, and
    // the graph splits into two regions.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let _ = quiet(&c, &ids, Duration::from_secs(30)).await;
    let both = std::thread::scope(|s| {
        let n4 = s.spawn(|| c.verb("n4", &["snapshot"]));
        let n5 = s.spawn(|| c.verb("n5", &["snapshot"]));
        (n4.join(), n5.join())
    });
    let (Ok(a), Ok(b)) = both else {
        panic!("a client thread panicked");
    };
    assert!(a.0 && b.0, "{a:?} {b:?}");
    // Again while those run: refused as the seed says (its previous is
    // still being collected).
    let (ok, text) = c.verb("n4", &["snapshot"]);
    assert!(
        !ok && text.contains("before finished with previous"),
        "{text}"
    );
    let (ok, text) = c.verb("n3", &["burst"]);
    assert!(ok, "{text}");

    let s = quiet(&c, &ids, Duration::from_secs(60)).await;
    let graph = Graph::new(
        &seed_neighbours()
            .into_iter()
            .map(|(n, nbs)| (renamed(&n), nbs.iter().map(|m| renamed(m)).collect()))
            .collect(),
    )
    .expect("the seed's graph");
    let edges = graph.edge_list();
    let checks = audit(
        &Network {
            nodes: &ids,
            edges: &edges,
            initial: 1_000,
        },
        &s,
        true,
    );
    for ch in &checks {
        assert!(
            ch.passed(),
            "{}: {} {:?}",
            ch.name,
            ch.describe(),
            ch.unknown
        );
        eprintln!("{}: {}", ch.name, ch.summary);
    }
    // Snapshots by both initiators, one of them concurrent with two
    // masters, and the second initiator's repeated one differential.
    let epochs: Vec<u64> = s["n4"].collected.iter().map(|c| c.epoch).collect();
    assert!(epochs.len() >= 3, "{epochs:?}");
    let last = epochs.last().copied().unwrap_or(0);
    let masters: Vec<&String> = s
        .iter()
        .filter(|(_, st)| st.started.contains(&last))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        masters.len(),
        2,
        "both initiators started {last}: {masters:?}"
    );
    assert!(s["n4"].started.len() >= 2 && s["n5"].started.len() >= 2);
    // Every node joined one region and logged its parent (the masters none).
    for (id, st) in &s {
        assert_eq!(st.epoch, last, "{id}");
        assert_eq!(
            st.parent.is_none(),
            masters.contains(&id),
            "{id}: {:?}",
            st.parent
        );
    }
    // The output: text and JSON, the seed's lines and its total.
    let (ok, text) = c.verb("n5", &["snapshots"]);
    assert!(ok, "{text}");
    assert!(text.contains("System bitcake count: 7000"), "{text}");
    assert!(text.contains("Recorded bitcake amount for n1"), "{text}");
    let out = c.cli(&["--id", "n5", "--json", "snapshots"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v[0]["global"]["total"], 7000, "{v}");
}
