use faultline_chaos::check::generate::{token_history, TokenWorkload};
use faultline_chaos::check::porcupine::{load_kv, load_jepsen_etcd};
use faultline_chaos::check::*;
use std::time::{Duration, Instant};

#[test]
fn scratch() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/porcupine");
    for f in ["c10-ok.txt", "c50-ok.txt", "c50-bad.txt"] {
        let h = load_kv(&dir.join("kv").join(f)).unwrap();
        let t = Instant::now();
        let r = check(&KeyValue, &h, &CheckOptions::default()).unwrap();
        println!("{f}: {:?} steps {} {:?}", r.verdict, r.steps, t.elapsed());
    }
    let (mut steps, mut t) = (0, Duration::ZERO);
    for n in 0..=102 {
        let h = load_jepsen_etcd(&dir.join("jepsen").join(format!("etcd_{n:03}.log"))).unwrap();
        let t0 = Instant::now();
        let r = check(&Register, &h, &CheckOptions::default()).unwrap();
        t += t0.elapsed(); steps += r.steps;
    }
    println!("etcd: steps {steps} {t:?}");
    for (tokens, clients, unk) in [(8u64, 16u64, 0.02f64), (4, 16, 0.02), (60, 6, 0.01)] {
        for seed in 0..2u64 {
            let w = TokenWorkload { tokens, clients, ops: 100_000, unknown_rate: unk, ..TokenWorkload::default() };
            let (model, h) = token_history(&w, seed);
            let opts = CheckOptions { time_limit: Some(Duration::from_secs(10)), cache_limit: Some(20_000_000), ..Default::default() };
            let t = Instant::now();
            let r = check(&model, &h, &opts).unwrap();
            println!("tokens {tokens} clients {clients} unk {unk} seed {seed}: {:?} steps {} limit {:?} {:?}", r.verdict, r.steps, r.limit_hit, t.elapsed());
        }
    }
}
