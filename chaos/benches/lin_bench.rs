//! Linearizability checker benchmark: `cargo bench -p faultline-chaos --bench lin_bench`.
//!
//! Prints (1) the time to check every public Porcupine history next to the Go Porcupine times
//! measured on this machine (read from tests/data/porcupine/README.md), and (2) events checked
//! per second on generated 100,000-operation token histories. Times are medians of repeated
//! runs, parsing and generation excluded, single-threaded.

use faultline_chaos::check::porcupine::{load_jepsen_etcd, load_kv};
use faultline_chaos::check::{
    check, check_parallel, CheckOptions, CheckResult, KeyValue, KvInput, KvOutput, KvValue, Model,
    Operation, Register, Verdict,
};
use faultline_chaos::systems::tokens::generate::{token_history, TokenWorkload};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/porcupine")
}

/// Go medians in ms (GOMAXPROCS=2), keyed by (file, model) with model "etcd", "kv" or
/// "kv-nopart".
fn go_times() -> HashMap<(String, String), f64> {
    let readme = std::fs::read_to_string(data_dir().join("README.md")).unwrap_or_default();
    let mut out = HashMap::new();
    for line in readme.lines() {
        let c: Vec<&str> = line.split('|').map(str::trim).collect();
        if c.len() < 12 {
            continue;
        }
        if c[1].starts_with("etcd_") {
            if let Ok(ms) = c[9].parse::<f64>() {
                out.insert((c[1].to_string(), "etcd".to_string()), ms);
            }
        } else if c[1].starts_with('c') && c[1].ends_with(".txt") {
            if let Ok(ms) = c[9].parse::<f64>() {
                out.insert((c[1].to_string(), c[8].to_string()), ms);
            }
        }
    }
    out
}

/// Time of the first run (cold: what checking a history once costs, page faults included)
/// and the median of repeated runs (at least 5 and 0.2 s, at most 1000 runs).
fn measure(mut f: impl FnMut() -> CheckResult) -> (Duration, Duration, CheckResult) {
    let t = Instant::now();
    let first = f();
    let cold = t.elapsed();
    let mut times = Vec::new();
    let started = Instant::now();
    while times.len() < 1000 && (times.len() < 5 || started.elapsed() < Duration::from_millis(200))
    {
        let t = Instant::now();
        let r = f();
        times.push(t.elapsed());
        assert_eq!(r.verdict, first.verdict, "verdict changed between runs");
    }
    times.sort();
    (cold, times[times.len() / 2], first)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn run<M: Model>(model: &M, h: &[Operation<M::Input, M::Output>]) -> CheckResult {
    match check(model, h, &CheckOptions::default()) {
        Ok(r) => r,
        Err(e) => panic!("check failed: {e}"),
    }
}

/// Porcupine's `kvNoPartitionModel`: all keys in one state, no partitioning.
struct KvWhole;

impl Model for KvWhole {
    type State = BTreeMap<String, KvValue>;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> Self::State {
        BTreeMap::new()
    }

    fn step(
        &self,
        state: &Self::State,
        input: &KvInput,
        output: Option<&KvOutput>,
    ) -> Option<Self::State> {
        let empty = KvValue::default();
        let current = state.get(&input.key).unwrap_or(&empty);
        let next = KeyValue.step(current, input, output)?;
        if next == *current {
            return Some(state.clone());
        }
        let mut state = state.clone();
        state.insert(input.key.clone(), next);
        Some(state)
    }

    fn is_read_only(&self, input: &KvInput, output: Option<&KvOutput>) -> bool {
        KeyValue.is_read_only(input, output)
    }
}

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Valid => "linearizable",
        Verdict::Invalid => "NOT linearizable",
        Verdict::Unknown => "unknown",
    }
}

fn main() {
    // `cargo bench` passes `--bench`; there are no filters, everything runs.
    let go = go_times();
    println!("Times in ms. first = first run in this process; median = median of repeated runs;");
    println!(
        "2 thr = median with check_parallel on 2 threads; Go = Porcupine median (GOMAXPROCS=2)"
    );
    println!("from tests/data/porcupine/README.md; speedup = Go / median.\n");
    println!("== Porcupine etcd histories (Register model, one partition each) ==");
    println!(
        "{:<14} {:>4} {:>17} {:>9} {:>9} {:>9} {:>8}",
        "file", "ops", "verdict", "first", "median", "Go", "speedup"
    );
    let (mut first_total, mut median_total, mut go_total) = (0.0, 0.0, 0.0);
    for n in 0..=102u32 {
        let name = format!("etcd_{n:03}.log");
        let h = match load_jepsen_etcd(&data_dir().join("jepsen").join(&name)) {
            Ok(h) => h,
            Err(e) => panic!("{name}: {e}"),
        };
        let (cold, t, r) = measure(|| run(&Register, &h));
        let go_ms = go.get(&(name.clone(), "etcd".to_string())).copied();
        if let Some(g) = go_ms {
            first_total += ms(cold);
            median_total += ms(t);
            go_total += g;
        }
        println!(
            "{:<14} {:>4} {:>17} {:>9.4} {:>9.4} {:>9} {:>8}",
            name,
            h.len(),
            verdict(r.verdict),
            ms(cold),
            ms(t),
            go_ms.map_or("-".to_string(), |g| format!("{g:.3}")),
            go_ms.map_or("-".to_string(), |g| format!("{:.0}x", g / ms(t))),
        );
    }
    println!(
        "etcd total (102 files): first runs {first_total:.2} ms, medians {median_total:.2} ms, \
         Go {go_total:.1} ms ({:.0}x on medians, {:.0}x on first runs)\n",
        go_total / median_total,
        go_total / first_total
    );

    println!("== Porcupine kv histories ==");
    println!(
        "{:<12} {:>9} {:>5} {:>17} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "file", "model", "ops", "verdict", "first", "median", "2 thr", "Go", "speedup"
    );
    let mut totals: BTreeMap<&str, [f64; 4]> = BTreeMap::new();
    for model in ["kv", "kv-nopart"] {
        for c in ["c01", "c10", "c50"] {
            for kind in ["ok", "bad"] {
                let name = format!("{c}-{kind}.txt");
                let h = match load_kv(&data_dir().join("kv").join(&name)) {
                    Ok(h) => h,
                    Err(e) => panic!("{name}: {e}"),
                };
                let (cold, t, two, r) = if model == "kv" {
                    let (cold, t, r) = measure(|| run(&KeyValue, &h));
                    let (_, two, _) = measure(|| {
                        match check_parallel(&KeyValue, &h, &CheckOptions::default(), 2) {
                            Ok(r) => r,
                            Err(e) => panic!("{name}: {e}"),
                        }
                    });
                    (cold, t, Some(two), r)
                } else if c == "c50" {
                    // Porcupine gave up after 60 s here; same bound, once, with a cache
                    // bound so that memory stays within a few GB.
                    let opts = CheckOptions {
                        time_limit: Some(Duration::from_secs(60)),
                        cache_limit: Some(25_000_000),
                        ..CheckOptions::default()
                    };
                    let t = Instant::now();
                    let r = match check(&KvWhole, &h, &opts) {
                        Ok(r) => r,
                        Err(e) => panic!("{name}: {e}"),
                    };
                    (t.elapsed(), t.elapsed(), None, r)
                } else {
                    let (cold, t, r) = measure(|| run(&KvWhole, &h));
                    (cold, t, None, r)
                };
                let go_ms = go.get(&(name.clone(), model.to_string())).copied();
                if let Some(g) = go_ms {
                    let total = totals.entry(model).or_default();
                    total[0] += ms(cold);
                    total[1] += ms(t);
                    total[2] += two.map_or(0.0, ms);
                    total[3] += g;
                }
                let shown = match r.verdict {
                    Verdict::Unknown => format!("unknown ({:?})", r.limit_hit),
                    v => verdict(v).to_string(),
                };
                println!(
                    "{:<12} {:>9} {:>5} {:>17} {:>9.3} {:>9.3} {:>9} {:>9} {:>8}",
                    name,
                    model,
                    h.len(),
                    shown,
                    ms(cold),
                    ms(t),
                    two.map_or("-".to_string(), |d| format!("{:.3}", ms(d))),
                    go_ms.map_or("Unk@60s".to_string(), |g| format!("{g:.3}")),
                    go_ms.map_or("-".to_string(), |g| format!("{:.0}x", g / ms(t))),
                );
            }
        }
    }
    for (model, [first, median, two, go]) in totals {
        let two = if two > 0.0 {
            format!(", 2 threads {two:.2} ms ({:.0}x)", go / two)
        } else {
            String::new()
        };
        println!(
            "{model} total (files with a Go time): first runs {first:.2} ms, medians {median:.2} \
             ms ({:.0}x){two}, Go {go:.1} ms",
            go / median
        );
    }

    println!("\n== Generated 100,000-operation token histories (Token model, one partition per token) ==");
    println!("events = calls + returns in the history (an unknown outcome has no return, or one");
    println!("that only says the client gave up). Rates use the median time.");
    println!(
        "{:<46} {:>7} {:>8} {:>8} {:>8} {:>8} {:>11} {:>11} {:>9}",
        "workload",
        "unknown",
        "events",
        "first",
        "median",
        "2 thr",
        "events/s",
        "2thr ev/s",
        "steps"
    );
    let workload = |tokens, clients, unknown_rate| TokenWorkload {
        tokens,
        clients,
        ops: 100_000,
        unknown_rate,
        ..TokenWorkload::default()
    };
    let workloads = [
        ("60 tokens, 6 clients, 1% unknown", workload(60, 6, 0.01)),
        (
            "1000 tokens, 16 clients, 2% unknown",
            workload(1000, 16, 0.02),
        ),
        (
            "8 tokens, 16 clients, 2% unknown (contended)",
            workload(8, 16, 0.02),
        ),
        (
            "4 tokens, 16 clients, 5% unknown (contended)",
            workload(4, 16, 0.05),
        ),
    ];
    for (label, w) in workloads {
        let (model, h) = token_history(&w, 42);
        let unknown = h.iter().filter(|o| !o.output.is_known()).count();
        let events = h.len() + h.iter().filter(|o| o.ret.is_some()).count();
        let (cold, t, r) = measure(|| run(&model, &h));
        let (_, two, r2) =
            measure(
                || match check_parallel(&model, &h, &CheckOptions::default(), 2) {
                    Ok(r) => r,
                    Err(e) => panic!("{label}: {e}"),
                },
            );
        assert_eq!(
            r.verdict,
            Verdict::Valid,
            "{label}: generated history must be valid"
        );
        assert_eq!(
            r2.verdict,
            Verdict::Valid,
            "{label}: generated history must be valid"
        );
        println!(
            "{:<46} {:>7} {:>8} {:>8.2} {:>8.2} {:>8.2} {:>11.0} {:>11.0} {:>9}",
            label,
            unknown,
            events,
            ms(cold),
            ms(t),
            ms(two),
            events as f64 / t.as_secs_f64(),
            events as f64 / two.as_secs_f64(),
            r.steps,
        );
    }
}
