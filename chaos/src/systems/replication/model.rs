//! The replicated store as a sequential specification, one key per
//! partition: a counter (`add` returns the new value) or a register
//! (`put`, `get`). Written apart from the replicas' store on purpose: a
//! checker that reused their code would agree with its bugs.

use crate::check::{Model, Operation, Partition};
use faultline_node::protocol::replication::store::{Answer, Op};
use std::collections::BTreeMap;

/// One key's value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Cell {
    Counter(i64),
    Register(Option<String>),
}

/// Which object an operation acts on: counters and registers are apart.
pub fn object(op: &Op) -> String {
    match op {
        Op::Add { key, .. } => format!("counter {key:?}"),
        Op::Put { key, .. } | Op::Get { key } => format!("register {key:?}"),
    }
}

/// What `op` answers on `cell`, and the cell after.
pub fn step(cell: &Cell, op: &Op) -> (Answer, Cell) {
    match (op, cell) {
        (Op::Add { n, .. }, Cell::Counter(v)) => match v.checked_add(*n) {
            Some(x) => (Answer::Counter(x), Cell::Counter(x)),
            None => (Answer::Refused("overflow".into()), cell.clone()),
        },
        (Op::Put { value, .. }, _) => (
            Answer::Register(Some(value.clone())),
            Cell::Register(Some(value.clone())),
        ),
        (Op::Get { .. }, Cell::Register(v)) => (Answer::Register(v.clone()), cell.clone()),
        // An operation of the other kind never meets this cell
        // (partitions are per object).
        (_, c) => (Answer::Refused("wrong object".into()), c.clone()),
    }
}

#[derive(Clone, Debug, Default)]
pub struct StoreModel;

impl Model for StoreModel {
    type State = Cell;
    type Input = Op;
    type Output = Answer;

    fn init(&self) -> Cell {
        Cell::Register(None)
    }

    fn step(&self, state: &Cell, input: &Op, output: Option<&Answer>) -> Option<Cell> {
        let (answer, next) = step(state, input);
        match output {
            None => Some(next),
            // A refusal (overflow) matches any refusal message.
            Some(Answer::Refused(_)) if matches!(answer, Answer::Refused(_)) => Some(next),
            Some(o) if *o == answer => Some(next),
            Some(_) => None,
        }
    }

    fn is_read_only(&self, input: &Op, _output: Option<&Answer>) -> bool {
        matches!(input, Op::Get { .. })
    }

    fn partition(&self, history: &[Operation<Op, Answer>]) -> Vec<Partition<Cell>> {
        let mut by: BTreeMap<String, (Cell, Vec<usize>)> = BTreeMap::new();
        for (i, op) in history.iter().enumerate() {
            let init = match op.input {
                Op::Add { .. } => Cell::Counter(0),
                _ => Cell::Register(None),
            };
            by.entry(object(&op.input))
                .or_insert_with(|| (init, Vec::new()))
                .1
                .push(i);
        }
        by.into_iter()
            .map(|(key, (init, ops))| Partition { key, init, ops })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_node::protocol::replication::store::{RequestId, Store};

    /// The model and the replicas' store agree on a small script.
    #[test]
    fn the_model_answers_as_the_store() {
        let mut store = Store::default();
        let mut cells: BTreeMap<String, Cell> = BTreeMap::new();
        let script = [
            Op::Add {
                key: "a".into(),
                n: 3,
            },
            Op::Get { key: "a".into() },
            Op::Put {
                key: "a".into(),
                value: "x".into(),
            },
            Op::Add {
                key: "a".into(),
                n: -5,
            },
            Op::Get { key: "a".into() },
            Op::Add {
                key: "b".into(),
                n: i64::MAX,
            },
            Op::Add {
                key: "b".into(),
                n: 1,
            },
        ];
        for (i, op) in script.iter().enumerate() {
            let id = RequestId {
                client: "c".into(),
                seq: i as u64,
            };
            let want = store.apply(&id, op, true);
            let init = match op {
                Op::Add { .. } => Cell::Counter(0),
                _ => Cell::Register(None),
            };
            let cell = cells.entry(object(op)).or_insert(init);
            let (got, next) = step(cell, op);
            *cell = next;
            match (&got, &want) {
                (Answer::Refused(_), Answer::Refused(_)) => {}
                _ => assert_eq!(got, want, "{op:?}"),
            }
        }
    }
}
