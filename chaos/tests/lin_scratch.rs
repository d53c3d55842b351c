use faultline_chaos::check::generate::{token_history, TokenWorkload};
use faultline_chaos::check::*;
use std::time::{Duration, Instant};

#[test]
fn scratch() {
    for (tokens, clients, unk) in [(8u64, 16u64, 0.02f64), (4, 16, 0.02), (8, 16, 0.05), (60, 6, 0.01)] {
        for seed in 0..4u64 {
            let w = TokenWorkload { tokens, clients, ops: 100_000, unknown_rate: unk, ..TokenWorkload::default() };
            let (model, h) = token_history(&w, seed);
            let opts = CheckOptions { time_limit: Some(Duration::from_secs(10)), cache_limit: Some(20_000_000), ..Default::default() };
            let t = Instant::now();
            let r = check(&model, &h, &opts).unwrap();
            println!("tokens {tokens} clients {clients} unk {unk} seed {seed}: {:?} steps {} limit {:?} {:?}", r.verdict, r.steps, r.limit_hit, t.elapsed());
        }
    }
}
