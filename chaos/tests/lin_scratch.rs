use faultline_chaos::check::porcupine::load_kv;
use faultline_chaos::check::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

struct KvWhole;
impl Model for KvWhole {
    type State = BTreeMap<String, KvValue>;
    type Input = KvInput;
    type Output = KvOutput;
    fn init(&self) -> Self::State { BTreeMap::new() }
    fn step(&self, state: &Self::State, input: &KvInput, output: Option<&KvOutput>) -> Option<Self::State> {
        let empty = KvValue::default();
        let current = state.get(&input.key).unwrap_or(&empty);
        let next = KeyValue.step(current, input, output)?;
        if next == *current { return Some(state.clone()); }
        let mut state = state.clone();
        state.insert(input.key.clone(), next);
        Some(state)
    }
    fn is_read_only(&self, input: &KvInput, output: Option<&KvOutput>) -> bool { KeyValue.is_read_only(input, output) }
}

#[test]
fn scratch() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/porcupine");
    for f in ["c50-ok.txt", "c50-bad.txt"] {
        let h = load_kv(&dir.join("kv").join(f)).unwrap();
        let t = Instant::now();
        let opts = CheckOptions { time_limit: Some(Duration::from_secs(10)), cache_limit: Some(10_000_000), ..Default::default() };
        let r = check(&KvWhole, &h, &opts).unwrap();
        println!("{f} nopart: {:?} steps {} limit {:?} {:?}", r.verdict, r.steps, r.limit_hit, t.elapsed());
    }
}
