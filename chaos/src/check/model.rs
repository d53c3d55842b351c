//! Sequential specifications that histories are checked against.
//!
//! A [`Model`] is an executable sequential specification: an initial state and a step function
//! that says whether an operation with a given output is allowed in a state, and what state
//! follows. The checker only ever talks to this trait, so a new system needs a model here and
//! nothing in the search. Two generic models live here (a system's own model lives in its
//! folder, `systems/<system>/model.rs`):
//! - [`Register`]: one read/write/compare-and-set register (Porcupine's etcd model).
//! - [`KeyValue`]: get/put/append strings, partitioned by key (Porcupine's kv model).

use crate::check::history::{Operation, Outcome};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A part of a history that can be checked on its own (P-compositionality: a history is
/// linearizable iff every part is, when parts touch disjoint objects).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition<S> {
    /// Names the object(s) of this part in reports, e.g. the key or the token id.
    pub key: String,
    /// The state this part starts from. Carried here rather than asked from [`Model::init`]
    /// because the initial state can depend on the object (each token starts with its own owner).
    pub init: S,
    /// Indices into the history. Every operation must be in exactly one partition.
    pub ops: Vec<usize>,
}

/// An executable sequential specification.
///
/// Models are deterministic: the state after an operation is a function of the state, the input
/// and the output. That is why [`Model::step`] returns one state, not a set. The
/// nondeterminism of an unknown outcome (did it happen? when?) is the checker's job, not the
/// model's: the checker may place such an operation anywhere after its call or nowhere. A
/// specification that is nondeterministic in its own right can still be written by making
/// `State` the set of states it could be in (the usual powerset construction).
///
/// Determinism is also why inputs and outputs must be `Eq + Hash`: two operations with equal
/// input and output step identically, so the checker treats concurrent ones as
/// interchangeable and tries only one of them.
pub trait Model {
    type State: Clone + Eq + Hash + Debug;
    type Input: Debug + Eq + Hash;
    type Output: Debug + Eq + Hash;

    /// The state of the whole history before any operation.
    fn init(&self) -> Self::State;

    /// Applies one operation. `output` is `None` when the outcome is unknown, and then the step
    /// must accept whatever the operation would have returned. Returns `None` if the operation
    /// cannot have returned `output` in `state`.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;

    /// A promise that this operation never changes any state: for every state `s`,
    /// `step(s, input, output)` is `None` or `Some(s)`. The checker uses it to linearize such
    /// operations as soon as they fit, without trying them anywhere else, and to drop them
    /// entirely when their outcome is unknown. A wrong `true` makes the checker unsound, so the
    /// default is `false`.
    fn is_read_only(&self, input: &Self::Input, output: Option<&Self::Output>) -> bool {
        let _ = (input, output);
        false
    }

    /// Splits a history into independently checkable parts. The default keeps it whole.
    fn partition(
        &self,
        history: &[Operation<Self::Input, Self::Output>],
    ) -> Vec<Partition<Self::State>> {
        vec![Partition {
            key: "all".to_string(),
            init: self.init(),
            ops: (0..history.len()).collect(),
        }]
    }

    /// One line for an operation in a counter-example.
    fn describe_operation(&self, input: &Self::Input, output: &Outcome<Self::Output>) -> String {
        match output {
            Outcome::Ok(o) => format!("{input:?} -> {o:?}"),
            Outcome::Unknown => format!("{input:?} -> ?"),
        }
    }

    /// One line for a state in a counter-example.
    fn describe_state(&self, state: &Self::State) -> String {
        format!("{state:?}")
    }
}

// ---------------------------------------------------------------------------------------------
// Register
// ---------------------------------------------------------------------------------------------

/// A single register over `Option<i64>` that starts as `None` (nil, never written), with
/// Jepsen's read/write/cas. The same rules as Porcupine's `etcdModel`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Register;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterInput {
    Read,
    Write(i64),
    Cas { from: i64, to: i64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterOutput {
    /// A read saw this value (`None`: never written).
    ReadOk(Option<i64>),
    WriteOk,
    /// The register held `from` and now holds `to`.
    CasOk,
    /// The register did not hold `from`; nothing changed.
    CasFail,
}

impl Model for Register {
    type State = Option<i64>;
    type Input = RegisterInput;
    type Output = RegisterOutput;

    fn init(&self) -> Option<i64> {
        None
    }

    fn step(
        &self,
        state: &Option<i64>,
        input: &RegisterInput,
        output: Option<&RegisterOutput>,
    ) -> Option<Option<i64>> {
        // A mismatched input/output pair (a read answered with `CasOk`) is refused rather than
        // ignored: it means the history was recorded wrong, and refusing makes it show up.
        match (input, output) {
            (RegisterInput::Read, None) => Some(*state),
            (RegisterInput::Read, Some(RegisterOutput::ReadOk(v))) => (v == state).then_some(*v),
            (RegisterInput::Write(v), None | Some(RegisterOutput::WriteOk)) => Some(Some(*v)),
            (RegisterInput::Cas { from, to }, None) => Some(if *state == Some(*from) {
                Some(*to)
            } else {
                *state
            }),
            (RegisterInput::Cas { from, to }, Some(RegisterOutput::CasOk)) => {
                (*state == Some(*from)).then_some(Some(*to))
            }
            (RegisterInput::Cas { from, .. }, Some(RegisterOutput::CasFail)) => {
                (*state != Some(*from)).then_some(*state)
            }
            _ => None,
        }
    }

    fn is_read_only(&self, input: &RegisterInput, output: Option<&RegisterOutput>) -> bool {
        matches!(
            (input, output),
            (RegisterInput::Read, _) | (RegisterInput::Cas { .. }, Some(RegisterOutput::CasFail))
        )
    }

    fn describe_operation(
        &self,
        input: &RegisterInput,
        output: &Outcome<RegisterOutput>,
    ) -> String {
        let call = match input {
            RegisterInput::Read => "read()".to_string(),
            RegisterInput::Write(v) => format!("write({v})"),
            RegisterInput::Cas { from, to } => format!("cas({from}, {to})"),
        };
        let ret = match output {
            Outcome::Unknown => "?".to_string(),
            Outcome::Ok(RegisterOutput::ReadOk(v)) => show_opt(*v),
            Outcome::Ok(RegisterOutput::WriteOk) | Outcome::Ok(RegisterOutput::CasOk) => {
                "ok".to_string()
            }
            Outcome::Ok(RegisterOutput::CasFail) => "fail".to_string(),
        };
        format!("{call} -> {ret}")
    }

    fn describe_state(&self, state: &Option<i64>) -> String {
        show_opt(*state)
    }
}

fn show_opt(v: Option<i64>) -> String {
    v.map_or_else(|| "nil".to_string(), |v| v.to_string())
}

// ---------------------------------------------------------------------------------------------
// Key-value
// ---------------------------------------------------------------------------------------------

/// String values per key, each starting as `""`: get returns the value, put replaces it,
/// append concatenates. Partitioned by key, so each key is checked as its own register. The same
/// rules as Porcupine's `kvModel`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyValue;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KvInput {
    pub key: String,
    pub op: KvOp,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvOp {
    Get,
    Put(String),
    Append(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvOutput {
    /// What a get returned (`""` for a key never written).
    Value(String),
    /// A put or append was acknowledged.
    Done,
}

impl KvInput {
    pub fn get(key: impl Into<String>) -> Self {
        KvInput {
            key: key.into(),
            op: KvOp::Get,
        }
    }
    pub fn put(key: impl Into<String>, value: impl Into<String>) -> Self {
        KvInput {
            key: key.into(),
            op: KvOp::Put(value.into()),
        }
    }
    pub fn append(key: impl Into<String>, value: impl Into<String>) -> Self {
        KvInput {
            key: key.into(),
            op: KvOp::Append(value.into()),
        }
    }
}

/// The value of one key, as the checker holds it.
///
/// Values grow by appends to kilobytes, and the checker keeps a state per explored
/// configuration (hundreds of thousands on a 50-client history), clones it and hashes it at
/// every step. So a value is a persistent list of appended chunks: an append is a new node
/// pointing at the old value, cloning is a reference count, and a polynomial hash is carried
/// along in O(appended length). Equality still compares the text (chunk by chunk from the end,
/// stopping at a shared tail), so hash collisions cost time, never correctness.
#[derive(Clone, Default)]
pub struct KvValue {
    last: Option<Arc<KvChunk>>,
}

struct KvChunk {
    before: Option<Arc<KvChunk>>,
    text: ChunkText,
    /// Length and hash of the whole value up to and including this chunk.
    len: usize,
    hash: u64,
}

/// Appended text, inline when short (most appends are a few bytes), saving an allocation per
/// append.
enum ChunkText {
    Inline { len: u8, bytes: [u8; 22] },
    Heap(Box<[u8]>),
}

impl ChunkText {
    fn new(text: &str) -> Self {
        let src = text.as_bytes();
        if src.len() <= 22 {
            let mut bytes = [0u8; 22];
            bytes[..src.len()].copy_from_slice(src);
            ChunkText::Inline {
                len: src.len() as u8,
                bytes,
            }
        } else {
            ChunkText::Heap(src.into())
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            ChunkText::Inline { len, bytes } => &bytes[..usize::from(*len)],
            ChunkText::Heap(b) => b,
        }
    }
}

/// Multiplier of the polynomial hash: `hash(s) = sum of s[i] * P^(len-1-i)` (mod 2^64).
const KV_HASH_P: u64 = 0x0000_0100_0000_01b3;

fn poly_hash(seed: u64, text: &str) -> u64 {
    text.bytes().fold(seed, |h, b| {
        h.wrapping_mul(KV_HASH_P).wrapping_add(u64::from(b))
    })
}

impl KvValue {
    pub fn new(text: &str) -> Self {
        KvValue::default().appended(text)
    }

    pub fn len(&self) -> usize {
        self.last.as_ref().map_or(0, |c| c.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn hash_value(&self) -> u64 {
        self.last.as_ref().map_or(0, |c| c.hash)
    }

    fn appended(&self, suffix: &str) -> Self {
        if suffix.is_empty() {
            return self.clone();
        }
        KvValue {
            last: Some(Arc::new(KvChunk {
                before: self.last.clone(),
                text: ChunkText::new(suffix),
                len: self.len() + suffix.len(),
                hash: poly_hash(self.hash_value(), suffix),
            })),
        }
    }

    /// Chunks from the last one back.
    fn chunks(&self) -> impl Iterator<Item = &KvChunk> {
        std::iter::successors(self.last.as_deref(), |c| c.before.as_deref())
    }

    /// Whether the value is exactly `text`, without building it.
    pub fn equals_str(&self, text: &str) -> bool {
        if self.len() != text.len() {
            return false;
        }
        let mut end = text.len();
        for chunk in self.chunks() {
            let bytes = chunk.text.bytes();
            let start = end - bytes.len();
            if text.as_bytes()[start..end] != *bytes {
                return false;
            }
            end = start;
        }
        true
    }
}

impl std::fmt::Display for KvValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut bytes = Vec::with_capacity(self.len());
        let chunks: Vec<&KvChunk> = self.chunks().collect();
        for chunk in chunks.iter().rev() {
            bytes.extend_from_slice(chunk.text.bytes());
        }
        // Chunks are whole appended strings, so the bytes are UTF-8.
        f.write_str(&String::from_utf8_lossy(&bytes))
    }
}

impl Debug for KvValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Debug::fmt(&self.to_string(), f)
    }
}

impl PartialEq for KvValue {
    fn eq(&self, other: &Self) -> bool {
        if self.len() != other.len() || self.hash_value() != other.hash_value() {
            return false;
        }
        // Walk both from the end, comparing the overlapping parts of the current chunks.
        let (mut a, mut b) = (self.last.as_deref(), other.last.as_deref());
        let chunk_len = |c: Option<&KvChunk>| c.map_or(0, |c| c.text.bytes().len());
        let (mut ai, mut bi) = (chunk_len(a), chunk_len(b));
        loop {
            while let Some(c) = a.filter(|_| ai == 0) {
                a = c.before.as_deref();
                ai = chunk_len(a);
            }
            while let Some(c) = b.filter(|_| bi == 0) {
                b = c.before.as_deref();
                bi = chunk_len(b);
            }
            let (Some(x), Some(y)) = (a, b) else {
                // Equal lengths, so both ran out together.
                return a.is_none() && b.is_none();
            };
            if std::ptr::eq(x, y) && ai == bi {
                // The rest is a shared tail.
                return true;
            }
            let k = ai.min(bi);
            if x.text.bytes()[ai - k..ai] != y.text.bytes()[bi - k..bi] {
                return false;
            }
            ai -= k;
            bi -= k;
        }
    }
}

impl Eq for KvValue {}

impl Hash for KvValue {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash_value());
    }
}

impl Drop for KvChunk {
    /// Iterative, because the default drop of a long chain of appends would recurse once per
    /// chunk and overflow the stack.
    fn drop(&mut self) {
        let mut next = self.before.take();
        while let Some(chunk) = next {
            match Arc::try_unwrap(chunk) {
                Ok(mut chunk) => next = chunk.before.take(),
                Err(_) => break,
            }
        }
    }
}

impl Model for KeyValue {
    /// The value of the partition's one key.
    type State = KvValue;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> KvValue {
        KvValue::default()
    }

    fn step(&self, state: &KvValue, input: &KvInput, output: Option<&KvOutput>) -> Option<KvValue> {
        match (&input.op, output) {
            (KvOp::Get, None) => Some(state.clone()),
            (KvOp::Get, Some(KvOutput::Value(v))) => state.equals_str(v).then(|| state.clone()),
            (KvOp::Put(v), None | Some(KvOutput::Done)) => Some(KvValue::new(v)),
            (KvOp::Append(v), None | Some(KvOutput::Done)) => Some(state.appended(v)),
            _ => None,
        }
    }

    fn is_read_only(&self, input: &KvInput, _output: Option<&KvOutput>) -> bool {
        matches!(input.op, KvOp::Get)
    }

    fn partition(&self, history: &[Operation<KvInput, KvOutput>]) -> Vec<Partition<KvValue>> {
        let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, op) in history.iter().enumerate() {
            by_key.entry(op.input.key.as_str()).or_default().push(i);
        }
        by_key
            .into_iter()
            .map(|(key, ops)| Partition {
                key: key.to_string(),
                init: KvValue::default(),
                ops,
            })
            .collect()
    }

    fn describe_operation(&self, input: &KvInput, output: &Outcome<KvOutput>) -> String {
        let ret = match output {
            Outcome::Unknown => "?".to_string(),
            Outcome::Ok(KvOutput::Value(v)) => format!("{v:?}"),
            Outcome::Ok(KvOutput::Done) => "ok".to_string(),
        };
        match &input.op {
            KvOp::Get => format!("get({:?}) -> {ret}", input.key),
            KvOp::Put(v) => format!("put({:?}, {v:?}) -> {ret}", input.key),
            KvOp::Append(v) => format!("append({:?}, {v:?}) -> {ret}", input.key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_rules_match_etcd_model() {
        let m = Register;
        use RegisterInput::*;
        use RegisterOutput::*;
        assert_eq!(m.step(&None, &Read, Some(&ReadOk(None))), Some(None));
        assert_eq!(m.step(&None, &Read, Some(&ReadOk(Some(1)))), None);
        assert_eq!(m.step(&Some(3), &Read, None), Some(Some(3)));
        assert_eq!(m.step(&None, &Write(2), Some(&WriteOk)), Some(Some(2)));
        assert_eq!(m.step(&None, &Write(2), None), Some(Some(2)));
        let cas = Cas { from: 2, to: 5 };
        assert_eq!(m.step(&Some(2), &cas, Some(&CasOk)), Some(Some(5)));
        assert_eq!(m.step(&Some(1), &cas, Some(&CasOk)), None);
        assert_eq!(m.step(&Some(1), &cas, Some(&CasFail)), Some(Some(1)));
        assert_eq!(m.step(&Some(2), &cas, Some(&CasFail)), None);
        assert_eq!(m.step(&None, &cas, Some(&CasFail)), Some(None));
        assert_eq!(m.step(&Some(2), &cas, None), Some(Some(5)));
        assert_eq!(m.step(&Some(1), &cas, None), Some(Some(1)));
        assert_eq!(m.step(&Some(1), &Read, Some(&CasOk)), None);
        assert_eq!(
            m.describe_operation(&cas, &Outcome::Ok(CasFail)),
            "cas(2, 5) -> fail"
        );
    }

    #[test]
    fn kv_rules_and_partitioning() {
        let m = KeyValue;
        let s = KvValue::new("ab");
        assert_eq!(
            m.step(&s, &KvInput::get("k"), Some(&KvOutput::Value("ab".into()))),
            Some(s.clone())
        );
        assert_eq!(
            m.step(&s, &KvInput::get("k"), Some(&KvOutput::Value("a".into()))),
            None
        );
        let abc = m.step(&s, &KvInput::append("k", "c"), Some(&KvOutput::Done));
        assert_eq!(abc, Some(KvValue::new("abc")));
        assert_eq!(abc.map(|v| v.to_string()), Some("abc".to_string()));
        assert_eq!(
            m.step(&s, &KvInput::put("k", "z"), None),
            Some(KvValue::new("z"))
        );
        // Values built by different appends compare and hash by their text.
        let built = KvValue::new("x").appended("yz").appended("").appended("w");
        let whole = KvValue::new("xyzw");
        assert_eq!(built, whole);
        assert_eq!(built.hash_value(), whole.hash_value());
        assert_eq!(built, KvValue::new("xy").appended("zw"));
        assert_ne!(built, KvValue::new("xy").appended("wz"));
        assert_ne!(KvValue::new("ab"), KvValue::new("ba"));
        assert!(built.equals_str("xyzw") && !built.equals_str("xyz") && !built.equals_str("xyzv"));
        assert_eq!(format!("{built:?}"), "\"xyzw\"");
        assert!(KvValue::default().equals_str("") && KvValue::default().is_empty());
        // A long chain drops without recursing.
        let mut long = KvValue::default();
        for _ in 0..200_000 {
            long = long.appended("a");
        }
        assert_eq!(long.len(), 200_000);
        drop(long);
        let h = vec![
            Operation::ok(0, KvInput::put("b", "1"), 0, 1, KvOutput::Done),
            Operation::ok(1, KvInput::get("a"), 0, 1, KvOutput::Value(String::new())),
            Operation::ok(0, KvInput::get("b"), 2, 3, KvOutput::Value("1".into())),
        ];
        let parts = m.partition(&h);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].key, "a");
        assert_eq!(parts[0].ops, vec![1]);
        assert_eq!(parts[1].ops, vec![0, 2]);
    }

    #[test]
    fn kv_value_equality_matches_string_equality() {
        // Random texts over a tiny alphabet, built from random chunkings, sometimes sharing a
        // prefix value: equality and hashing must follow the text alone.
        struct Lcg(u64);
        impl Lcg {
            fn next(&mut self) -> u64 {
                self.0 = self
                    .0
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                self.0 >> 33
            }
        }
        let mut rng = Lcg(1);
        let build = |rng: &mut Lcg, base: &KvValue| {
            let mut v = base.clone();
            for _ in 0..rng.next() % 4 {
                let chunk: String = (0..rng.next() % 4)
                    .map(|_| {
                        if rng.next().is_multiple_of(2) {
                            'a'
                        } else {
                            'b'
                        }
                    })
                    .collect();
                v = v.appended(&chunk);
            }
            v
        };
        let shared = KvValue::new("ab");
        for _ in 0..20_000 {
            let x = build(&mut rng, &shared);
            let y = if rng.next().is_multiple_of(2) {
                build(&mut rng, &shared)
            } else {
                build(&mut rng, &KvValue::default())
            };
            let (xs, ys) = (x.to_string(), y.to_string());
            assert_eq!(x == y, xs == ys, "{xs:?} vs {ys:?}");
            assert!(x.equals_str(&xs) && y.equals_str(&ys));
            assert_eq!(x.equals_str(&ys), xs == ys);
            if xs == ys {
                assert_eq!(x.hash_value(), y.hash_value());
            }
        }
    }
}
