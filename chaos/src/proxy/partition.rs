//! Network partitions as shapes over the node list, and their expansion into
//! the set of blocked directed node pairs.
//!
//! [`expand`] is a pure function (node list in, blocked pairs out) so every
//! shape can be checked exhaustively in unit tests; the fault table applies
//! its result to all directions in one swap.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::error::ProxyError;

/// A partition shape. Serialized with a `shape` tag, e.g.
/// `{"shape":"isolate","node":"s1"}` or `{"shape":"halves"}`.
///
/// Shapes that split "the node list" use the proxy's node order (config
/// `nodes`, or the order of first appearance in `links`), so the same request
/// always cuts the same way; use `groups` for any other split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "shape", rename_all = "snake_case", deny_unknown_fields)]
pub enum PartitionShape {
    /// First `n/2` nodes (rounded down) against the rest. `among`, when set,
    /// is the list split (say the servers; the other nodes keep their links).
    Halves {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        among: Option<Vec<String>>,
    },
    /// One node cut off from every other node, both ways.
    Isolate { node: String },
    /// A majority of `n/2 + 1` nodes against a minority. Without `minority`
    /// the last nodes of the list form the minority.
    #[serde(alias = "majority")]
    MajorityMinority {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minority: Option<Vec<String>>,
    },
    /// Two halves that cannot see each other but both see the bridge node
    /// (by default the middle node of the list). `among` as for halves.
    Bridge {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bridge: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        among: Option<Vec<String>>,
    },
    /// Each node sees only its two neighbours on the ring of the node list.
    /// Blocks nothing on three nodes or fewer (everyone is a neighbour).
    /// `among` as for halves.
    Ring {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        among: Option<Vec<String>>,
    },
    /// Every `from` node is cut towards every `to` node; the other way stays open.
    OneWay { from: Vec<String>, to: Vec<String> },
    /// Explicit groups: nodes in different groups cannot talk. Nodes in no
    /// group are left alone.
    Groups { groups: Vec<Vec<String>> },
}

/// A blocked direction: datagrams from `from` to `to` are dropped.
pub type Cut = (String, String);

fn invalid(msg: impl Into<String>) -> ProxyError {
    ProxyError::InvalidPartition(msg.into())
}

fn check_known(known: &HashSet<&str>, node: &str) -> Result<(), ProxyError> {
    if known.contains(node) {
        Ok(())
    } else {
        let mut list: Vec<&str> = known.iter().copied().collect();
        list.sort_unstable();
        Err(invalid(format!(
            "unknown node {node:?}; known nodes: {}",
            list.join(", ")
        )))
    }
}

/// Block every pair of nodes that sit in different groups (both directions).
fn cut_between(groups: &[Vec<String>]) -> BTreeSet<Cut> {
    let mut cuts = BTreeSet::new();
    for (i, gi) in groups.iter().enumerate() {
        for (j, gj) in groups.iter().enumerate() {
            if i == j {
                continue;
            }
            for a in gi {
                for b in gj {
                    if a != b {
                        cuts.insert((a.clone(), b.clone()));
                    }
                }
            }
        }
    }
    cuts
}

/// Expand `shape` over `nodes` into the set of blocked directed pairs.
///
/// Errors name the unknown node or the reason the shape does not fit this
/// many nodes; nothing is applied on error.
pub fn expand(shape: &PartitionShape, all: &[String]) -> Result<BTreeSet<Cut>, ProxyError> {
    let known_all: HashSet<&str> = all.iter().map(String::as_str).collect();
    // The list a shape splits: its `among`, or every node.
    let nodes: &[String] = match shape {
        PartitionShape::Halves { among: Some(a) }
        | PartitionShape::Ring { among: Some(a) }
        | PartitionShape::Bridge { among: Some(a), .. } => {
            for x in a {
                check_known(&known_all, x)?;
            }
            a
        }
        _ => all,
    };
    let known: HashSet<&str> = nodes.iter().map(String::as_str).collect();
    if known.len() != nodes.len() {
        return Err(invalid("node list has duplicates"));
    }
    let n = nodes.len();
    let need = |min: usize, what: &str| -> Result<(), ProxyError> {
        if n < min {
            Err(invalid(format!(
                "{what} needs at least {min} nodes, the proxy knows {n}"
            )))
        } else {
            Ok(())
        }
    };
    match shape {
        PartitionShape::Halves { .. } => {
            need(2, "halves")?;
            let (a, b) = nodes.split_at(n / 2);
            Ok(cut_between(&[a.to_vec(), b.to_vec()]))
        }
        PartitionShape::Isolate { node } => {
            check_known(&known, node)?;
            let rest: Vec<String> = nodes.iter().filter(|x| *x != node).cloned().collect();
            Ok(cut_between(&[vec![node.clone()], rest]))
        }
        PartitionShape::MajorityMinority { minority } => {
            need(3, "majority_minority")?;
            let minority: Vec<String> = match minority {
                Some(m) => {
                    let mut seen = HashSet::new();
                    for x in m {
                        check_known(&known, x)?;
                        if !seen.insert(x.as_str()) {
                            return Err(invalid(format!("node {x:?} listed twice in minority")));
                        }
                    }
                    if m.is_empty() || 2 * m.len() >= n {
                        return Err(invalid(format!(
                            "minority must have between 1 and {} of the {n} nodes, got {}",
                            (n - 1) / 2,
                            m.len()
                        )));
                    }
                    m.clone()
                }
                None => nodes[n / 2 + 1..].to_vec(),
            };
            let majority: Vec<String> = nodes
                .iter()
                .filter(|x| !minority.contains(x))
                .cloned()
                .collect();
            Ok(cut_between(&[majority, minority]))
        }
        PartitionShape::Bridge { bridge, .. } => {
            need(3, "bridge")?;
            let bridge = match bridge {
                Some(b) => {
                    check_known(&known, b)?;
                    b.clone()
                }
                None => nodes[n / 2].clone(),
            };
            let rest: Vec<String> = nodes.iter().filter(|x| **x != bridge).cloned().collect();
            let (a, b) = rest.split_at(rest.len() / 2);
            Ok(cut_between(&[a.to_vec(), b.to_vec()]))
        }
        PartitionShape::Ring { .. } => {
            need(2, "ring")?;
            let mut cuts = BTreeSet::new();
            for (i, a) in nodes.iter().enumerate() {
                let left = &nodes[(i + n - 1) % n];
                let right = &nodes[(i + 1) % n];
                for b in nodes {
                    if b != a && b != left && b != right {
                        cuts.insert((a.clone(), b.clone()));
                    }
                }
            }
            Ok(cuts)
        }
        PartitionShape::OneWay { from, to } => {
            if from.is_empty() || to.is_empty() {
                return Err(invalid("one_way needs at least one node in from and in to"));
            }
            let mut cuts = BTreeSet::new();
            for a in from {
                check_known(&known, a)?;
                for b in to {
                    check_known(&known, b)?;
                    if a != b {
                        cuts.insert((a.clone(), b.clone()));
                    }
                }
            }
            Ok(cuts)
        }
        PartitionShape::Groups { groups } => {
            if groups.len() < 2 {
                return Err(invalid("groups needs at least two groups"));
            }
            let mut owner: HashMap<&str, usize> = HashMap::new();
            for (i, g) in groups.iter().enumerate() {
                if g.is_empty() {
                    return Err(invalid(format!("group {i} is empty")));
                }
                for x in g {
                    check_known(&known, x)?;
                    if owner.insert(x.as_str(), i).is_some() {
                        return Err(invalid(format!("node {x:?} is in more than one group")));
                    }
                }
            }
            Ok(cut_between(groups))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(k: usize) -> Vec<String> {
        (0..k).map(|i| format!("n{i}")).collect()
    }

    fn pairs(list: &[(&str, &str)]) -> BTreeSet<Cut> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// Both directions between every member of `a` and every member of `b`.
    fn both_ways(a: &[&str], b: &[&str]) -> BTreeSet<Cut> {
        let mut s = BTreeSet::new();
        for x in a {
            for y in b {
                s.insert((x.to_string(), y.to_string()));
                s.insert((y.to_string(), x.to_string()));
            }
        }
        s
    }

    fn parse(json: &str) -> PartitionShape {
        serde_json::from_str(json).expect("shape parses")
    }

    #[test]
    fn among_splits_only_those_nodes() {
        let all = nodes(7);
        let servers: Vec<String> = all[..5].to_vec();
        let got = expand(
            &PartitionShape::Halves {
                among: Some(servers.clone()),
            },
            &all,
        )
        .expect("ok");
        // Two of five servers against three, both ways; the other nodes untouched.
        assert_eq!(got.len(), 2 * 2 * 3);
        assert!(got
            .iter()
            .all(|(a, b)| servers.contains(a) && servers.contains(b)));
        let ring = expand(
            &PartitionShape::Ring {
                among: Some(servers.clone()),
            },
            &all,
        )
        .expect("ok");
        assert!(ring
            .iter()
            .all(|(a, b)| servers.contains(a) && servers.contains(b)));
        let bad = PartitionShape::Halves {
            among: Some(vec!["zz".into()]),
        };
        assert!(expand(&bad, &all).is_err());
    }

    #[test]
    fn halves_split_by_list_order() {
        let got = expand(&PartitionShape::Halves { among: None }, &nodes(5)).expect("ok");
        assert_eq!(got, both_ways(&["n0", "n1"], &["n2", "n3", "n4"]));
        assert_eq!(got.len(), 12);
    }

    #[test]
    fn isolate_cuts_one_node_both_ways() {
        let got = expand(&parse(r#"{"shape":"isolate","node":"n2"}"#), &nodes(4)).expect("ok");
        assert_eq!(got, both_ways(&["n2"], &["n0", "n1", "n3"]));
    }

    #[test]
    fn majority_minority_default_and_explicit() {
        let got = expand(&parse(r#"{"shape":"majority_minority"}"#), &nodes(5)).expect("ok");
        assert_eq!(got, both_ways(&["n0", "n1", "n2"], &["n3", "n4"]));
        let got = expand(&parse(r#"{"shape":"majority"}"#), &nodes(4)).expect("ok");
        assert_eq!(got, both_ways(&["n0", "n1", "n2"], &["n3"]));
        let got = expand(
            &parse(r#"{"shape":"majority_minority","minority":["n0","n4"]}"#),
            &nodes(5),
        )
        .expect("ok");
        assert_eq!(got, both_ways(&["n1", "n2", "n3"], &["n0", "n4"]));
        let err = expand(
            &parse(r#"{"shape":"majority_minority","minority":["n0","n1"]}"#),
            &nodes(4),
        )
        .expect_err("2 of 4 is not a minority");
        assert!(err.to_string().contains("minority"), "{err}");
    }

    #[test]
    fn bridge_sees_both_halves() {
        let got = expand(&parse(r#"{"shape":"bridge"}"#), &nodes(5)).expect("ok");
        assert_eq!(got, both_ways(&["n0", "n1"], &["n3", "n4"]));
        assert!(got.iter().all(|(a, b)| a != "n2" && b != "n2"));
        let got = expand(&parse(r#"{"shape":"bridge","bridge":"n0"}"#), &nodes(5)).expect("ok");
        assert_eq!(got, both_ways(&["n1", "n2"], &["n3", "n4"]));
    }

    #[test]
    fn ring_keeps_only_neighbours() {
        let got = expand(&PartitionShape::Ring { among: None }, &nodes(5)).expect("ok");
        // n0's neighbours are n4 and n1; it must not reach n2 or n3.
        for (a, b) in [("n0", "n2"), ("n0", "n3"), ("n2", "n0"), ("n1", "n3")] {
            assert!(got.contains(&(a.into(), b.into())), "{a}->{b}");
        }
        for (a, b) in [("n0", "n1"), ("n0", "n4"), ("n4", "n0"), ("n2", "n3")] {
            assert!(!got.contains(&(a.into(), b.into())), "{a}->{b}");
        }
        // 5 nodes x 2 non-neighbours each.
        assert_eq!(got.len(), 10);
        assert!(expand(&PartitionShape::Ring { among: None }, &nodes(3))
            .expect("ok")
            .is_empty());
    }

    #[test]
    fn one_way_cuts_only_one_direction() {
        let got = expand(
            &parse(r#"{"shape":"one_way","from":["n0"],"to":["n1","n2"]}"#),
            &nodes(3),
        )
        .expect("ok");
        assert_eq!(got, pairs(&[("n0", "n1"), ("n0", "n2")]));
    }

    #[test]
    fn explicit_groups_leave_unlisted_nodes_alone() {
        let got = expand(
            &parse(r#"{"shape":"groups","groups":[["n0","n1"],["n2"]]}"#),
            &nodes(4),
        )
        .expect("ok");
        assert_eq!(got, both_ways(&["n0", "n1"], &["n2"]));
        assert!(got.iter().all(|(a, b)| a != "n3" && b != "n3"));
    }

    #[test]
    fn bad_requests_are_rejected_with_a_reason() {
        let n = nodes(4);
        let cases = [
            (r#"{"shape":"isolate","node":"zz"}"#, "unknown node"),
            (r#"{"shape":"groups","groups":[["n0"]]}"#, "two groups"),
            (
                r#"{"shape":"groups","groups":[["n0"],["n0"]]}"#,
                "more than one",
            ),
            (r#"{"shape":"groups","groups":[["n0"],[]]}"#, "empty"),
            (
                r#"{"shape":"one_way","from":[],"to":["n1"]}"#,
                "at least one",
            ),
            (r#"{"shape":"bridge","bridge":"q"}"#, "unknown node"),
        ];
        for (json, want) in cases {
            let err = expand(&parse(json), &n).expect_err(json).to_string();
            assert!(err.contains(want), "{json}: {err}");
        }
        assert!(expand(
            &PartitionShape::Bridge {
                bridge: None,
                among: None
            },
            &nodes(2)
        )
        .is_err());
        assert!(serde_json::from_str::<PartitionShape>(r#"{"shape":"halves","x":1}"#).is_err());
        assert!(serde_json::from_str::<PartitionShape>(r#"{"shape":"moon"}"#).is_err());
    }

    #[test]
    fn cuts_never_contain_self_pairs() {
        let shapes = [
            PartitionShape::Halves { among: None },
            PartitionShape::Ring { among: None },
            parse(r#"{"shape":"bridge"}"#),
            parse(r#"{"shape":"majority_minority"}"#),
            parse(r#"{"shape":"one_way","from":["n0","n1"],"to":["n1","n2"]}"#),
        ];
        for k in 3..9 {
            for s in &shapes {
                let cuts = expand(s, &nodes(k)).expect("ok");
                assert!(cuts.iter().all(|(a, b)| a != b), "{s:?} on {k}");
            }
        }
    }
}
