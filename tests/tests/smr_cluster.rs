//! State machine replication over real processes: the seed's own 17-step
//! test (`tests.py`), line for line, with its two replica failures, its
//! quits and its late client; then the failed replicas come back, rejoin
//! by snapshot, and every replica's log is a prefix of the others' (the
//! seed's final check, which it passed one run in three). Bad input gets
//! the database's errors and changes nothing.

use faultline_e2e::TestCluster;
use faultline_node::api::NodeState;
use faultline_node::protocol::smr::SmrState;
use std::time::{Duration, Instant};

const EXTRA: &str =
    "smr:\n  null_period_ms: 100\n  replica_timeout_ms: 800\n  op_deadline_ms: 10000\n";

/// Runs a verb that must succeed and returns its lines.
fn ok(c: &TestCluster, id: &str, args: &[&str]) -> Vec<String> {
    let (success, text) = c.verb(id, args);
    assert!(success, "{id} {args:?} failed: {text}");
    text.lines().map(String::from).collect()
}

fn list(rows: &[&str]) -> Vec<String> {
    std::iter::once("Availability,ZIP Code,Site Name")
        .chain(rows.iter().copied())
        .map(String::from)
        .collect()
}

async fn replica(c: &TestCluster, id: &str) -> Option<SmrState> {
    c.state_as::<SmrState>(id)
        .await
        .map(|s: NodeState<SmrState>| s.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_seventeen_steps_line_for_line() {
    let mut c = TestCluster::of_roles(
        "smr-seventeen",
        "smr",
        &[("replica", "r", 3), ("client", "c", 5)],
        EXTRA,
    );
    for id in ["r1", "r2", "r3", "c1", "c2", "c3", "c4"] {
        c.start(id);
    }
    c.wait_ready(Duration::from_secs(20)).await;
    let harvard0 = "0,02138,Harvard University";
    // 1. list and view.
    assert_eq!(ok(&c, "c1", &["list"]), list(&[harvard0]));
    assert_eq!(
        ok(&c, "c1", &["view", "Harvard", "University"]),
        ["Availability at Harvard University (ZIP code 02138): 0"]
    );
    // 2. A second client lists.
    assert_eq!(ok(&c, "c2", &["list"]), list(&[harvard0]));
    // 3. Harvard edited to 10 and seen by the other client.
    assert_eq!(
        ok(&c, "c1", &["edit", "Harvard", "University", "10"]),
        ["Vaccine availability at Harvard University (ZIP code 02138) updated to 10."]
    );
    assert_eq!(
        ok(&c, "c2", &["view", "Harvard", "University"]),
        ["Availability at Harvard University (ZIP code 02138): 10"]
    );
    // 4. Add MIT.
    assert_eq!(
        ok(&c, "c2", &["add", "MIT", "02138"]),
        ["MIT (ZIP code 02138) added with vaccine availability 0."]
    );
    assert_eq!(
        ok(&c, "c1", &["add", "MIT", "02138"]),
        ["MIT already in database."]
    );
    let two = list(&["10,02138,Harvard University", "0,02138,MIT"]);
    // 5. Replica 0 fails; both clients list.
    c.kill("r1");
    assert_eq!(ok(&c, "c1", &["list"]), two);
    assert_eq!(ok(&c, "c2", &["list"]), two);
    // 6. Client 1 quits.
    assert_eq!(ok(&c, "c1", &["quit"]), ["Goodbye."]);
    // 7. Add Boston University.
    assert_eq!(
        ok(&c, "c2", &["add", "Boston", "University", "02215"]),
        ["Boston University (ZIP code 02215) added with vaccine availability 0."]
    );
    // 8. Client 3 lists.
    let three = list(&[
        "0,02215,Boston University",
        "10,02138,Harvard University",
        "0,02138,MIT",
    ]);
    assert_eq!(ok(&c, "c3", &["list"]), three);
    // 9. Client 4 adds Tufts.
    assert_eq!(
        ok(&c, "c4", &["add", "Tufts", "University", "02155"]),
        ["Tufts University (ZIP code 02155) added with vaccine availability 0."]
    );
    // 10. Replica 1 fails; every client lists.
    c.kill("r2");
    let four = list(&[
        "0,02215,Boston University",
        "10,02138,Harvard University",
        "0,02138,MIT",
        "0,02155,Tufts University",
    ]);
    for id in ["c2", "c3", "c4"] {
        assert_eq!(ok(&c, id, &["list"]), four, "{id}");
    }
    // 11. Every client quits; client 5 starts and lists.
    for id in ["c2", "c3", "c4"] {
        assert_eq!(ok(&c, id, &["quit"]), ["Goodbye."], "{id}");
    }
    c.start("c5");
    c.wait_ready(Duration::from_secs(20)).await;
    assert_eq!(ok(&c, "c5", &["list"]), four);
    // 12. MIT edited to False.
    assert_eq!(
        ok(&c, "c5", &["edit", "MIT", "False"]),
        ["Vaccine availability at MIT (ZIP code 02138) updated to False."]
    );
    assert_eq!(
        ok(&c, "c5", &["view", "MIT"]),
        ["Availability at MIT (ZIP code 02138): False"]
    );
    // Bad input: the database's errors, before anything is sent.
    for (args, says) in [
        (&["add", "Somewhere", "02a15"][..], "ZIP code"),
        (&["edit", "MIT", "-4"][..], "negative"),
        (&["edit", "MIT", "lots"][..], "whole number"),
        (&["view", "a`b"][..], "backtick"),
    ] {
        let (success, text) = c.verb("c5", args);
        assert!(!success, "{args:?} should fail: {text}");
        assert!(text.contains(says), "{args:?}: {text}");
    }
    assert_eq!(
        ok(&c, "c5", &["view", "Nowhere"]),
        ["Site does not exist. Choose [l] to view all sites."]
    );
    // The failed replicas come back: each rejoins as a new incarnation
    // from a snapshot of r3 and serves again.
    c.start("r1");
    c.start("r2");
    let t0 = Instant::now();
    let (mut states, mut last) = (Vec::new(), String::new());
    // Bounded: 30 s of polls 100 ms apart.
    while t0.elapsed() < Duration::from_secs(30) {
        states.clear();
        for id in ["r1", "r2", "r3"] {
            if let Some(s) = replica(&c, id).await {
                states.push((id, s));
            }
        }
        last = format!(
            "{:?}",
            states
                .iter()
                .map(|(id, s)| (id, &s.mode, s.index))
                .collect::<Vec<_>>()
        );
        if states.len() == 3
            && states.iter().all(|(_, s)| s.mode == "replica")
            && states.iter().all(|(_, s)| s.index == states[0].1.index)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(states.len(), 3, "{last}");
    for (id, s) in &states {
        assert_eq!(s.mode, "replica", "{id} did not rejoin: {last}");
        assert_eq!(s.log_conflicts, 0, "{id}");
    }
    assert!(
        states.iter().any(|(_, s)| s.incarnation >= 1),
        "restarted replicas are new incarnations: {last}"
    );
    // The seed's final check: every log is a prefix of every longer one
    // (here they end equal), and so are the databases.
    let logs: Vec<_> = states
        .iter()
        .map(|(_, s)| s.log.clone().expect("a replica has a log"))
        .collect();
    for l in &logs {
        assert_eq!(l.first().map(|x| x.index), Some(1), "whole logs");
        assert_eq!(l, &logs[0], "{last}");
    }
    for (_, s) in &states {
        assert_eq!(s.sites, states[0].1.sites);
    }
    // A restarted replica serves: its client answers through the order.
    assert_eq!(
        ok(&c, "c5", &["view", "MIT"]),
        ["Availability at MIT (ZIP code 02138): False"]
    );
}
