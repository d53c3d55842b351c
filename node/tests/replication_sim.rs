//! Replication in the seeded simulator (FIFO links): 500 seeds per mode of
//! replica kills and restarts (the primary included), a false suspicion
//! (a paused replica), a passive primary replaced behind its back (it and
//! one client miss the new view), the GFD and the RM killed and restarted,
//! lost replies, forwards, acknowledgements and echoes; exactly once,
//! agreement (the same store and order) and durability of acknowledged
//! writes at the end, and every late operation answered. The planted bugs `forget_outcomes_on_promotion`,
//! `unfenced_promotion` and `arrival_order` must be caught.

use faultline_node::protocol::replication::simulation::run_seed;
use faultline_node::protocol::replication::Bugs;

fn many(active: bool) {
    let (mut ops, mut done, mut views) = (0, 0, 0);
    for seed in 0..500 {
        match run_seed(seed, active, Bugs::default()) {
            Ok(o) => {
                ops += o.ops;
                done += o.done;
                views += o.views;
            }
            Err(e) => panic!("{e}"),
        }
    }
    eprintln!(
        "{} mode, 500 seeds: {ops} operations, {done} done, {views} views",
        if active { "active" } else { "passive" }
    );
    assert!(done > ops * 9 / 10, "only {done} of {ops} done");
}

#[test]
fn passive_five_hundred_seeds() {
    many(false);
}

#[test]
fn active_five_hundred_seeds() {
    many(true);
}

fn caught(name: &str, active: bool, bugs: Bugs, seeds: u64) -> usize {
    let failures: Vec<String> = (0..seeds)
        .filter_map(|s| run_seed(s, active, bugs.clone()).err())
        .collect();
    eprintln!(
        "{name}: caught in {} of {seeds} seeds; first: {:?}",
        failures.len(),
        failures.first()
    );
    failures.len()
}

#[test]
fn planted_bugs_are_caught() {
    let b = |f: fn(&mut Bugs)| {
        let mut x = Bugs::default();
        f(&mut x);
        x
    };
    assert!(
        caught(
            "forget_outcomes_on_promotion",
            false,
            b(|x| x.forget_outcomes_on_promotion = true),
            100
        ) > 0
    );
    assert!(
        caught(
            "unfenced_promotion",
            false,
            b(|x| x.unfenced_promotion = true),
            100
        ) > 0
    );
    assert!(caught("arrival_order", true, b(|x| x.arrival_order = true), 50) > 0);
}
