//! The bitcake network in the seeded simulator (non-FIFO links, the seed's
//! 0.5-1.5 s delays): 500 seeds of the seed's graph with both initiators
//! asking for snapshots again and again, concurrently, while money moves;
//! every snapshot audited against the transactions' ground truth. Each
//! planted bug must be caught by a check other than the snapshot's total.

use faultline_node::protocol::snapshot::simulation::{run, Outcome, Setup};
use faultline_node::protocol::snapshot::Bugs;

fn seed(s: u64, bugs: Bugs) -> Outcome {
    run(s, &Setup::seed_network(bugs)).unwrap_or_else(|e| panic!("seed {s}: {e}"))
}

#[test]
fn five_hundred_seeds_every_snapshot_matches_the_truth() {
    let (mut snapshots, mut concurrent, mut transactions) = (0, 0, 0);
    for s in 0..500 {
        let o = seed(s, Bugs::default());
        for c in &o.checks {
            assert!(
                c.passed(),
                "seed {s}: {} failed: {} {:?}",
                c.name,
                c.describe(),
                c.unknown
            );
        }
        assert!(o.snapshots >= 3, "seed {s}: only {} snapshots", o.snapshots);
        snapshots += o.snapshots;
        concurrent += o.concurrent;
        transactions += o.transactions;
    }
    eprintln!(
        "500 seeds: {snapshots} snapshots ({concurrent} with two masters), {transactions} transactions, all checked"
    );
    assert!(
        concurrent > 50,
        "concurrent initiators too rare: {concurrent}"
    );
}

/// Seeds (of `seeds`) whose run fails a check; the total must not be the
/// only one that sees it.
fn caught(name: &str, bugs: Bugs, seeds: u64) -> usize {
    let mut hits = 0;
    for s in 0..seeds {
        let o = seed(s, bugs.clone());
        let failed = o.failed();
        if failed.iter().any(|c| *c != "snapshot-total") {
            hits += 1;
        }
        if s == 0 {
            eprintln!("{name}, seed 0: failed {failed:?}");
            for c in o.checks.iter().filter(|c| !c.passed()) {
                eprintln!("  {}: {}", c.name, c.describe());
            }
        }
    }
    eprintln!("{name}: caught in {hits} of {seeds} seeds");
    hits
}

#[test]
fn the_seeds_minting_bug_is_caught_though_every_total_adds_up() {
    let bugs = Bugs {
        red_sender_mints: true,
        ..Bugs::default()
    };
    let o = seed(0, bugs.clone());
    let total = o.checks.iter().find(|c| c.name == "snapshot-total");
    assert!(
        total.is_some_and(|c| c.passed()),
        "the seed's own check (the total) must not see it: {total:?}"
    );
    assert_eq!(caught("red_sender_mints", bugs, 20), 20);
}

#[test]
fn recording_after_handling_is_caught() {
    let bugs = Bugs {
        record_after_handling: true,
        ..Bugs::default()
    };
    assert!(caught("record_after_handling", bugs, 20) >= 18);
}

#[test]
fn a_forgotten_differential_reset_is_caught() {
    let bugs = Bugs {
        stale_differential: true,
        ..Bugs::default()
    };
    assert!(caught("stale_differential", bugs, 20) >= 18);
}
