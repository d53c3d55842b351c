//! The standby bank in the seeded simulator: two servers and three clients
//! (the witnesses) on a lossy network, lost replies, the primary crashed at
//! random instants (so, across seeds, at every step of a write), partitions
//! between the servers, restarts from durable records; judged against the
//! survivor's log after healing. Each planted bug must be caught.

use faultline_node::protocol::standby::simulation::run_seed;
use faultline_node::protocol::standby::Bugs;

#[test]
fn five_hundred_seeds_keep_every_acknowledged_write_once() {
    let (mut ops, mut ok, mut unknown, mut crashes, mut failovers, mut partitions) =
        (0, 0, 0, 0, 0, 0);
    for seed in 0..500 {
        match run_seed(seed, Bugs::default()) {
            Ok((o, _)) => {
                ops += o.ops;
                ok += o.ok;
                unknown += o.unknown;
                crashes += o.crashes;
                failovers += o.failovers;
                partitions += o.partitioned as usize;
            }
            Err(e) => panic!("{e}"),
        }
    }
    eprintln!(
        "500 seeds: {ops} operations, {ok} ok, {unknown} unknown; {crashes} crashes, {failovers} failovers, {partitions} partitions"
    );
    // The workload must exercise failover, not time out everywhere.
    assert!(ok > ops * 3 / 4, "only {ok} of {ops} operations succeeded");
    assert!(failovers > 300, "only {failovers} failovers in 500 seeds");
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
fn no_dedup_on_failover_is_caught() {
    let bugs = Bugs {
        no_dedup_on_failover: true,
        ..Bugs::default()
    };
    assert!(caught("no_dedup_on_failover", bugs, 100) > 0);
}

#[test]
fn takeover_on_missed_heartbeat_is_caught() {
    let bugs = Bugs {
        takeover_on_missed_heartbeat: true,
        ..Bugs::default()
    };
    assert!(caught("takeover_on_missed_heartbeat", bugs, 100) > 0);
}

#[test]
fn ack_before_standby_is_caught() {
    let bugs = Bugs {
        ack_before_standby: true,
        ..Bugs::default()
    };
    assert!(caught("ack_before_standby", bugs, 100) > 0);
}
