//! The checker against Porcupine's public histories (tests/data/porcupine): every file must
//! parse and get the verdict its README gives. The README's per-file table is also used to
//! cross-check the parser (operation and timed-out counts).

use faultline_chaos::check::porcupine::{load_jepsen_etcd, load_kv};
use faultline_chaos::check::{
    check, check_parallel, CheckOptions, KeyValue, KvInput, KvOutput, KvValue, Model, Operation,
    Outcome, Register, Verdict,
};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// From the README ("Expected verdicts"); every other etcd file except the empty 095 is not
/// linearizable.
const ETCD_LINEARIZABLE: [u32; 23] = [
    2, 5, 7, 18, 25, 31, 38, 45, 48, 49, 51, 53, 56, 67, 75, 76, 80, 87, 92, 98, 100, 101, 102,
];

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/porcupine")
}

struct Row {
    ops: usize,
    pending: usize,
    failed_reads: usize,
    linearizable: bool,
}

/// The etcd table of the README: `| etcd_000.log | bytes | lines | ops | pending | failed reads
/// | processes | expected | ...`.
fn readme_etcd_table() -> HashMap<String, Row> {
    let readme = match std::fs::read_to_string(data_dir().join("README.md")) {
        Ok(t) => t,
        Err(e) => panic!("README.md: {e}"),
    };
    let mut rows = HashMap::new();
    for line in readme.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 10 || !cells[1].starts_with("etcd_") || cells[4] == "0" {
            continue;
        }
        let num = |s: &str| s.parse::<usize>().ok();
        let (Some(ops), Some(pending), Some(failed_reads)) =
            (num(cells[4]), num(cells[5]), num(cells[6]))
        else {
            continue;
        };
        rows.insert(
            cells[1].to_string(),
            Row {
                ops,
                pending,
                failed_reads,
                linearizable: cells[8] == "linearizable",
            },
        );
    }
    rows
}

#[test]
fn every_etcd_history_gets_its_known_verdict() {
    let table = readme_etcd_table();
    assert_eq!(table.len(), 102, "README table rows");
    let mut failures = Vec::new();
    for n in 0..=102u32 {
        let name = format!("etcd_{n:03}.log");
        let history = match load_jepsen_etcd(&data_dir().join("jepsen").join(&name)) {
            Ok(h) => h,
            Err(e) => panic!("{name}: {e}"),
        };
        let result = match check(&Register, &history, &CheckOptions::default()) {
            Ok(r) => r,
            Err(e) => panic!("{name}: {e}"),
        };
        if n == 95 {
            assert!(history.is_empty(), "etcd_095.log is empty");
            assert_eq!(result.verdict, Verdict::Valid);
            continue;
        }
        let expected = if ETCD_LINEARIZABLE.contains(&n) {
            Verdict::Valid
        } else {
            Verdict::Invalid
        };
        let Some(row) = table.get(&name) else {
            panic!("{name} missing from the README table");
        };
        assert_eq!(
            row.linearizable,
            expected == Verdict::Valid,
            "{name}: README disagrees"
        );
        assert_eq!(history.len(), row.ops, "{name}: operations");
        let open = history.iter().filter(|o| o.ret.is_none()).count();
        assert_eq!(open, row.pending, "{name}: operations left open by :info");
        let failed_reads = history
            .iter()
            .filter(|o| o.ret.is_some() && o.output == Outcome::Unknown)
            .count();
        assert_eq!(
            failed_reads, row.failed_reads,
            "{name}: :fail :read :timed-out"
        );
        if result.verdict != expected {
            failures.push(format!(
                "{name}: got {:?}, expected {expected:?}",
                result.verdict
            ));
        }
        match (&result.verdict, &result.counterexample) {
            (Verdict::Invalid, Some(cx)) => {
                assert!(!cx.unplaced.is_empty(), "{name}: no unplaced operations");
                assert!(
                    cx.unplaced.iter().any(|u| u.blocking),
                    "{name}: no blocking op"
                );
                assert!(cx.prefix.len() < history.len());
            }
            (Verdict::Invalid, None) => panic!("{name}: invalid without a counter-example"),
            _ => {}
        }
    }
    assert!(
        failures.is_empty(),
        "wrong verdicts:\n{}",
        failures.join("\n")
    );
}

fn kv_files() -> Vec<(String, bool)> {
    ["c01", "c10", "c50"]
        .iter()
        .flat_map(|c| {
            [
                (format!("{c}-ok.txt"), true),
                (format!("{c}-bad.txt"), false),
            ]
        })
        .collect()
}

fn load(name: &str) -> Vec<Operation<KvInput, KvOutput>> {
    match load_kv(&data_dir().join("kv").join(name)) {
        Ok(h) => h,
        Err(e) => panic!("{name}: {e}"),
    }
}

#[test]
fn every_kv_history_gets_its_known_verdict() {
    for (name, linearizable) in kv_files() {
        let history = load(&name);
        assert!(
            history.iter().all(|o| o.output.is_known()),
            "{name}: all ops return"
        );
        let result = match check(&KeyValue, &history, &CheckOptions::default()) {
            Ok(r) => r,
            Err(e) => panic!("{name}: {e}"),
        };
        let expected = if linearizable {
            Verdict::Valid
        } else {
            Verdict::Invalid
        };
        assert_eq!(result.verdict, expected, "{name}");
        let parallel = match check_parallel(&KeyValue, &history, &CheckOptions::default(), 2) {
            Ok(r) => r,
            Err(e) => panic!("{name}: {e}"),
        };
        assert_eq!(parallel.verdict, expected, "{name} on two threads");
        assert_eq!(
            parallel.counterexample.as_ref().map(|c| &c.partition),
            result.counterexample.as_ref().map(|c| &c.partition),
            "{name}: same smallest failing key on two threads"
        );
        if !linearizable {
            let Some(cx) = result.counterexample else {
                panic!("{name}: no counter-example");
            };
            // The reported key is the smallest failing one, so its partition is no larger
            // than any other failing key's.
            assert!(cx.partition_ops <= history.len());
            assert!(!cx.unplaced.is_empty());
        }
    }
}

/// Porcupine's `kvNoPartitionModel`: one state for all keys, no partitioning. It checks that the
/// search itself (not P-compositionality) reaches the same verdicts.
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

#[test]
fn kv_without_partitioning_agrees_on_small_histories() {
    for (name, linearizable) in kv_files().into_iter().take(4) {
        let history = load(&name);
        let result = match check(&KvWhole, &history, &CheckOptions::default()) {
            Ok(r) => r,
            Err(e) => panic!("{name}: {e}"),
        };
        assert_eq!(result.partitions_total, 1);
        let expected = if linearizable {
            Verdict::Valid
        } else {
            Verdict::Invalid
        };
        assert_eq!(result.verdict, expected, "{name} unpartitioned");
    }
}
