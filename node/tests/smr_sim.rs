//! State machine replication in the seeded simulator (the generic one, on
//! FIFO links): 500 seeds of replica crashes and restarts, a crashed, a
//! paused and a restarted client; prefix and replay after every event,
//! liveness at the end. Each planted bug must be caught.

use faultline_node::protocol::smr::simulation::run_seed;
use faultline_node::protocol::smr::Bugs;

#[test]
fn five_hundred_seeds_keep_one_order() {
    let (mut ops, mut done, mut crashed, mut rejoined) = (0, 0, 0, 0);
    for seed in 0..500 {
        match run_seed(seed, Bugs::default()) {
            Ok((o, _)) => {
                ops += o.ops;
                done += o.done;
                crashed += o.replicas_crashed;
                rejoined += o.replicas_rejoined;
            }
            Err(e) => panic!("{e}"),
        }
    }
    eprintln!(
        "500 seeds: {ops} operations, {done} done; {crashed} replica crashes, {rejoined} rejoined"
    );
    // c1 and c2 must have every command done (run_seed checks); c3 is
    // paused, c4 crashes, c5 restarts: theirs may end unknown.
    assert!(done > ops * 2 / 3, "only {done} of {ops} operations done");
    assert!(rejoined > 100, "only {rejoined} replicas rejoined");
}

fn caught(name: &str, bugs: Bugs, seeds: u64) -> usize {
    let failures: Vec<String> = (0..seeds)
        .filter_map(|s| run_seed(s, bugs.clone()).err())
        .collect();
    eprintln!(
        "{name}: caught in {} of {seeds} seeds; first: {:?}",
        failures.len(),
        failures.first()
    );
    failures.len()
}

#[test]
fn execute_before_stable_is_caught() {
    let bugs = Bugs {
        execute_before_stable: true,
        ..Bugs::default()
    };
    assert!(caught("execute_before_stable", bugs, 50) > 0);
}

#[test]
fn join_out_of_order_is_caught() {
    let bugs = Bugs {
        join_out_of_order: true,
        ..Bugs::default()
    };
    assert!(caught("join_out_of_order", bugs, 50) > 0);
}

#[test]
fn ignore_nulls_is_caught() {
    let bugs = Bugs {
        ignore_nulls: true,
        ..Bugs::default()
    };
    assert!(caught("ignore_nulls", bugs, 20) > 0);
}
