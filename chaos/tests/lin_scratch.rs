use faultline_chaos::check::generate::{token_history, TokenWorkload};
use faultline_chaos::check::porcupine::load_kv;
use faultline_chaos::check::*;
use std::time::Instant;

#[test]
fn scratch() {
    for f in [] as [&str; 0] {
        let h = load_kv(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/porcupine/kv").join(f)).unwrap();
        let t = Instant::now();
        let r = check(&KeyValue, &h, &CheckOptions::default()).unwrap();
        println!("{f}: {:?} steps {} {:?}", r.verdict, r.steps, t.elapsed());
        let parts = KeyValue.partition(&h);
        for p in parts {
            let sub: Vec<_> = p.ops.iter().map(|&i| h[i].clone()).collect();
            let t = Instant::now();
            let r = check(&KeyValue, &sub, &CheckOptions::default()).unwrap();
            println!("   key {} ops {} {:?} steps {} {:?}", p.key, sub.len(), r.verdict, r.steps, t.elapsed());
        }
    }
    let w = TokenWorkload { tokens: 8, clients: 16, ops: 50000, unknown_rate: 0.02, ..TokenWorkload::default() };
    let (model, h) = token_history(&w, 42);
    let opts = CheckOptions { step_limit: Some(5_000_000), ..Default::default() };
    for tok in 0..8u64 {
        let p: Vec<_> = h.iter().filter(|o| o.input.token == tok).cloned().collect();
        let t = Instant::now();
        let r = check(&model, &p, &opts).unwrap();
        println!("token {tok}: {} ops {:?} steps {} {:?}", p.len(), r.verdict, r.steps, t.elapsed());
    }
}
