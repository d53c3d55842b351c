//! The judge on hand-built runs: a clean run is valid, and each kind of defect the judge
//! exists for turns exactly its check false (or, where data cannot decide, unknown).
//!
//! The base run: servers s1..s3, clients c1 and c2, two tokens (token 0 starts with c1, token
//! 1 with c2), 20 s long. A partition isolates s3 from 4 s to 8 s; c1 pays token 0 to c2 and
//! back, c2 reads; every node and the proxy are scraped every second.

use faultline_chaos::judge::{judge, JudgeOptions};
use faultline_chaos::record::scrapes::ScrapeLog;
use faultline_chaos::record::{
    FaultWindow, HistoryFile, NodeInfo, RunMeta, RunRecord, Sample, Scrape,
};
use faultline_chaos::results::{CheckOutcome, Results, Valid, EXPERIMENT_CHECKS};
use faultline_node::api::{HistoryOp, Outcome};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const T0: u64 = 1_700_000_000_000_000;

fn at(ms: u64) -> u64 {
    T0 + ms * 1000
}

fn op(client: &str, kind: &str, request: Value, from_ms: u64, to_ms: u64) -> HistoryOp {
    HistoryOp {
        id: from_ms,
        client: client.into(),
        kind: kind.into(),
        request,
        invoke_us: at(from_ms),
        complete_us: Some(at(to_ms)),
        outcome: Outcome::Ok,
        reply: None,
        note: None,
    }
}

/// A pay of `token` from `client` to `to` with the given outcome and reply.
fn pay(
    client: &str,
    token: u64,
    to: &str,
    outcome: Outcome,
    reply: Value,
    from_ms: u64,
    to_ms: u64,
) -> HistoryOp {
    HistoryOp {
        outcome,
        reply: Some(reply),
        ..op(
            client,
            "pay",
            json!({"op": "pay", "token": token, "to": to}),
            from_ms,
            to_ms,
        )
    }
}

fn paid(client: &str, token: u64, to: &str, version: u64, from_ms: u64, to_ms: u64) -> HistoryOp {
    let reply = json!({"result": "paid", "token": token,
        "tag": {"version": version, "writer": client, "nonce": from_ms}});
    pay(client, token, to, Outcome::Ok, reply, from_ms, to_ms)
}

fn pay_unknown(client: &str, token: u64, to: &str, from_ms: u64, to_ms: u64) -> HistoryOp {
    let reply = json!({"result": "unknown", "reason": "deadline passed after the write"});
    pay(client, token, to, Outcome::Unknown, reply, from_ms, to_ms)
}

fn pay_failed(client: &str, token: u64, to: &str, from_ms: u64, to_ms: u64) -> HistoryOp {
    let reply = json!({"result": "failed", "error": {"error": "no_quorum", "detail": "read"}});
    pay(client, token, to, Outcome::Failed, reply, from_ms, to_ms)
}

fn read(owner: &str, tokens: &[(u64, u64)], from_ms: u64, to_ms: u64) -> HistoryOp {
    HistoryOp {
        reply: Some(json!({"result": "tokens", "owner": owner, "tokens": tokens})),
        ..op(
            owner,
            "gettokens",
            json!({"op": "gettokens", "owner": owner}),
            from_ms,
            to_ms,
        )
    }
}

fn sample(name: &str, labels: &[(&str, &str)], value: f64) -> Sample {
    Sample {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value,
    }
}

fn scrape(ms: u64, target: &str, samples: Vec<Sample>) -> Scrape {
    Scrape {
        t_us: at(ms),
        target: target.into(),
        ok: true,
        samples,
    }
}

fn server_state(tokens: &[(u64, &str, u64, &str)]) -> Value {
    json!({
        "system": "tokens", "id": "s?", "role": "server", "ready": true, "epoch": 1,
        "servers": ["s1", "s2", "s3"], "serving": true, "frozen": false,
        "pending_ops": 0, "transforming": false,
        "tokens": tokens.iter().enumerate().map(|(i, (v, w, n, o))|
            json!({"token": i, "version": v, "writer": w, "nonce": n, "owner": o}))
            .collect::<Vec<_>>(),
    })
}

/// Node scrapes: token versions `versions(t_ms)` and a message counter rising by 50 a second.
fn node_scrapes(node: &str, versions: impl Fn(u64) -> [f64; 2]) -> Vec<Scrape> {
    (0..=20)
        .map(|s| {
            let ms = s * 1000;
            let v = versions(ms);
            scrape(
                ms,
                node,
                vec![
                    sample("faultline_token_version", &[("token", "0")], v[0]),
                    sample("faultline_token_version", &[("token", "1")], v[1]),
                    sample(
                        "faultline_messages_sent_total",
                        &[("peer", "s1"), ("kind", "read")],
                        50.0 * s as f64,
                    ),
                    sample("faultline_process_start_time_seconds", &[], 1.0),
                ],
            )
        })
        .collect()
}

/// Proxy scrapes of the cut direction s3->s1: `forwarded(t_ms)` packets so far, and drops.
fn proxy_scrapes(forwarded: impl Fn(u64) -> f64) -> Vec<Scrape> {
    let d = [("from", "s3"), ("to", "s1")];
    (0..=20)
        .map(|s| {
            let ms = s * 1000;
            let cut = (4_000..=8_000).contains(&ms);
            scrape(
                ms,
                "proxy",
                vec![
                    sample("faultline_proxy_forwarded_packets_total", &d, forwarded(ms)),
                    sample(
                        "faultline_proxy_dropped_packets_total",
                        &[("from", "s3"), ("to", "s1"), ("reason", "partition")],
                        if ms > 4_000 {
                            30.0 * (ms.min(8_000) - 4_000) as f64 / 1000.0
                        } else {
                            0.0
                        },
                    ),
                    sample(
                        "faultline_proxy_partitioned",
                        &d,
                        if cut { 1.0 } else { 0.0 },
                    ),
                ],
            )
        })
        .collect()
}

/// Packets forwarded on s3->s1 by `ms` when the partition works: none from 4 s to 8 s.
fn forwarded_ok(ms: u64) -> f64 {
    let live = ms.min(4_000) + ms.saturating_sub(8_000);
    20.0 * live as f64 / 1000.0
}

fn versions_ok(ms: u64) -> [f64; 2] {
    [
        if ms >= 10_000 {
            3.0
        } else if ms >= 1_000 {
            2.0
        } else {
            1.0
        },
        1.0,
    ]
}

fn clean_run() -> RunRecord {
    let ops = vec![
        paid("c1", 0, "c2", 2, 500, 520),
        read("c2", &[(0, 2), (1, 1)], 1_000, 1_010),
        // During the partition s1 and s2 still form a majority.
        read("c2", &[(0, 2), (1, 1)], 5_000, 5_020),
        pay_failed("c1", 0, "c1", 6_000, 6_500),
        paid("c2", 0, "c1", 3, 9_000, 9_030),
        read("c1", &[(0, 3)], 12_000, 12_010),
        read("c2", &[(1, 1)], 12_000, 12_010),
    ];
    let mut histories: BTreeMap<String, HistoryFile> = BTreeMap::new();
    for o in ops {
        histories.entry(o.client.clone()).or_default().ops.push(o);
    }
    let settled = server_state(&[(3, "c2", 9_000, "c1"), (1, "", 0, "c2")]);
    let states = ["s1", "s2", "s3"]
        .iter()
        .map(|s| (s.to_string(), settled.clone()))
        .collect();
    let mut scrapes = proxy_scrapes(forwarded_ok);
    for s in ["s1", "s2", "s3"] {
        scrapes.extend(node_scrapes(s, versions_ok));
    }
    RunRecord {
        meta: RunMeta {
            scenario: "judge-test".into(),
            system: "tokens".into(),
            seed: 42,
            start_us: T0,
            end_us: at(20_000),
            nodes: ["s1", "s2", "s3", "c1", "c2"]
                .iter()
                .map(|id| NodeInfo {
                    id: id.to_string(),
                    role: if id.starts_with('s') {
                        "server"
                    } else {
                        "client"
                    }
                    .into(),
                })
                .collect(),
            system_meta: json!({"tokens": 2, "initial_owners": ["c1", "c2"]}),
            liveness_bound_ms: 3_000,
            bugs: Vec::new(),
            interrupted_us: None,
            controller_died: false,
        },
        windows: vec![FaultWindow {
            id: 0,
            fault: "partition".into(),
            layer: "packet".into(),
            targets: vec!["s3".into()],
            start_us: at(4_000),
            end_us: Some(at(8_000)),
            in_model: true,
            detail: json!({"shape": {"shape": "isolate", "node": "s3"}, "cuts": [["s3", "s1"]]}),
        }],
        histories,
        states,
        scrapes,
    }
}

fn opts() -> JudgeOptions {
    JudgeOptions {
        threads: 1,
        ..JudgeOptions::default()
    }
}

fn check<'r>(r: &'r Results, name: &str) -> &'r CheckOutcome {
    r.checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check named {name}"))
}

/// Asserts that `name` is `valid` and every other check is true.
fn only(r: &Results, name: &str, valid: Valid) {
    for c in &r.checks {
        let want = if c.name == name { valid } else { Valid::True };
        assert_eq!(c.valid, want, "{}: {} {:#}", c.name, c.summary, c.evidence);
    }
    // A failed experiment check makes the run unknown, not invalid.
    let run = match valid {
        Valid::False if EXPERIMENT_CHECKS.contains(&name) => Valid::Unknown,
        v => v,
    };
    assert_eq!(r.valid, run);
}

#[test]
fn a_clean_run_is_valid() {
    let r = judge(&clean_run(), "/tmp/run", &opts());
    only(&r, "none", Valid::True);
    assert_eq!(r.checks.len(), 6);
    assert_eq!((r.scenario.as_str(), r.seed), ("judge-test", 42));
    assert_eq!(r.duration_s, 20.0);
    assert_eq!(r.windows.len(), 1);
    assert_eq!((r.stats.ops.ok, r.stats.ops.failed), (6, 1));
    assert_eq!(r.stats.messages_by_kind["read"], 3 * 1000);
    assert_eq!(r.timeline.points.len(), 20);
    assert_eq!(r.timeline.node_rates["s1"].len(), 20);
    // Availability: the whole run and the one window (a read ok, a pay failed).
    assert_eq!(r.stats.availability.len(), 2);
    assert_eq!(
        (r.stats.availability[1].ops, r.stats.availability[1].ok),
        (2, 1)
    );
    let m = &r.stats.faults[0];
    assert_eq!(m.target, "s3->s1");
    assert_eq!(m.measured["inside_window"]["counts"]["forwarded"], 0.0);
    let json = serde_json::to_string(&r).expect("results serialise");
    assert!(json.contains("\"valid\":true"));
}

#[test]
fn a_lost_acknowledged_pay_is_not_linearizable() {
    let mut run = clean_run();
    // After c2 paid token 0 back to c1 (v3, acknowledged), c2 still reads it as its own at v2.
    let h = run.histories.get_mut("c2").expect("c2 has a history");
    h.ops.push(read("c2", &[(0, 2), (1, 1)], 13_000, 13_010));
    let r = judge(&run, "/tmp/run", &opts());
    only(&r, "linearizable", Valid::False);
    let c = check(&r, "linearizable");
    assert!(c.summary.contains("token 0"), "{}", c.summary);
    let cx = &c.evidence["counterexample"];
    assert_eq!(cx["token"], 0);
    // Shrunk to the pay that made v3 and the read that missed it.
    let ops = cx["ops"].as_array().expect("ops listed");
    assert_eq!(ops.len(), 2, "{cx:#}");
    assert!(
        ops[0]["op"].as_str().is_some_and(|s| s.contains("paid v3")),
        "{cx:#}"
    );
    assert_eq!(ops[1]["call_ms"], 13_000.0);
    assert_eq!(cx["initial_state"], json!({"version": 2, "owner": "c2"}));
    let unplaced = cx["could_not_place"].as_array().expect("unplaced listed");
    assert!(unplaced.iter().any(|u| u["n"] == 1), "{cx:#}");
}

#[test]
fn an_unknown_pay_that_shows_up_later_is_fine() {
    let mut run = clean_run();
    // Token 1: c2's pay to c1 timed out. A read at 12 s still shows it with c2, a read at 14 s
    // shows it with c1: it took effect late, which an unknown outcome allows.
    run.histories
        .get_mut("c2")
        .expect("c2 has a history")
        .ops
        .push(pay_unknown("c2", 1, "c1", 10_000, 11_000));
    let c1 = run.histories.get_mut("c1").expect("c1 has a history");
    c1.ops.push(read("c1", &[(0, 3), (1, 2)], 14_000, 14_010));
    let state = server_state(&[(3, "c2", 9_000, "c1"), (2, "c2", 10_000, "c1")]);
    for s in ["s1", "s2", "s3"] {
        run.states.insert(s.into(), state.clone());
    }
    let r = judge(&run, "/tmp/run", &opts());
    only(&r, "none", Valid::True);
    assert_eq!(r.stats.ops.unknown, 1);
}

#[test]
fn one_version_with_two_owners_fails_the_state_check() {
    let mut run = clean_run();
    run.states.insert(
        "s3".into(),
        server_state(&[(3, "c2", 9_000, "c2"), (1, "", 0, "c2")]),
    );
    let r = judge(&run, "/tmp/run", &opts());
    only(&r, "quiescent-state", Valid::False);
    let c = check(&r, "quiescent-state");
    assert!(c.summary.contains("two owners"), "{}", c.summary);
    let p = &c.evidence["problems"][0];
    assert_eq!(p["token"], 0);
    assert_eq!(p["owners"]["c2"], json!(["s3"]));
}

#[test]
fn only_an_unknown_pay_may_linger_at_a_minority() {
    // s3 alone holds v4 of token 0, written by c1 to c2.
    let lingering = server_state(&[(4, "c1", 9_500, "c2"), (1, "", 0, "c2")]);
    let mut run = clean_run();
    run.states.insert("s3".into(), lingering.clone());
    let r = judge(&run, "/tmp/run", &opts());
    assert_eq!(
        check(&r, "quiescent-state").valid,
        Valid::False,
        "an acknowledged-looking value at a minority"
    );
    // If that write belongs to a pay that ended unknown, it may linger.
    let mut run = clean_run();
    run.states.insert("s3".into(), lingering);
    run.histories
        .entry("c1".into())
        .or_default()
        .ops
        .push(pay_unknown("c1", 0, "c2", 9_400, 9_900));
    let r = judge(&run, "/tmp/run", &opts());
    assert_eq!(
        check(&r, "quiescent-state").valid,
        Valid::True,
        "{:?}",
        check(&r, "quiescent-state")
    );
}

#[test]
fn a_version_going_down_fails_monotonicity() {
    let mut run = clean_run();
    run.scrapes.retain(|s| s.target != "s2");
    run.scrapes.extend(node_scrapes("s2", |ms| {
        let v = versions_ok(ms);
        if ms == 15_000 {
            [v[0] - 1.0, v[1]]
        } else {
            v
        }
    }));
    let r = judge(&run, "/tmp/run", &opts());
    only(&r, "versions-monotonic", Valid::False);
    let e = &check(&r, "versions-monotonic").evidence;
    assert_eq!(e["node"], "s2");
    assert_eq!(e["token"], "0");
    assert_eq!(
        (e["before"].as_f64(), e["after"].as_f64()),
        (Some(3.0), Some(2.0))
    );
    assert_eq!(e["t_ms"], 15_000.0);
}

#[test]
fn nothing_succeeding_after_an_in_model_heal_fails_liveness() {
    let mut run = clean_run();
    for h in run.histories.values_mut() {
        h.ops.retain(|o| o.invoke_us < at(8_000));
    }
    let c1 = run.histories.get_mut("c1").expect("c1 has a history");
    for s in [8_500, 9_500, 10_500] {
        c1.ops.push(pay_failed("c1", 0, "c2", s, s + 900));
    }
    // The final state still matches: pays that failed changed nothing.
    let settled = server_state(&[(2, "c1", 500, "c2"), (1, "", 0, "c2")]);
    for s in ["s1", "s2", "s3"] {
        run.states.insert(s.into(), settled.clone());
    }
    let r = judge(&run, "/tmp/run", &opts());
    only(&r, "liveness", Valid::False);
    let e = &check(&r, "liveness").evidence["windows"][0];
    assert_eq!(e["window"], 0);
    assert_eq!(e["first_ok_after_heal"], Value::Null);
    assert_eq!(e["invoked_within_bound"], 3);
}

#[test]
fn a_partition_that_did_not_cut_fails_faults_applied() {
    let mut run = clean_run();
    run.scrapes.retain(|s| s.target != "proxy");
    run.scrapes
        .extend(proxy_scrapes(|ms| 20.0 * ms as f64 / 1000.0));
    let r = judge(&run, "/tmp/run", &opts());
    only(&r, "faults-applied", Valid::False);
    let c = check(&r, "faults-applied");
    assert!(c.summary.contains("s3->s1 forwarded"), "{}", c.summary);
    assert_eq!(
        r.stats.faults[0].measured["inside_window"]["counts"]["forwarded"],
        40.0
    );
}

#[test]
fn a_run_directory_judges_like_the_record() {
    let run = clean_run();
    let dir = std::env::temp_dir().join(format!("faultline-judge-{}", std::process::id()));
    run.save(&dir).expect("record saved");
    // As the runner writes them: the compact log.
    let mut log = ScrapeLog::create(&dir, false).expect("scrapes file");
    for s in &run.scrapes {
        log.append(s).expect("scrape appended");
    }
    log.finish().expect("scrapes finished");
    let loaded = RunRecord::load(&dir).expect("record loads");
    let _ = std::fs::remove_dir_all(&dir);
    let a = judge(&run, "dir", &opts());
    let b = judge(&loaded, "dir", &opts());
    let verdicts = |r: &Results| r.checks.iter().map(|c| c.valid).collect::<Vec<_>>();
    assert_eq!(verdicts(&a), verdicts(&b));
    assert_eq!(a.stats, b.stats);
}
