//! Linearizability checker benchmark: `cargo bench -p faultline-chaos --bench lin_bench`.
//!
//! Prints (1) the time to check every public Porcupine history next to the Go Porcupine times
//! measured on this machine (read from tests/data/porcupine/README.md), and (2) events checked
//! per second on generated 100,000-operation token histories. Times are medians of repeated
//! runs, parsing and generation excluded, single-threaded.

use faultline_chaos::check::generate::{token_history, TokenWorkload};
use faultline_chaos::check::porcupine::{load_jepsen_etcd, load_kv};
use faultline_chaos::check::{
    check, CheckOptions, CheckResult, KeyValue, KvInput, KvOutput, KvValue, Model, Operation,
    Register, Verdict,
};
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

/// Median time of `f`, repeated until at least 5 runs and 0.2 s (at most 1000 runs).
fn measure(mut f: impl FnMut() -> CheckResult) -> (Duration, CheckResult) {
    let first = f();
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
    (times[times.len() / 2], first)
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
    // `cargo bench` passes `--bench`; a name filter is not supported, everything runs.
    let go = go_times();
    println!("== Porcupine etcd histories (Register model) ==");
    println!(
        "{:<14} {:>4} {:>17} {:>10} {:>10} {:>9}",
        "file", "ops", "verdict", "ours ms", "Go ms", "speedup"
    );
    let (mut ours_total, mut go_total) = (0.0, 0.0);
    for n in 0..=102u32 {
        let name = format!("etcd_{n:03}.log");
        let h = match load_jepsen_etcd(&data_dir().join("jepsen").join(&name)) {
            Ok(h) => h,
            Err(e) => panic!("{name}: {e}"),
        };
        let (t, r) = measure(|| run(&Register, &h));
        let go_ms = go.get(&(name.clone(), "etcd".to_string())).copied();
        ours_total += ms(t);
        go_total += go_ms.unwrap_or(0.0);
        println!(
            "{:<14} {:>4} {:>17} {:>10.4} {:>10} {:>9}",
            name,
            h.len(),
            verdict(r.verdict),
            ms(t),
            go_ms.map_or("-".to_string(), |g| format!("{g:.3}")),
            go_ms.map_or("-".to_string(), |g| format!("{:.0}x", g / ms(t))),
        );
    }
    println!(
        "etcd total: ours {ours_total:.2} ms, Go {go_total:.1} ms ({:.0}x)\n",
        go_total / ours_total
    );

    println!("== Porcupine kv histories ==");
    println!(
        "{:<12} {:>9} {:>5} {:>17} {:>10} {:>10} {:>9}",
        "file", "model", "ops", "verdict", "ours ms", "Go ms", "speedup"
    );
    let mut totals: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for model in ["kv", "kv-nopart"] {
        for c in ["c01", "c10", "c50"] {
            for kind in ["ok", "bad"] {
                let name = format!("{c}-{kind}.txt");
                let h = match load_kv(&data_dir().join("kv").join(&name)) {
                    Ok(h) => h,
                    Err(e) => panic!("{name}: {e}"),
                };
                let (t, r) = if model == "kv" {
                    measure(|| run(&KeyValue, &h))
                } else if c == "c50" {
                    // Porcupine gave up after 60 s here; give ours the same bound, once.
                    let opts = CheckOptions::with_time_limit(Duration::from_secs(60));
                    let t = Instant::now();
                    let r = match check(&KvWhole, &h, &opts) {
                        Ok(r) => r,
                        Err(e) => panic!("{name}: {e}"),
                    };
                    (t.elapsed(), r)
                } else {
                    measure(|| run(&KvWhole, &h))
                };
                let go_ms = go.get(&(name.clone(), model.to_string())).copied();
                let total = totals.entry(model).or_default();
                if let Some(g) = go_ms {
                    total.0 += ms(t);
                    total.1 += g;
                }
                println!(
                    "{:<12} {:>9} {:>5} {:>17} {:>10.3} {:>10} {:>9}",
                    name,
                    model,
                    h.len(),
                    verdict(r.verdict),
                    ms(t),
                    go_ms.map_or("Unknown@60s".to_string(), |g| format!("{g:.3}")),
                    go_ms.map_or("-".to_string(), |g| format!("{:.0}x", g / ms(t))),
                );
            }
        }
    }
    for (model, (ours, go)) in totals {
        println!(
            "{model} total (files with a Go time): ours {ours:.2} ms, Go {go:.1} ms ({:.0}x)",
            go / ours
        );
    }

    println!("\n== Generated token histories (Token model, per-token partitions) ==");
    println!(
        "{:<44} {:>8} {:>8} {:>9} {:>12} {:>14} {:>12}",
        "workload", "ops", "unknown", "ms", "ops/s", "events/s", "steps"
    );
    let workloads = [
        (
            "60 tokens, 6 clients, 1% unknown",
            TokenWorkload {
                tokens: 60,
                clients: 6,
                ops: 100_000,
                unknown_rate: 0.01,
                ..TokenWorkload::default()
            },
        ),
        (
            "1000 tokens, 16 clients, 2% unknown",
            TokenWorkload {
                tokens: 1000,
                clients: 16,
                ops: 100_000,
                unknown_rate: 0.02,
                ..TokenWorkload::default()
            },
        ),
        (
            "8 tokens, 16 clients, 2% unknown (contended)",
            TokenWorkload {
                tokens: 8,
                clients: 16,
                ops: 100_000,
                unknown_rate: 0.02,
                ..TokenWorkload::default()
            },
        ),
    ];
    for (label, w) in workloads {
        let (model, h) = token_history(&w, 42);
        let unknown = h.iter().filter(|o| !o.output.is_known()).count();
        let (t, r) = measure(|| run(&model, &h));
        assert_eq!(
            r.verdict,
            Verdict::Valid,
            "{label}: generated history must be valid"
        );
        let secs = t.as_secs_f64();
        println!(
            "{:<44} {:>8} {:>8} {:>9.2} {:>12.0} {:>14.0} {:>12}",
            label,
            h.len(),
            unknown,
            ms(t),
            h.len() as f64 / secs,
            // A call and a return per operation; unknown outcomes count their call only.
            (2 * h.len() - unknown) as f64 / secs,
            r.steps,
        );
    }
}
