use faultline_chaos::check::generate::{token_history, TokenWorkload};
use faultline_chaos::check::{Outcome, TokenOp, TokenOutput};
use faultline_chaos::judge::{judge, JudgeOptions};
use faultline_chaos::record::*;
use faultline_node::runtime::history::HistoryOp;
use serde_json::json;
use std::collections::BTreeMap;

#[test]
fn scratch_perf() {
    let (_m, ops) = token_history(&TokenWorkload { ops: 50_000, unknown_rate: 0.02, ..Default::default() }, 3);
    let t0 = 1_000_000u64;
    let mut hist: BTreeMap<String, HistoryFile> = BTreeMap::new();
    let mut planted = false;
    for (i, o) in ops.iter().enumerate() {
        let (client, kind, request, outcome, reply) = match &o.input.op {
            TokenOp::Pay { from, to } => {
                let (oc, rep) = match &o.output {
                    Outcome::Ok(TokenOutput::Paid { version }) => ("ok", json!({"result":"paid","token":o.input.token,"tag":{"version":version,"writer":from,"nonce":i}})),
                    Outcome::Ok(TokenOutput::NotOwned) => ("failed", json!({"result":"failed","error":{"error":"not_owned","detail":o.input.token}})),
                    _ => ("unknown", json!({"result":"unknown","reason":"x"})),
                };
                (from.clone(), "pay", json!({"op":"pay","token":o.input.token,"to":to}), oc, rep)
            }
            TokenOp::Read => match &o.output {
                Outcome::Ok(TokenOutput::State(s)) => {
                    let mut v = s.version;
                    if !planted && i > 40_000 && o.input.token == 7 { v -= 1; planted = true; }
                    (s.owner.clone(), "gettokens", json!({"op":"gettokens","owner":s.owner}), "ok", json!({"result":"tokens","owner":s.owner,"tokens":[[o.input.token, v]]}))
                }
                _ => continue,
            },
        };
        hist.entry(client.clone()).or_default().ops.push(HistoryOp {
            id: i as u64, client, kind: kind.into(), request, invoke_us: t0 + o.call * 100,
            complete_us: o.ret.map(|r| t0 + r * 100), outcome: outcome.into(), reply: Some(reply),
        });
    }
    let end = t0 + ops.iter().filter_map(|o| o.ret).max().unwrap() * 100;
    let mut scrapes = Vec::new();
    let n_scr = 600u64;
    for s in 0..n_scr {
        for node in ["s1","s2","s3","s4","s5","1","2"] {
            let mut samples = Vec::new();
            for t in 0..60 { samples.push(Sample{name:"faultline_token_version".into(), labels:[("token".to_string(), t.to_string())].into(), value: s as f64}); }
            for p in ["s1","s2","s3","s4","s5","1","2"] { for k in ["read","read_ok","write","write_ok","refused","prepare","promise","accept","accepted","nack","install","installed","news","fetch","gift"] {
                samples.push(Sample{name:"faultline_messages_sent_total".into(), labels:[("peer".to_string(), p.to_string()),("kind".to_string(), k.to_string())].into(), value: (s*3) as f64});
                samples.push(Sample{name:"faultline_messages_received_total".into(), labels:[("peer".to_string(), p.to_string()),("kind".to_string(), k.to_string())].into(), value: (s*3) as f64});
            }}
            scrapes.push(Scrape{t_us: t0 + s * (end - t0) / n_scr, target: node.into(), ok: true, samples});
        }
    }
    let rec = RunRecord { meta: RunMeta { scenario: "x".into(), system: "tokens".into(), seed: 1, start_us: t0, end_us: end,
        nodes: ["s1","s2","s3","s4","s5","1","2","3","4","5","6"].iter().map(|i| NodeInfo{id: i.to_string(), role: "x".into()}).collect(),
        tokens: 60, initial_owners: (0..60).map(|i| ((i % 6) + 1).to_string()).collect(), liveness_bound_ms: 1000, bugs: vec![] },
        windows: vec![], histories: hist, states: BTreeMap::new(), scrapes };
    let started = std::time::Instant::now();
    let r = judge(&rec, "x", &JudgeOptions::default());
    eprintln!("judged in {:?}", started.elapsed());
    for c in &r.checks { eprintln!("{}: {:?} {}", c.name, c.valid, c.summary); }
    for o in r.checks[0].evidence["counterexample"]["ops"].as_array().unwrap() { eprintln!("{} {} {} {}", o["n"], o["call_ms"], o["client"], o["op"]); }
    for o in r.checks[0].evidence["counterexample"]["could_not_place"].as_array().unwrap() { eprintln!("unplaced {} {} {} blocking={} fits={}", o["n"], o["call_ms"], o["op"], o["blocking"], o["fits_state_reached"]); }
}
