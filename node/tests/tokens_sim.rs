//! The token core in the seeded simulator: random pays, gettokens and
//! transforms on a network that drops, delays, duplicates and reorders, with
//! omission on f servers; invariants are checked after every event. The same
//! harness must catch a deliberately broken variant.

use faultline_node::protocol::tokens::simulation::{run_seed, run_seed_with};
use faultline_node::protocol::tokens::Bugs;

#[test]
fn five_hundred_seeds_hold_every_invariant() {
    let (mut ops, mut ok, mut transforms) = (0, 0, 0);
    for seed in 0..500 {
        match run_seed(seed, Bugs::default()) {
            Ok((o, _)) => {
                ops += o.ops;
                ok += o.ok;
                transforms += o.transforms_ok;
            }
            Err(e) => panic!("{e}"),
        }
    }
    eprintln!("500 seeds: {ops} operations, {ok} ok, {transforms} transforms completed");
    // The workload must really exercise the protocol, not time out everywhere.
    assert!(ok > ops / 2, "only {ok} of {ops} operations succeeded");
    assert!(transforms > 50, "only {transforms} transforms completed");
}

#[test]
fn errors_counted_as_acks_are_caught() {
    let bugs = Bugs {
        errors_as_acks: true,
        ..Bugs::default()
    };
    let failures: Vec<String> = (0..300)
        .filter_map(|s| run_seed(s, bugs.clone()).err())
        .collect();
    eprintln!(
        "errors-as-acks: {} of 300 seeds violate an invariant; first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(
        !failures.is_empty(),
        "the harness did not catch errors counted as acks"
    );
}

/// Issue 6's double pay: a gettokens caching its own tags when its read
/// phase ended, so a pay inside the write-back left a stale tag behind. The
/// simulator's self-racing workload must find it.
#[test]
fn a_stale_tag_cache_is_caught() {
    let bugs = Bugs {
        stale_tag_cache: true,
        ..Bugs::default()
    };
    let failures: Vec<String> = (0..300)
        .filter_map(|s| run_seed(s, bugs.clone()).err())
        .collect();
    eprintln!(
        "stale-tag-cache: {} of 300 seeds violate an invariant; first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(
        failures.iter().any(|f| f.contains("paid twice")),
        "the simulator did not find the double pay"
    );
}

#[test]
fn a_failing_seed_replays_exactly() {
    let a = run_seed(7, Bugs::default()).map(|(o, _)| o);
    let b = run_seed(7, Bugs::default()).map(|(o, _)| o);
    assert_eq!(a, b);
}

/// Replays one seed from `FAULTLINE_SEED` (for debugging a failure).
#[test]
fn replay_one_seed() {
    let Some(seed) = std::env::var("FAULTLINE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    else {
        return;
    };
    let t = std::time::Instant::now();
    let r = run_seed(seed, Bugs::default());
    eprintln!(
        "seed {seed}: {:?} in {:?}",
        r.as_ref().map(|(o, _)| o),
        t.elapsed()
    );
    r.unwrap();
}

/// The token core in the simulator under the same message fault rules, in
/// the same JSON, that the admin API takes: loss of read answers, duplicated
/// and delayed writes, reordered messages everywhere. Safety must hold and
/// the final reads must succeed once the rules are lifted.
#[test]
fn admin_api_fault_rules_hold_every_invariant_in_the_simulator() {
    let rules: faultline_node::api::PutFaults = serde_json::from_str(
        r#"{"rules": [
            {"id": "lose-answers", "kind": "read_ok", "drop": 0.2},
            {"id": "dup-writes", "kind": "write", "duplicate": 0.3, "delay_ms": 2, "jitter_ms": 8},
            {"id": "shuffle", "at": "receive", "reorder": {"window": 4, "max_hold_ms": 10}}
        ], "lease_ms": 30000}"#,
    )
    .expect("the admin API's rule format");
    for seed in 0..60 {
        if let Err(e) = run_seed_with(seed, Bugs::default(), Some(&rules)) {
            panic!("{e}");
        }
    }
}
