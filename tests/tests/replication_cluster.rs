//! Replication over real processes: the seed's own procedures (seed 002).
//! Active mode: a replica is killed, the others keep answering, it comes
//! back and takes the state. Passive mode: a backup is killed and brought
//! back, then the primary is killed (a backup is promoted) and returns as
//! a backup. Throughout, two clients add to one counter one at a time, so
//! every answer is known in advance: the counter never skips or repeats a
//! value, and at the end every replica of the last view holds it.

use faultline_e2e::TestCluster;
use faultline_node::api::{NodeState, OpReply, Outcome};
use faultline_node::protocol::replication::store::{Answer, Op};
use faultline_node::protocol::replication::{ReplicationState, Reply};
use std::time::{Duration, Instant};

fn extra(mode: &str) -> String {
    format!(
        "replication:\n  mode: {mode}\n  heartbeat_ms: 50\n  heartbeat_timeout_ms: 150\n  \
         lfd_timeout_ms: 200\n  checkpoint_ms: 300\n  retransmit_ms: 100\n  op_deadline_ms: 8000\n"
    )
}

fn cluster(name: &str, mode: &str) -> TestCluster {
    TestCluster::of_roles(
        name,
        "replication",
        &[
            ("replica", "r", 3),
            ("lfd", "l", 3),
            ("gfd", "g", 1),
            ("rm", "m", 1),
            ("client", "c", 2),
        ],
        &extra(mode),
    )
}

async fn state(c: &TestCluster, id: &str) -> Option<ReplicationState> {
    c.state_as::<ReplicationState>(id)
        .await
        .map(|s: NodeState<ReplicationState>| s.state)
}

/// The RM's view once `ok` holds of it, within 10 s.
async fn view_where(
    c: &TestCluster,
    what: &str,
    ok: impl Fn(&faultline_node::protocol::replication::view::View) -> bool,
) -> faultline_node::protocol::replication::view::View {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if let Some(v) = state(c, "m1").await.and_then(|s| s.view) {
            if ok(&v) {
                return v;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no view {what} within 10 s");
}

/// Two clients take turns adding 1 to counter `k`: each answer must be the
/// next value. Returns the last value.
async fn adds(c: &TestCluster, from: i64, n: usize) -> i64 {
    let mut expect = from;
    for i in 0..n {
        let client = if i % 2 == 0 { "c1" } else { "c2" };
        let op: OpReply<Reply> = c
            .op_as(
                client,
                &Op::Add {
                    key: "k".into(),
                    n: 1,
                },
            )
            .await;
        expect += 1;
        match &op.reply {
            Reply::Done {
                answer: Answer::Counter(v),
                ..
            } => assert_eq!(*v, expect, "{client}'s add {i} answered {op:?}"),
            _ => panic!("{client}'s add {i} was not answered: {op:?}"),
        }
        assert_eq!(op.outcome, Outcome::Ok);
    }
    expect
}

/// Every replica of the RM's view has the state and holds counter `k` at
/// `value`, within 10 s (a rejoined replica waits for its transfer).
async fn members_hold(c: &TestCluster, value: i64) {
    let t0 = Instant::now();
    let mut last = String::new();
    while t0.elapsed() < Duration::from_secs(10) {
        let v = view_where(c, "at all", |_| true).await;
        let mut all = true;
        for r in &v.members {
            let s = state(c, r).await;
            let held = s
                .as_ref()
                .filter(|s| s.has_state)
                .and_then(|s| s.store.as_ref())
                .and_then(|st| st.counters.get("k").copied());
            if held != Some(value) {
                all = false;
                last = format!("{r} holds {held:?} in view {}", v.number);
            }
        }
        if all && v.members.len() == 3 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the view's replicas do not all hold k = {value}: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_kill_a_replica_wait_bring_it_back() {
    let mut c = cluster("replication-active-procedure", "active");
    c.start_all();
    c.wait_ready(Duration::from_secs(20)).await;
    let v1 = view_where(&c, "of three", |v| v.members.len() == 3).await;
    // The seed's verbs first: a counter and a register.
    let (ok, text) = c.verb("c1", &["add", "k", "5"]);
    assert!(ok && text.starts_with("5 "), "{text}");
    let (ok, text) = c.verb("c2", &["put", "city", "Boston"]);
    assert!(ok, "{text}");
    let (ok, text) = c.verb("c1", &["get", "city"]);
    assert!(ok && text.starts_with("Boston "), "{text}");
    let mut k = adds(&c, 5, 10).await;

    c.kill("r2");
    let v2 = view_where(&c, "without r2", |v| {
        v.number > v1.number && !v.members.contains(&"r2".to_string())
    })
    .await;
    k = adds(&c, k, 20).await;
    // Wait a while (the seed's "wait"), writing all along.
    tokio::time::sleep(Duration::from_millis(500)).await;
    k = adds(&c, k, 10).await;

    c.start("r2");
    view_where(&c, "with r2 again", |v| {
        v.number > v2.number && v.members.contains(&"r2".to_string())
    })
    .await;
    k = adds(&c, k, 20).await;
    members_hold(&c, k).await;
    let (ok, text) = c.verb("c2", &["get", "city"]);
    assert!(ok && text.starts_with("Boston "), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_kill_a_backup_then_the_primary_which_returns_as_a_backup() {
    let mut c = cluster("replication-passive-procedure", "passive");
    c.start_all();
    c.wait_ready(Duration::from_secs(20)).await;
    let v1 = view_where(&c, "of three", |v| v.members.len() == 3).await;
    let primary = v1.primary.clone().expect("a passive view has a primary");
    let backup = v1
        .members
        .iter()
        .find(|m| **m != primary)
        .expect("a backup")
        .clone();
    let mut k = adds(&c, 0, 10).await;

    // A backup dies: the primary goes on with the other one.
    c.kill(&backup);
    let v2 = view_where(&c, "without the backup", |v| {
        v.number > v1.number && !v.members.contains(&backup)
    })
    .await;
    assert_eq!(v2.primary.as_deref(), Some(primary.as_str()));
    k = adds(&c, k, 20).await;
    // It comes back, takes the state by transfer, and is a backup again.
    c.start(&backup);
    let v3 = view_where(&c, "with the backup again", |v| {
        v.number > v2.number && v.members.contains(&backup)
    })
    .await;
    assert_eq!(v3.primary.as_deref(), Some(primary.as_str()));
    k = adds(&c, k, 10).await;
    members_hold(&c, k).await;

    // The primary dies: a backup is promoted, replays its log, serves; the
    // clients retry there with the same request numbers.
    c.kill(&primary);
    let v4 = view_where(&c, "with a new primary", |v| {
        v.number > v3.number && v.primary.is_some() && v.primary.as_deref() != Some(&primary)
    })
    .await;
    k = adds(&c, k, 20).await;
    // The old primary returns as a backup and takes the state.
    c.start(&primary);
    let v5 = view_where(&c, "with the old primary as a backup", |v| {
        v.number > v4.number && v.members.contains(&primary)
    })
    .await;
    assert_eq!(v5.primary, v4.primary, "the returning replica is a backup");
    k = adds(&c, k, 10).await;
    members_hold(&c, k).await;
    let old = state(&c, &primary).await.expect("the old primary answers");
    assert!(old.has_state, "the old primary took the state");
    assert_eq!(
        old.view.and_then(|v| v.primary),
        v4.primary,
        "the old primary knows it is a backup"
    );
}
