//! The `snapshot:` section of a cluster file and its validation into
//! [`Params`]: the neighbour graph (symmetric, connected, no self-loops;
//! an error names the edge), the money each node starts with, the
//! initiators, the burst's size, and each node's script (a file, as the
//! seed's `servent{i}_in.txt`, or lines in the cluster file).

use super::graph::{Graph, NodeId};
use super::script::Command;
use super::{Bugs, Params};
use crate::config::{Cluster, ConfigError, Ctx, Range};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A node's script: a file (relative to the cluster file) or its lines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Script {
    File(String),
    Lines(Vec<String>),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotSection {
    /// Bitcakes every node starts with.
    pub initial: u64,
    /// The nodes that may start snapshots.
    pub initiators: Vec<NodeId>,
    /// Every node with its neighbours (each edge written at both ends).
    pub neighbours: BTreeMap<NodeId, Vec<NodeId>>,
    /// Transactions a `burst` sends to each neighbour.
    pub burst: u32,
    /// A burst's amounts are 1 to this.
    pub burst_max: u64,
    /// Transaction events each node keeps for the checks.
    pub events_keep: u64,
    pub scripts: BTreeMap<NodeId, Script>,
    pub bugs: Bugs,
}

impl Default for SnapshotSection {
    fn default() -> Self {
        SnapshotSection {
            initial: 1_000,
            initiators: Vec::new(),
            neighbours: BTreeMap::new(),
            burst: 50,
            burst_max: 10,
            events_keep: 1_000_000,
            scripts: BTreeMap::new(),
            bugs: Bugs::default(),
        }
    }
}

pub(super) fn params(
    ctx: &Ctx,
    cluster: &Cluster,
    s: SnapshotSection,
) -> Result<Params, ConfigError> {
    let d = SnapshotSection::default();
    let ranges = [
        Range::new(
            "snapshot.initial",
            s.initial,
            1,
            1 << 40,
            d.initial,
            "bitcakes",
        ),
        Range::new(
            "snapshot.burst",
            s.burst as u64,
            1,
            10_000,
            d.burst as u64,
            "transactions per neighbour",
        ),
        Range::new(
            "snapshot.burst_max",
            s.burst_max,
            1,
            1 << 30,
            d.burst_max,
            "bitcakes",
        ),
        Range::new(
            "snapshot.events_keep",
            s.events_keep,
            1,
            100_000_000,
            d.events_keep,
            "events",
        ),
    ];
    ranges.iter().try_for_each(|r| r.check(ctx))?;
    let nodes = cluster.with_role("node");
    for n in &nodes {
        if !s.neighbours.contains_key(n) {
            return Err(ctx.err(
                "snapshot.neighbours",
                format!("node {n} has no neighbour list"),
                format!("add `{n}: [..]` under snapshot.neighbours"),
            ));
        }
    }
    for n in s.neighbours.keys() {
        if !nodes.contains(n) {
            return Err(ctx.err(
                "snapshot.neighbours",
                format!("{n} has a neighbour list but is not a node of the file"),
                "list it under nodes: with role: node, or remove its list",
            ));
        }
    }
    let graph = Graph::new(&s.neighbours).map_err(|e| {
        ctx.err(
            "snapshot.neighbours",
            e.to_string(),
            "write each edge at both of its ends, between two different nodes, all connected",
        )
    })?;
    if s.initiators.is_empty() {
        return Err(ctx.err(
            "snapshot.initiators",
            "no initiator: no snapshot could ever start",
            "name at least one node, e.g. initiators: [n3, n4]",
        ));
    }
    for i in &s.initiators {
        if !nodes.contains(i) {
            return Err(ctx.err(
                "snapshot.initiators",
                format!("initiator {i} is not a node of the file"),
                format!("use one of {}", nodes.join(", ")),
            ));
        }
    }
    let mut scripts = BTreeMap::new();
    for (n, script) in &s.scripts {
        let field = format!("snapshot.scripts.{n}");
        if !nodes.contains(n) {
            return Err(ctx.err(
                &field,
                format!("{n} is not a node of the file"),
                format!("use one of {}", nodes.join(", ")),
            ));
        }
        let (text, what) = match script {
            Script::Lines(lines) => (lines.join("\n"), "the lines".to_string()),
            Script::File(path) => {
                let p = cluster.base_dir().join(path);
                let text = std::fs::read_to_string(&p).map_err(|e| {
                    ctx.err(
                        &field,
                        format!("cannot read script {}: {e}", p.display()),
                        "give a path relative to the cluster file, or the lines themselves",
                    )
                })?;
                (text, p.display().to_string())
            }
        };
        let commands = Command::parse_script(&text)
            .map_err(|e| ctx.err(&field, format!("{what}: {e}"), "fix the script"))?;
        for c in &commands {
            if let Command::Transfer { to, .. } = c {
                if !nodes.contains(to) || to == n {
                    return Err(ctx.err(
                        &field,
                        format!("{n}'s script transfers to {to}, not another node of the network"),
                        format!("use one of {}", nodes.join(", ")),
                    ));
                }
            }
        }
        scripts.insert(n.clone(), commands);
    }
    let mut p = Params::new(graph, s.initiators);
    p.initial = s.initial;
    p.burst = s.burst;
    p.burst_max = s.burst_max;
    p.events_keep = s.events_keep as usize;
    p.scripts = scripts;
    p.bugs = s.bugs;
    Ok(p)
}

pub(super) fn describe(p: &Params) -> String {
    format!(
        "  snapshot: {} nodes, {} edges, {} bitcakes each ({} in all); initiators {}\n  scripts for {}\n",
        p.graph.len(),
        p.graph.edges(),
        p.initial,
        p.total(),
        p.initiators.join(", "),
        if p.scripts.is_empty() {
            "no node".to_string()
        } else {
            p.scripts.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::super::Params;
    use crate::config::{parse, Certs};

    fn file(snapshot: &str) -> String {
        format!(
            "system: snapshot\nsecret: a-long-enough-secret\ntls:\n  dir: certs\ndata_dir: data\nsnapshot:\n{snapshot}nodes:\n  - {{ id: a, role: node, listen: 127.0.0.1:1, admin: 127.0.0.1:2 }}\n  - {{ id: b, role: node, listen: 127.0.0.1:3, admin: 127.0.0.1:4 }}\n  - {{ id: c, role: node, listen: 127.0.0.1:5, admin: 127.0.0.1:6 }}\n"
        )
    }

    fn params(dir: &std::path::Path, snapshot: &str) -> Result<std::sync::Arc<Params>, String> {
        let path = dir.join("cluster.yaml");
        let cluster = parse(&path, &file(snapshot), Certs::NotYet).map_err(|e| e.to_string())?;
        cluster
            .params::<Params>()
            .ok_or_else(|| "no snapshot parameters".to_string())
    }

    const LINE: &str = "  initiators: [a]\n  neighbours: { a: [b], b: [a, c], c: [b] }\n";

    #[test]
    fn a_bad_graph_is_refused_naming_the_edge() {
        let dir = std::env::temp_dir().join(format!("fl-snap-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch");
        let p = params(&dir, LINE).expect("a line of three");
        assert_eq!((p.graph.len(), p.graph.edges()), (3, 2));
        assert_eq!(p.graph.next_hop("a", "c").map(String::as_str), Some("b"));
        for (bad, want) in [
            (
                "  initiators: [a]\n  neighbours: { a: [b], b: [c], c: [b] }\n",
                "edge a -> b has no edge b -> a",
            ),
            (
                "  initiators: [a]\n  neighbours: { a: [a, b], b: [a, c], c: [b] }\n",
                "edge a -> a",
            ),
            (
                "  initiators: [a]\n  neighbours: { a: [b], b: [a], c: [] }\n",
                "not connected",
            ),
            (
                "  initiators: [a]\n  neighbours: { a: [b], b: [a, c] }\n",
                "node c has no neighbour list",
            ),
            (
                "  initiators: [z]\n  neighbours: { a: [b], b: [a, c], c: [b] }\n",
                "initiator z",
            ),
            (
                "  neighbours: { a: [b], b: [a, c], c: [b] }\n",
                "no initiator",
            ),
            (&format!("{LINE}  initial: 0\n"), "snapshot.initial"),
        ] {
            let e = params(&dir, bad).expect_err(bad);
            assert!(e.contains(want), "{bad}: {e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn scripts_come_from_files_beside_the_cluster_file_or_from_lines() {
        let dir = std::env::temp_dir().join(format!("fl-snap-script-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("s")).expect("scratch");
        std::fs::write(dir.join("s/a.txt"), "pause 100\nbitcake_info\n").expect("script");
        let p = params(
            &dir,
            &format!("{LINE}  scripts: {{ a: s/a.txt, b: [burst, \"transfer a 5\"] }}\n"),
        )
        .expect("scripts");
        assert_eq!(p.scripts["a"].len(), 2);
        assert_eq!(p.scripts["b"].len(), 2);
        std::fs::write(dir.join("s/a.txt"), "pause 100\nstop\n").expect("script");
        let e = params(&dir, &format!("{LINE}  scripts: {{ a: s/a.txt }}\n")).expect_err("stop");
        assert!(e.contains("line 2") && e.contains("not a command"), "{e}");
        let e =
            params(&dir, &format!("{LINE}  scripts: {{ a: s/none.txt }}\n")).expect_err("missing");
        assert!(e.contains("cannot read script"), "{e}");
        let e = params(
            &dir,
            &format!("{LINE}  scripts: {{ a: [\"transfer a 5\"] }}\n"),
        )
        .expect_err("to itself");
        assert!(e.contains("transfers to a"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
