//! Source positions of every field in a YAML document, keyed by a path such as
//! `nodes[2].role`, so semantic errors found after deserialising can still
//! name the line a person has to fix.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Line and column, both 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

#[derive(Default)]
struct Collector {
    stack: Vec<Frame>,
    positions: HashMap<String, Pos>,
}

impl Collector {
    /// The path of the value that starts now, or `None` when it is a map key.
    fn value_path(&mut self, key_text: Option<&str>, pos: Pos) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                Some(p)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => Some(if path.is_empty() {
                    k
                } else {
                    format!("{path}.{k}")
                }),
                None => {
                    let k = key_text.unwrap_or("?").to_string();
                    let full = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    self.positions.entry(full).or_insert(pos);
                    *key = Some(k);
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for Collector {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos {
            line: mark.line(),
            col: mark.col() + 1,
        };
        match ev {
            Event::Scalar(text, ..) => {
                if let Some(p) = self.value_path(Some(&text), pos) {
                    self.positions.entry(p).or_insert(pos);
                }
            }
            Event::Alias(_) => {
                if let Some(p) = self.value_path(None, pos) {
                    self.positions.entry(p).or_insert(pos);
                }
            }
            Event::MappingStart(..) => {
                let path = self.value_path(None, pos).unwrap_or_default();
                self.positions.entry(path.clone()).or_insert(pos);
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.value_path(None, pos).unwrap_or_default();
                self.positions.entry(path.clone()).or_insert(pos);
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

/// Positions of every key and value; empty if the text does not parse (the
/// deserialiser reports syntax errors with their own position).
pub fn positions(text: &str) -> HashMap<String, Pos> {
    let mut c = Collector::default();
    let mut parser = Parser::new_from_str(text);
    if parser.load(&mut c, false).is_err() {
        return HashMap::new();
    }
    c.positions
}

/// The position of `path`, or of its nearest ancestor that has one.
pub fn lookup(map: &HashMap<String, Pos>, path: &str) -> Option<Pos> {
    let mut p = path.to_string();
    loop {
        if let Some(pos) = map.get(&p) {
            return Some(*pos);
        }
        let cut = p.rfind(['.', '['])?;
        p.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_fields() {
        let text =
            "system: example\nnodes:\n  - id: s1\n    role: server\n  - id: s2\n    role: leader\n";
        let m = positions(text);
        assert_eq!(m.get("system"), Some(&Pos { line: 1, col: 1 }));
        assert_eq!(m.get("nodes[1].role").map(|p| p.line), Some(6));
        assert_eq!(m.get("nodes[0].id").map(|p| p.line), Some(3));
        assert_eq!(lookup(&m, "nodes[1].missing").map(|p| p.line), Some(5));
    }
}
