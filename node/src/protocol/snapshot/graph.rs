//! The neighbour graph of a bitcake network and its routing: validated
//! (symmetric, connected, no self-loops, no stranger), and the next hop
//! from any node to any other on a shortest path, ties broken to the
//! lowest id so every node routes the same way (seed 004's routing through
//! intermediaries, which the original never built).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A node's id as the cluster file names it.
pub type NodeId = String;

/// Why a neighbour list is not a network.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("the graph has no nodes")]
    Empty,
    #[error("edge {node} -> {node}: a node cannot be its own neighbour")]
    SelfLoop { node: NodeId },
    #[error("edge {from} -> {to}: {to} is not a node of the graph")]
    Stranger { from: NodeId, to: NodeId },
    #[error("edge {from} -> {to} has no edge {to} -> {from}: neighbours are mutual")]
    Asymmetric { from: NodeId, to: NodeId },
    #[error("edge {from} -> {to} is listed twice")]
    Duplicate { from: NodeId, to: NodeId },
    #[error("the graph is not connected: {unreachable:?} cannot be reached from {from}")]
    Disconnected {
        from: NodeId,
        unreachable: Vec<NodeId>,
    },
}

/// A validated, connected, undirected graph with its routing table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Graph {
    adj: BTreeMap<NodeId, BTreeSet<NodeId>>,
    /// (from, to) -> the neighbour of `from` to send through; absent for
    /// `from == to`.
    next: BTreeMap<(NodeId, NodeId), NodeId>,
}

impl Graph {
    /// Validates `neighbours` (every node with its neighbour list).
    pub fn new(neighbours: &BTreeMap<NodeId, Vec<NodeId>>) -> Result<Graph, GraphError> {
        if neighbours.is_empty() {
            return Err(GraphError::Empty);
        }
        let mut adj: BTreeMap<NodeId, BTreeSet<NodeId>> = BTreeMap::new();
        for (node, list) in neighbours {
            let set = adj.entry(node.clone()).or_default();
            for to in list {
                if to == node {
                    return Err(GraphError::SelfLoop { node: node.clone() });
                }
                if !neighbours.contains_key(to) {
                    return Err(GraphError::Stranger {
                        from: node.clone(),
                        to: to.clone(),
                    });
                }
                if !set.insert(to.clone()) {
                    return Err(GraphError::Duplicate {
                        from: node.clone(),
                        to: to.clone(),
                    });
                }
            }
        }
        for (from, set) in &adj {
            for to in set {
                if !adj.get(to).is_some_and(|back| back.contains(from)) {
                    return Err(GraphError::Asymmetric {
                        from: from.clone(),
                        to: to.clone(),
                    });
                }
            }
        }
        let mut g = Graph {
            adj,
            next: BTreeMap::new(),
        };
        let start = g.adj.keys().next().cloned().ok_or(GraphError::Empty)?;
        let reached = g.distances(&start);
        let unreachable: Vec<NodeId> = g
            .adj
            .keys()
            .filter(|n| !reached.contains_key(*n))
            .cloned()
            .collect();
        if !unreachable.is_empty() {
            return Err(GraphError::Disconnected {
                from: start,
                unreachable,
            });
        }
        g.next = g.routes();
        Ok(g)
    }

    /// Hops from `to` to every node (breadth first).
    fn distances(&self, to: &str) -> BTreeMap<NodeId, usize> {
        let mut dist = BTreeMap::new();
        let mut queue = VecDeque::new();
        dist.insert(to.to_string(), 0);
        queue.push_back(to.to_string());
        // Bounded: each node enters the queue once.
        while let Some(n) = queue.pop_front() {
            let d = dist[&n];
            for m in self.neighbours(&n) {
                if !dist.contains_key(m) {
                    dist.insert(m.clone(), d + 1);
                    queue.push_back(m.clone());
                }
            }
        }
        dist
    }

    /// For every destination, each node's next hop: its lowest-id
    /// neighbour one hop closer.
    fn routes(&self) -> BTreeMap<(NodeId, NodeId), NodeId> {
        let mut next = BTreeMap::new();
        for to in self.adj.keys() {
            let dist = self.distances(to);
            for (from, nbs) in &self.adj {
                if from == to {
                    continue;
                }
                let closer = nbs
                    .iter()
                    .find(|m| dist.get(*m).map(|d| d + 1) == dist.get(from).copied());
                let hop = closer.expect("a connected graph has a neighbour one hop closer");
                next.insert((from.clone(), to.clone()), hop.clone());
            }
        }
        next
    }

    pub fn nodes(&self) -> impl Iterator<Item = &NodeId> {
        self.adj.keys()
    }

    pub fn len(&self) -> usize {
        self.adj.len()
    }

    pub fn is_empty(&self) -> bool {
        self.adj.is_empty()
    }

    /// `node`'s neighbours (none for a node not in the graph).
    pub fn neighbours(&self, node: &str) -> impl Iterator<Item = &NodeId> {
        self.adj.get(node).into_iter().flatten()
    }

    pub fn are_neighbours(&self, a: &str, b: &str) -> bool {
        self.adj.get(a).is_some_and(|s| s.contains(b))
    }

    /// Undirected edges.
    pub fn edges(&self) -> usize {
        self.adj.values().map(|s| s.len()).sum::<usize>() / 2
    }

    /// Undirected edges as `(a, b)` with `a < b`, sorted.
    pub fn edge_list(&self) -> Vec<(NodeId, NodeId)> {
        self.adj
            .iter()
            .flat_map(|(a, s)| {
                s.iter()
                    .filter(move |b| a < *b)
                    .map(move |b| (a.clone(), b.clone()))
            })
            .collect()
    }

    /// The neighbour `from` sends through to reach `to` on a shortest path;
    /// `None` if `from == to` or either is not in the graph.
    pub fn next_hop(&self, from: &str, to: &str) -> Option<&NodeId> {
        self.next.get(&(from.to_string(), to.to_string()))
    }
}

/// The seed's network: 7 nodes (`n0`..`n6`), 12 edges; its initiators are
/// `n3` and `n4`.
pub fn seed_neighbours() -> BTreeMap<NodeId, Vec<NodeId>> {
    let edges: [(usize, &[usize]); 7] = [
        (0, &[1, 2, 6]),
        (1, &[0, 2, 3, 5]),
        (2, &[0, 1, 3, 6]),
        (3, &[1, 2, 4, 6]),
        (4, &[3, 5]),
        (5, &[1, 4, 6]),
        (6, &[0, 2, 3, 5]),
    ];
    edges
        .iter()
        .map(|(n, nbs)| {
            (
                format!("n{n}"),
                nbs.iter().map(|m| format!("n{m}")).collect(),
            )
        })
        .collect()
}

/// A connected graph of `n` nodes (`n0`..): a random spanning tree (each
/// node joins one already in) plus `extra` random edges, for benchmarks and
/// simulations of large networks; the same `seed` gives the same graph.
pub fn random_neighbours(n: usize, extra: usize, seed: u64) -> BTreeMap<NodeId, Vec<NodeId>> {
    use rand::{Rng, SeedableRng};
    let rng = &mut rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let name = |i: usize| format!("n{i}");
    let mut adj: BTreeMap<usize, BTreeSet<usize>> = (0..n).map(|i| (i, BTreeSet::new())).collect();
    let link = |adj: &mut BTreeMap<usize, BTreeSet<usize>>, a: usize, b: usize| {
        if a != b {
            adj.entry(a).or_default().insert(b);
            adj.entry(b).or_default().insert(a);
        }
    };
    for i in 1..n {
        let j = rng.random_range(0..i);
        link(&mut adj, i, j);
    }
    // Bounded: at most `extra` tries per wanted edge.
    let mut added = 0;
    for _ in 0..extra.saturating_mul(4) {
        if added == extra || n < 2 {
            break;
        }
        let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
        if a != b && !adj[&a].contains(&b) {
            link(&mut adj, a, b);
            added += 1;
        }
    }
    adj.into_iter()
        .map(|(a, s)| (name(a), s.into_iter().map(name).collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(pairs: &[(&str, &[&str])]) -> Result<Graph, GraphError> {
        Graph::new(
            &pairs
                .iter()
                .map(|(n, nbs)| (n.to_string(), nbs.iter().map(|s| s.to_string()).collect()))
                .collect(),
        )
    }

    #[test]
    fn the_seeds_network_is_valid_with_twelve_edges() {
        let g = Graph::new(&seed_neighbours()).expect("the seed's graph");
        assert_eq!((g.len(), g.edges()), (7, 12));
        assert!(g.are_neighbours("n4", "n5") && g.are_neighbours("n5", "n4"));
        assert!(!g.are_neighbours("n0", "n4"));
    }

    #[test]
    fn bad_graphs_name_the_edge() {
        assert_eq!(
            graph(&[("a", &["a"])]),
            Err(GraphError::SelfLoop { node: "a".into() })
        );
        assert_eq!(
            graph(&[("a", &["b"]), ("b", &[])]),
            Err(GraphError::Asymmetric {
                from: "a".into(),
                to: "b".into()
            })
        );
        assert_eq!(
            graph(&[("a", &["z"])]),
            Err(GraphError::Stranger {
                from: "a".into(),
                to: "z".into()
            })
        );
        assert_eq!(
            graph(&[("a", &["b", "b"]), ("b", &["a"])]),
            Err(GraphError::Duplicate {
                from: "a".into(),
                to: "b".into()
            })
        );
        let e = graph(&[("a", &["b"]), ("b", &["a"]), ("c", &["d"]), ("d", &["c"])])
            .expect_err("two parts");
        assert_eq!(
            e,
            GraphError::Disconnected {
                from: "a".into(),
                unreachable: vec!["c".into(), "d".into()]
            }
        );
        assert!(e.to_string().contains("not connected"), "{e}");
        assert_eq!(graph(&[]), Err(GraphError::Empty));
    }

    #[test]
    fn routes_follow_shortest_paths_and_arrive() {
        let g = Graph::new(&seed_neighbours()).expect("the seed's graph");
        let nodes: Vec<NodeId> = g.nodes().cloned().collect();
        for to in &nodes {
            let dist = g.distances(to);
            for from in &nodes {
                assert_eq!(g.next_hop(from, from), None);
                // Following next hops reaches `to` in exactly its distance,
                // every hop along an edge.
                let mut at = from.clone();
                let mut hops = 0;
                while at != *to {
                    let hop = g.next_hop(&at, to).expect("a route").clone();
                    assert!(g.are_neighbours(&at, &hop), "{at} -> {hop}");
                    at = hop;
                    hops += 1;
                    assert!(hops <= nodes.len(), "a loop from {from} to {to}");
                }
                assert_eq!(hops, dist[from], "{from} -> {to}");
            }
        }
        // Ties go to the lowest id: n0 reaches n3 through n1 (n2 is as close).
        assert_eq!(g.next_hop("n0", "n3").map(String::as_str), Some("n1"));
    }
}
