//! The simulator speaks the runtime's language: links keep or break send
//! order as the system declares, and message fault rules given as the JSON
//! body of `PUT /faults` mean the same as on a running node. A tiny core
//! that numbers what it sends makes order and loss visible.

use faultline_node::api::PutFaults;
use faultline_node::protocol::{Core, MessageKind, NodeId, Outbox, ReqId, Time};
use faultline_node::sim::{NetConfig, Sim};
use faultline_node::system::Channels;
use rand::RngCore;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Msg {
    Num(u64),
}

impl MessageKind for Msg {
    const KINDS: &'static [&'static str] = &["num"];
    fn kind(&self) -> &'static str {
        "num"
    }
}

/// On a request, sends `n` numbered messages to `peer`; records what it gets.
struct Counter {
    id: NodeId,
    peer: NodeId,
    next: u64,
    got: Vec<u64>,
    /// Ticks every 10 ms when set, counting them.
    ticking: bool,
    next_tick: Time,
    ticks: u64,
}

impl Core for Counter {
    type Msg = Msg;
    type Request = u64;
    type Reply = ();
    type Record = ();
    type State = Vec<u64>;

    fn id(&self) -> &NodeId {
        &self.id
    }
    fn on_message(
        &mut self,
        _: Time,
        _: &NodeId,
        Msg::Num(n): Msg,
        _: &mut dyn RngCore,
        _: &mut Outbox<Self>,
    ) {
        self.got.push(n);
    }
    fn on_request(
        &mut self,
        _: Time,
        req: ReqId,
        n: u64,
        _: &mut dyn RngCore,
        out: &mut Outbox<Self>,
    ) {
        for _ in 0..n {
            out.sends.push((self.peer.clone(), Msg::Num(self.next)));
            self.next += 1;
        }
        out.replies.push((req, ()));
    }
    fn on_tick(&mut self, now: Time, _: &mut dyn RngCore, _: &mut Outbox<Self>) {
        self.ticks += 1;
        self.next_tick = now + 10_000;
    }
    fn next_tick(&self) -> Option<Time> {
        self.ticking.then_some(self.next_tick)
    }
    fn recover(&mut self, _: Vec<()>) {}
    fn compact(&self) -> Vec<()> {
        Vec::new()
    }
    fn state(&self) -> Vec<u64> {
        self.got.clone()
    }
}

fn pair() -> Vec<Counter> {
    ["a", "b"]
        .iter()
        .map(|id| Counter {
            id: id.to_string(),
            peer: if *id == "a" { "b" } else { "a" }.into(),
            next: 0,
            got: Vec::new(),
            ticking: false,
            next_tick: 0,
            ticks: 0,
        })
        .collect()
}

/// Delays from 0.05 to 20 ms: without FIFO, plenty of overtaking.
fn wide() -> NetConfig {
    NetConfig {
        drop: 0.0,
        duplicate: 0.0,
        delay_min_us: 50,
        delay_max_us: 20_000,
    }
}

/// `a` sends 200 numbered messages in four bursts; what `b` received.
fn run(seed: u64, channels: Channels, faults: Option<&PutFaults>) -> Vec<u64> {
    let mut sim = Sim::with_channels(seed, pair(), wide(), channels);
    if let Some(f) = faults {
        sim.put_faults_all(f);
    }
    for burst in 0..4 {
        sim.invoke_at(burst * 1_000, "a", 50);
    }
    sim.run_until(2_000_000, 100_000, &mut |_, _| Ok(()))
        .expect("no invariant to break");
    sim.node("b").map(|b| b.got.clone()).unwrap_or_default()
}

fn inversions(got: &[u64]) -> usize {
    got.windows(2).filter(|w| w[0] > w[1]).count()
}

#[test]
fn fifo_links_keep_send_order_and_non_fifo_links_do_not() {
    for seed in 0..20 {
        let got = run(seed, Channels::Fifo, None);
        assert_eq!(got, (0..200).collect::<Vec<_>>(), "seed {seed}");
    }
    let reordered = (0..20)
        .filter(|s| inversions(&run(*s, Channels::NonFifo, None)) > 0)
        .count();
    assert!(
        reordered >= 15,
        "only {reordered} of 20 non-FIFO runs reordered"
    );
}

#[test]
fn admin_api_fault_rules_mean_the_same_in_the_simulator() {
    // The body an operator would PUT to /faults.
    let drop_half: PutFaults = serde_json::from_str(
        r#"{"rules": [{"id": "lossy", "to": "b", "kind": "num", "drop": 0.5}], "lease_ms": 5000}"#,
    )
    .expect("the admin API's rule format");
    let got = run(7, Channels::Fifo, Some(&drop_half));
    assert!(
        (60..=140).contains(&got.len()),
        "about half of 200 should arrive, got {}",
        got.len()
    );
    // What is not dropped still arrives in order on a FIFO link.
    assert_eq!(inversions(&got), 0, "{got:?}");

    let cut: PutFaults =
        serde_json::from_str(r#"{"rules": [{"to": "b", "cut": true}]}"#).expect("rules");
    assert!(run(7, Channels::Fifo, Some(&cut)).is_empty());

    // A rule for another message kind or another peer matches nothing.
    let elsewhere: PutFaults = serde_json::from_str(
        r#"{"rules": [{"to": "a", "drop": 1.0}, {"kind": "other", "drop": 1.0}]}"#,
    )
    .expect("rules");
    assert_eq!(run(7, Channels::Fifo, Some(&elsewhere)).len(), 200);

    // Duplication delivers some messages twice; reordering breaks FIFO order
    // as the runtime's fault layer does above the transport.
    let dup: PutFaults = serde_json::from_str(r#"{"rules": [{"duplicate": 0.5}]}"#).expect("rules");
    let got = run(7, Channels::Fifo, Some(&dup));
    assert!(got.len() > 230, "duplicates: {}", got.len());
    let shuffle: PutFaults =
        serde_json::from_str(r#"{"rules": [{"reorder": {"window": 8, "max_hold_ms": 5}}]}"#)
            .expect("rules");
    let got = run(7, Channels::Fifo, Some(&shuffle));
    assert_eq!(got.len(), 200, "reorder loses nothing");
    assert!(inversions(&got) > 0, "a reorder rule reorders");

    // The same seed and rules give the same run.
    assert_eq!(
        run(11, Channels::NonFifo, Some(&drop_half)),
        run(11, Channels::NonFifo, Some(&drop_half))
    );
}

#[test]
fn a_paused_node_receives_everything_in_order_once_resumed() {
    let mut sim = Sim::with_channels(3, pair(), wide(), Channels::Fifo);
    sim.pause("b");
    sim.invoke_at(0, "a", 50);
    sim.run_until(500_000, 100_000, &mut |_, _| Ok(()))
        .expect("runs");
    assert!(
        sim.node("b").is_some_and(|b| b.got.is_empty()),
        "a paused node handles nothing"
    );
    sim.resume("b");
    sim.run_until(1_000_000, 100_000, &mut |_, _| Ok(()))
        .expect("runs");
    assert_eq!(
        sim.node("b").map(|b| b.got.clone()),
        Some((0..50).collect::<Vec<_>>())
    );
}

#[test]
fn a_paused_node_ticks_again_once_resumed_and_a_crash_loses_what_its_layer_held() {
    let mut nodes = pair();
    nodes[1].ticking = true;
    let mut sim = Sim::with_channels(5, nodes, wide(), Channels::Fifo);
    sim.run_until(100_000, 100_000, &mut |_, _| Ok(()))
        .expect("runs");
    let before = sim.node("b").map_or(0, |b| b.ticks);
    assert!(before >= 9, "ticks every 10 ms: {before}");
    sim.pause("b");
    sim.run_until(300_000, 100_000, &mut |_, _| Ok(()))
        .expect("runs");
    assert_eq!(
        sim.node("b").map_or(0, |b| b.ticks),
        before,
        "a paused node does not tick"
    );
    sim.resume("b");
    sim.run_until(400_000, 100_000, &mut |_, _| Ok(()))
        .expect("runs");
    let after = sim.node("b").map_or(0, |b| b.ticks);
    assert!(after >= before + 9, "ticks resume: {before} -> {after}");

    // Sends that a's fault layer delays die with a.
    let slow: PutFaults = serde_json::from_str(r#"{"rules": [{"delay_ms": 50}]}"#).expect("rules");
    sim.put_faults("a", &slow);
    let at = sim.now;
    sim.invoke_at(at, "a", 10);
    sim.run_until(at + 10_000, 100_000, &mut |_, _| Ok(()))
        .expect("runs");
    sim.crash("a");
    sim.run_until(at + 200_000, 100_000, &mut |_, _| Ok(()))
        .expect("runs");
    assert!(
        sim.node("b").is_some_and(|b| b.got.is_empty()),
        "a crashed node's delayed sends left"
    );
}
