//! The nemesis: applies and heals the faults of a schedule at the three
//! layers. Message faults become rule sets in the nodes' fault layers
//! (`PUT /faults`), packet faults become settings of the proxy (through its
//! control API), process faults become kills, pauses and restarts through
//! the platform, and a system's operation faults (tokens: `transform`) are
//! requests to the target's `/ops`. Every fault set on a node or the proxy
//! carries a lease, so it heals by itself if the controller dies mid-run.

use crate::platform::Platform;
use crate::proxy::{Delay, FaultSpec, JitterDistribution, PartitionShape, Reorder};
use crate::scenario::Scheduled;
use anyhow::{bail, Context};
use faultline_node::api::PutFaults;
use faultline_node::faults::{FaultRule, Reorder as NodeReorder, Side};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Lease margin beyond a fault's planned end.
const LEASE_MARGIN: Duration = Duration::from_secs(20);

/// Message-layer rule sets currently installed, per node and fault id, each
/// with the end of its own lease; a node's rule set is the union, re-sent
/// whole on every change with the lease of the longest-lived fault in it, and
/// re-sent to a node that restarts while its faults hold.
#[derive(Default)]
pub struct Nemesis {
    rules: BTreeMap<String, BTreeMap<usize, (Vec<FaultRule>, Instant)>>,
    /// Open kill and pause windows per (node, fault): a node comes back
    /// only when the last window that holds it down heals.
    held: BTreeMap<(String, &'static str), usize>,
    /// Pauses that did nothing (the node was down), by (fault id, node):
    /// their heal must not resume a pause that did hold.
    skipped: std::collections::BTreeSet<(usize, String)>,
    /// The system's operation faults: the `/ops` body each one sends, made
    /// from the system's typed request.
    op_faults: BTreeMap<String, Value>,
    /// Added to every lease beyond the fault's planned end (`None`: the
    /// default [`LEASE_MARGIN`]).
    margin: Option<Duration>,
    /// How long an operation fault's request may take: the cluster's
    /// operation deadline and a margin.
    op_timeout: Duration,
}

/// A list of strings among the params, if present.
fn strings(params: &Value, key: &str) -> Option<Vec<String>> {
    params.get(key).and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(|k| k.as_str().map(String::from))
            .collect()
    })
}

fn p(params: &Value, key: &str, default: f64) -> f64 {
    params.get(key).and_then(Value::as_f64).unwrap_or(default)
}

impl Nemesis {
    /// A nemesis for a system whose operation faults send these `/ops`
    /// bodies (fault name -> request).
    pub fn new(op_faults: BTreeMap<String, Value>, op_deadline: Duration) -> Self {
        Nemesis {
            op_faults,
            op_timeout: op_deadline + Duration::from_secs(5),
            ..Nemesis::default()
        }
    }

    /// Leases end `margin` after a fault's planned end (a person at a
    /// terminal asks for exactly `--for`).
    pub fn with_margin(mut self, margin: Duration) -> Self {
        self.margin = Some(margin);
        self
    }

    /// Applies `f`; returns the detail recorded in its fault window.
    pub async fn apply<P: Platform>(
        &mut self,
        f: &Scheduled,
        c: &mut P,
        http: &reqwest::Client,
        lease: Duration,
    ) -> anyhow::Result<Value> {
        let lease = lease + self.margin.unwrap_or(LEASE_MARGIN);
        match f.layer.as_str() {
            "message" => {
                let rules = message_rules(f)?;
                let until = Instant::now() + lease;
                for t in &f.targets {
                    self.rules
                        .entry(t.clone())
                        .or_default()
                        .insert(f.id, (rules.clone(), until));
                    self.push(t, c, http).await?;
                }
                Ok(json!({ "rules": rules }))
            }
            "packet" => apply_packet(f, c, lease).await,
            "process" => {
                let mut results = Vec::new();
                for t in &f.targets {
                    match f.fault.as_str() {
                        "kill" => {
                            *self.held.entry((t.clone(), "kill")).or_default() += 1;
                            c.kill(t).await?;
                        }
                        // A pause of a node that is down does nothing: say so.
                        "pause" if !c.is_running(t).await => {
                            self.skipped.insert((f.id, t.clone()));
                            results.push(
                                json!({"node": t, "skipped": "not running, nothing to pause"}),
                            );
                        }
                        "pause" => {
                            *self.held.entry((t.clone(), "pause")).or_default() += 1;
                            c.pause(t).await?;
                        }
                        op => {
                            let Some(body) = self.op_faults.get(op) else {
                                bail!("unknown process fault {op:?}");
                            };
                            let r = http
                                .post(format!("{}/ops", c.admin_url(t)))
                                .bearer_auth(c.secret())
                                .timeout(self.op_timeout.max(Duration::from_secs(15)))
                                .json(body)
                                .send()
                                .await;
                            // The answer is the system's `OpReply`, kept as
                            // the window's evidence.
                            let v = match r {
                                Ok(r) => match r.json::<Value>().await {
                                    Ok(v) => v,
                                    Err(e) => json!({"error": format!("bad answer: {e}")}),
                                },
                                Err(e) => json!({"error": e.to_string()}),
                            };
                            results.push(json!({"node": t, "result": v}));
                        }
                    }
                }
                Ok(json!({ "results": results }))
            }
            other => bail!("unknown layer {other:?}"),
        }
    }

    /// Undoes `f` (kill -> restart, pause -> resume, rules and proxy
    /// settings removed). Operation faults are not undone.
    pub async fn heal<P: Platform>(
        &mut self,
        f: &Scheduled,
        c: &mut P,
        http: &reqwest::Client,
    ) -> anyhow::Result<()> {
        match f.layer.as_str() {
            "message" => {
                for t in &f.targets {
                    if let Some(m) = self.rules.get_mut(t) {
                        m.remove(&f.id);
                    }
                    self.push(t, c, http).await?;
                }
            }
            "packet" => {
                // Only this fault's own partition or link faults: others that
                // overlap it in time keep holding.
                let proxy = c.proxy().context("this platform has no packet proxy")?;
                let name = proxy_name(f);
                if f.fault == "partition" {
                    proxy.heal_partition(Some(&name)).await?;
                } else {
                    for (a, b) in links_of(&f.targets, &c.cluster().ids()) {
                        proxy.clear_faults(Some(&name), &a, &b).await?;
                    }
                }
            }
            "process" => {
                for t in &f.targets {
                    let kind: &'static str = match f.fault.as_str() {
                        "kill" => "kill",
                        "pause" => "pause",
                        _ => continue,
                    };
                    if self.skipped.remove(&(f.id, t.clone())) {
                        continue;
                    }
                    // Another window of the same kind still holds the node.
                    let open = self.held.entry((t.clone(), kind)).or_default();
                    *open = open.saturating_sub(1);
                    if *open > 0 {
                        continue;
                    }
                    match kind {
                        "kill" => {
                            c.start(t).await?;
                            // A pause window still open holds the new process
                            // too (its window says the node is paused).
                            if self.held.get(&(t.clone(), "pause")).is_some_and(|n| *n > 0) {
                                c.pause(t).await?;
                                continue;
                            }
                            // It comes back with no rules; faults still in
                            // their window must hold on it again.
                            self.push_when_up(t, c, http).await?;
                        }
                        "pause" => {
                            c.resume(t).await?;
                            // Pushes while it was paused did not get through.
                            self.push(t, c, http).await?;
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Removes every fault at every layer (quiescence).
    pub async fn heal_all<P: Platform>(
        &mut self,
        c: &mut P,
        http: &reqwest::Client,
    ) -> anyhow::Result<()> {
        if let Some(p) = c.proxy() {
            p.heal_all().await?;
        }
        self.rules.clear();
        self.held.clear();
        self.skipped.clear();
        for id in c.cluster().ids() {
            let _ = http
                .delete(format!("{}/faults", c.admin_url(&id)))
                .bearer_auth(c.secret())
                .timeout(Duration::from_secs(2))
                .send()
                .await;
        }
        c.heal_processes().await
    }

    /// After a restart: pushes the node's rules once its admin API answers,
    /// if it has any. Inline, so no later push can be overtaken by this one;
    /// the wait is bounded (a node that does not come back is reported).
    async fn push_when_up<P: Platform>(
        &self,
        node: &str,
        c: &P,
        http: &reqwest::Client,
    ) -> anyhow::Result<()> {
        if self.rules.get(node).is_none_or(|m| m.is_empty()) {
            return Ok(());
        }
        let t0 = Instant::now();
        while !self.push(node, c, http).await? {
            if t0.elapsed() > Duration::from_secs(5) {
                bail!("{node} restarted but did not take its fault rules within 5 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Sends `node` the union of its rules, leased until the last of them
    /// ends. Returns whether the node answered (a node that is down cannot
    /// take rules; that is not an error of the run).
    async fn push<P: Platform>(
        &self,
        node: &str,
        c: &P,
        http: &reqwest::Client,
    ) -> anyhow::Result<bool> {
        let (rules, lease) = self.rule_set(node, Instant::now());
        let url = format!("{}/faults", c.admin_url(node));
        let req = if rules.is_empty() {
            http.delete(url)
        } else {
            http.put(url).json(&PutFaults {
                rules,
                lease_ms: Some(lease.as_millis() as u64),
                seed: None,
            })
        };
        match req
            .bearer_auth(c.secret())
            .timeout(Duration::from_secs(2))
            .send()
            .await
        {
            Ok(r) if r.status().is_client_error() => {
                let body = r.text().await.unwrap_or_default();
                bail!("{node} refused the fault rules: {body}");
            }
            Ok(r) => Ok(r.status().is_success()),
            Err(_) => Ok(false),
        }
    }

    /// The rules `node` must hold now and their lease: the union of its
    /// faults' rules, until the last of them ends (at least 1 ms).
    fn rule_set(&self, node: &str, now: Instant) -> (Vec<FaultRule>, Duration) {
        let mine = self.rules.get(node);
        let rules = mine
            .map(|m| m.values().flat_map(|(r, _)| r.iter().cloned()).collect())
            .unwrap_or_default();
        let lease = mine
            .and_then(|m| m.values().map(|(_, until)| *until).max())
            .map_or(Duration::ZERO, |u| u.saturating_duration_since(now))
            .max(Duration::from_millis(1));
        (rules, lease)
    }
}

/// The params each fault takes (partition shapes are checked by their own
/// type); anything else is a typo the run would silently ignore.
fn known_params(fault: &str) -> Option<&'static [&'static str]> {
    Some(match fault {
        "omission" => &["p", "kinds"],
        "drop" | "duplicate" => &["p", "kinds", "to"],
        "delay" => &["ms", "jitter_ms", "kinds", "to"],
        "reorder" => &["window", "hold_ms", "kinds", "to"],
        "cut" => &["kinds", "to"],
        "packet_loss" | "packet_duplicate" => &["p"],
        "burst_loss" => &["p_enter_bad", "p_leave_bad", "loss_bad", "loss_good"],
        "packet_delay" => &["ms", "jitter_ms", "distribution"],
        "packet_reorder" => &["window", "hold_ms"],
        "bandwidth" => &["bytes_per_sec"],
        "blackhole" | "kill" | "pause" => &[],
        // A system's operation faults take none either.
        _ => return None,
    })
}

/// Checks one scheduled fault's params when the scenario is loaded, through
/// the same conversions `apply` uses, so that a fault the nodes or the proxy
/// would refuse mid-run is refused before anything starts.
pub fn check_params(
    f: &Scheduled,
    ids: &[String],
    servers: &[String],
    message_kinds: &[&str],
) -> Result<(), String> {
    if let (Some(known), Some(m)) = (known_params(&f.fault), f.params.as_object()) {
        if let Some(k) = m.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(format!(
                "unknown param {k:?} (this fault takes: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        }
        for (k, v) in m {
            let text = matches!(k.as_str(), "kinds" | "to" | "distribution");
            if !text && !v.as_f64().is_some_and(f64::is_finite) {
                return Err(format!("{k}: {v} is not a number"));
            }
        }
    }
    let id_set: std::collections::HashSet<String> = ids.iter().cloned().collect();
    match f.layer.as_str() {
        "message" => {
            for rule in message_rules(f).map_err(|e| e.to_string())? {
                rule.validate(&id_set, message_kinds)?;
            }
        }
        "packet" if f.fault == "partition" => {
            let shape = partition_shape(f, ids, servers).map_err(|e| format!("{e:#}"))?;
            crate::proxy::expand(&shape, ids).map_err(|e| e.to_string())?;
        }
        "packet" => {
            packet_spec(f)
                .map_err(|e| format!("{e:#}"))?
                .validate()
                .map_err(|e| e.to_string())?;
        }
        _ => {}
    }
    Ok(())
}

/// The node fault rules of a message-layer fault.
pub(crate) fn message_rules(f: &Scheduled) -> anyhow::Result<Vec<FaultRule>> {
    let pr = &f.params;
    let kinds = strings(pr, "kinds").unwrap_or_else(|| vec!["*".into()]);
    // Optional destinations for send-side faults; all peers by default.
    let dests = strings(pr, "to").unwrap_or_else(|| vec!["*".into()]);
    let mut rules = Vec::new();
    for kind in &kinds {
        for to in &dests {
            let mut more = send_rules(f, kind, to)?;
            rules.append(&mut more);
        }
    }
    Ok(rules)
}

fn send_rules(f: &Scheduled, kind: &str, to: &str) -> anyhow::Result<Vec<FaultRule>> {
    let pr = &f.params;
    let rule = |name: &str| FaultRule {
        id: Some(format!("nemesis{}-{name}", f.id)),
        from: "*".into(),
        to: to.into(),
        kind: kind.into(),
        at: Side::Send,
        drop: 0.0,
        duplicate: 0.0,
        delay_ms: 0.0,
        jitter_ms: 0.0,
        reorder: None,
        cut: false,
    };
    Ok(match f.fault.as_str() {
        "omission" => {
            let pv = p(pr, "p", 1.0);
            vec![
                FaultRule {
                    to: "*".into(),
                    drop: pv,
                    ..rule("out")
                },
                FaultRule {
                    to: "*".into(),
                    at: Side::Receive,
                    drop: pv,
                    ..rule("in")
                },
            ]
        }
        "drop" => vec![FaultRule {
            drop: p(pr, "p", 0.5),
            ..rule("drop")
        }],
        "delay" => vec![FaultRule {
            delay_ms: p(pr, "ms", 50.0),
            jitter_ms: p(pr, "jitter_ms", 0.0),
            ..rule("delay")
        }],
        "duplicate" => vec![FaultRule {
            duplicate: p(pr, "p", 0.5),
            ..rule("dup")
        }],
        "reorder" => vec![FaultRule {
            reorder: Some(NodeReorder {
                window: p(pr, "window", 8.0) as usize,
                max_hold_ms: p(pr, "hold_ms", 50.0) as u64,
            }),
            ..rule("reorder")
        }],
        "cut" => {
            if to == "*" {
                bail!("fault {}: cut needs params.to (the peers to cut off)", f.id);
            }
            vec![FaultRule {
                cut: true,
                ..rule(&format!("cut-{to}"))
            }]
        }
        other => bail!("unknown message fault {other:?}"),
    })
}

/// The name a scheduled fault's proxy settings go under, so that faults
/// overlapping in time compose and each heals only itself.
fn proxy_name(f: &Scheduled) -> String {
    format!("nemesis-{}", f.id)
}

/// Every directed link touching one of `targets`.
pub(crate) fn links_of(targets: &[String], ids: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for t in targets {
        for o in ids {
            if o != t {
                out.push((t.clone(), o.clone()));
                out.push((o.clone(), t.clone()));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

pub(crate) fn packet_spec(f: &Scheduled) -> anyhow::Result<FaultSpec> {
    let pr = &f.params;
    let mut spec = FaultSpec::default();
    match f.fault.as_str() {
        "packet_loss" => spec.drop = p(pr, "p", 0.3),
        "burst_loss" => {
            spec.burst = Some(serde_json::from_value(json!({
                "p_enter_bad": p(pr, "p_enter_bad", 0.05),
                "p_leave_bad": p(pr, "p_leave_bad", 0.3),
                "loss_bad": p(pr, "loss_bad", 1.0),
                "loss_good": p(pr, "loss_good", 0.0),
            }))?)
        }
        "packet_delay" => {
            let distribution: JitterDistribution = serde_json::from_value(
                pr.get("distribution").cloned().unwrap_or(json!("uniform")),
            )?;
            spec.delay = Some(Delay {
                ms: p(pr, "ms", 20.0),
                jitter_ms: p(pr, "jitter_ms", 0.0),
                distribution,
            });
        }
        "packet_duplicate" => spec.duplicate = p(pr, "p", 0.2),
        "packet_reorder" => {
            spec.reorder = Some(serde_json::from_value::<Reorder>(json!({
                "window": p(pr, "window", 4.0) as u64,
                "max_hold_ms": p(pr, "hold_ms", 20.0) as u64,
            }))?)
        }
        "bandwidth" => {
            spec.bandwidth = Some(serde_json::from_value(json!({
                "bytes_per_sec": p(pr, "bytes_per_sec", 125_000.0) as u64,
            }))?)
        }
        "blackhole" => spec.blackhole = true,
        other => bail!("unknown packet fault {other:?}"),
    }
    Ok(spec)
}

async fn apply_packet<P: Platform>(
    f: &Scheduled,
    c: &mut P,
    lease: Duration,
) -> anyhow::Result<Value> {
    let ids = c.cluster().ids();
    let proxy = c.proxy().context("this platform has no packet proxy")?;
    if f.fault == "partition" {
        let shape = partition_shape(f, &ids, &c.cluster().servers())?;
        let cuts: Vec<[String; 2]> = proxy
            .partition(Some(&proxy_name(f)), &shape, Some(lease))
            .await?
            .blocked
            .into_iter()
            .map(|p| [p.from, p.to])
            .collect();
        return Ok(json!({"shape": shape, "cuts": cuts}));
    }
    let spec = packet_spec(f)?;
    let links = links_of(&f.targets, &ids);
    for (a, b) in &links {
        proxy
            .set_faults(Some(&proxy_name(f)), a, b, &spec, Some(lease))
            .await?;
    }
    Ok(json!({"links": links, "spec": spec}))
}

/// The proxy shape of a partition fault. `halves`, `ring` and `bridge` split
/// the servers unless the params say `among`: clients keep their links, as
/// Jepsen's shapes are over the replicas.
pub(crate) fn partition_shape(
    f: &Scheduled,
    ids: &[String],
    servers: &[String],
) -> anyhow::Result<PartitionShape> {
    let shape = f
        .params
        .get("shape")
        .and_then(Value::as_str)
        .unwrap_or("isolate_group");
    let rest = |group: &[String]| -> Vec<String> {
        ids.iter().filter(|i| !group.contains(i)).cloned().collect()
    };
    Ok(match shape {
        "isolate_group" => PartitionShape::Groups {
            groups: vec![f.targets.clone(), rest(&f.targets)],
        },
        "isolate" => PartitionShape::Isolate {
            node: f
                .targets
                .first()
                .cloned()
                .context("isolate needs a target")?,
        },
        "one_way" => PartitionShape::OneWay {
            from: f.targets.clone(),
            to: f
                .params
                .get("to")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_else(|| rest(&f.targets)),
        },
        _ => {
            let mut params = f.params.clone();
            if matches!(shape, "halves" | "ring" | "bridge") && params.get("among").is_none() {
                params["among"] = json!(servers);
            }
            serde_json::from_value(params)
                .with_context(|| format!("bad partition params {}", f.params))?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::ProxyClient;
    use faultline_node::config::{self, Certs, Cluster};

    /// A platform that only records what the nemesis asked of it.
    struct Fake {
        cluster: Cluster,
        running: std::collections::BTreeSet<String>,
        paused: std::collections::BTreeSet<String>,
        calls: Vec<String>,
    }

    impl Fake {
        fn new() -> Self {
            let text =
                "system: tokens\nsecret: a-long-enough-secret\ntls: { dir: certs }\nnodes:\n\
                - { id: s1, role: server, listen: 127.0.0.1:1, admin: 127.0.0.1:2 }\n\
                - { id: s2, role: server, listen: 127.0.0.1:3, admin: 127.0.0.1:4 }\n\
                - { id: s3, role: server, listen: 127.0.0.1:5, admin: 127.0.0.1:6 }\n\
                - { id: c1, role: client, listen: 127.0.0.1:7, admin: 127.0.0.1:8 }\n";
            let cluster = config::parse(std::path::Path::new("fake.yaml"), text, Certs::NotYet)
                .expect("a valid cluster");
            Fake {
                running: cluster.ids().into_iter().collect(),
                paused: Default::default(),
                calls: Vec::new(),
                cluster,
            }
        }
    }

    impl Platform for Fake {
        fn cluster(&self) -> &Cluster {
            &self.cluster
        }
        fn admin_url(&self, _: &str) -> String {
            // Nothing listens there: pushes of rules find the node down.
            "http://127.0.0.1:9".into()
        }
        fn proxy(&self) -> Option<&ProxyClient> {
            None
        }
        async fn start(&mut self, id: &str) -> anyhow::Result<()> {
            self.calls.push(format!("start {id}"));
            self.running.insert(id.into());
            Ok(())
        }
        async fn kill(&mut self, id: &str) -> anyhow::Result<()> {
            self.calls.push(format!("kill {id}"));
            self.running.remove(id);
            self.paused.remove(id);
            Ok(())
        }
        async fn pause(&mut self, id: &str) -> anyhow::Result<()> {
            self.calls.push(format!("pause {id}"));
            self.paused.insert(id.into());
            Ok(())
        }
        async fn resume(&mut self, id: &str) -> anyhow::Result<()> {
            self.calls.push(format!("resume {id}"));
            self.paused.remove(id);
            Ok(())
        }
        async fn is_running(&mut self, id: &str) -> bool {
            self.running.contains(id)
        }
        async fn heal_processes(&mut self) -> anyhow::Result<()> {
            self.calls.push("heal".into());
            Ok(())
        }
        async fn down(&mut self) {}
    }

    fn fault(id: usize, fault: &str, targets: &[&str]) -> Scheduled {
        Scheduled {
            id,
            entry: id,
            at_ms: 0,
            for_ms: Some(1000),
            fault: fault.into(),
            layer: crate::scenario::default_layer(fault).into(),
            targets: targets.iter().map(|t| t.to_string()).collect(),
            resolve: None,
            params: Value::Null,
            in_model: true,
        }
    }

    /// Overlapping kills of one node restart it only when the last heals; a
    /// pause of a node that is down is skipped and says so; a platform
    /// without a proxy refuses packet faults instead of ignoring them.
    #[tokio::test]
    async fn process_faults_go_through_the_platform() {
        let mut p = Fake::new();
        let http = reqwest::Client::new();
        let mut n = Nemesis::default();
        let lease = Duration::from_secs(1);
        let (k1, k2) = (fault(1, "kill", &["s2"]), fault(2, "kill", &["s2"]));
        n.apply(&k1, &mut p, &http, lease).await.expect("kill");
        n.apply(&k2, &mut p, &http, lease)
            .await
            .expect("kill again");
        let d = n
            .apply(&fault(3, "pause", &["s2"]), &mut p, &http, lease)
            .await
            .expect("pause");
        assert!(d["results"][0]["skipped"].is_string(), "{d}");
        let skipped = fault(3, "pause", &["s2"]);
        n.heal(&k1, &mut p, &http).await.expect("heal one");
        assert!(!p.running.contains("s2"), "the second kill still holds");
        n.heal(&k2, &mut p, &http).await.expect("heal two");
        assert!(p.running.contains("s2"));
        assert_eq!(p.calls, ["kill s2", "kill s2", "start s2"]);

        // A real pause, then the skipped one heals: the real one still holds.
        let real = fault(6, "pause", &["s2"]);
        n.apply(&real, &mut p, &http, lease).await.expect("pause");
        n.heal(&skipped, &mut p, &http).await.expect("heal skipped");
        assert!(
            p.paused.contains("s2"),
            "a skipped pause resumed a real one"
        );
        // A kill inside the pause: the restarted node is paused again.
        let k3 = fault(7, "kill", &["s2"]);
        n.apply(&k3, &mut p, &http, lease).await.expect("kill");
        n.heal(&k3, &mut p, &http).await.expect("heal kill");
        assert!(p.running.contains("s2") && p.paused.contains("s2"));
        n.heal(&real, &mut p, &http).await.expect("heal pause");
        assert!(!p.paused.contains("s2"));
        p.calls.clear();

        let e = n
            .apply(&fault(4, "packet_loss", &["s1"]), &mut p, &http, lease)
            .await
            .expect_err("no proxy");
        assert!(e.to_string().contains("no packet proxy"), "{e}");
        let e = n
            .apply(&fault(5, "explode", &["s1"]), &mut p, &http, lease)
            .await
            .expect_err("not a fault");
        assert!(e.to_string().contains("unknown process fault"), "{e}");

        n.heal_all(&mut p, &http).await.expect("heal all");
        assert_eq!(p.calls.last().map(String::as_str), Some("heal"));
    }

    /// Issue 6: healing a short fault re-sent the remaining rules with a
    /// fixed 60 s lease, so a longer fault expired early on the node.
    #[test]
    fn the_rules_left_keep_the_longest_lease() {
        let now = Instant::now();
        let mut n = Nemesis::default();
        let long = now + Duration::from_secs(95);
        let short = now + Duration::from_secs(26);
        let m = n.rules.entry("s3".into()).or_default();
        let named = |id: &str| FaultRule {
            id: Some(id.into()),
            ..serde_json::from_value(json!({})).expect("every field has a default")
        };
        m.insert(0, (vec![named("omission")], long));
        m.insert(1, (vec![named("delay")], short));
        let (rules, lease) = n.rule_set("s3", now);
        assert_eq!((rules.len(), lease), (2, Duration::from_secs(95)));
        // The short fault heals: the omission keeps its own lease.
        n.rules.get_mut("s3").map(|m| m.remove(&1));
        let (rules, lease) = n.rule_set("s3", now + Duration::from_secs(26));
        assert_eq!(rules, vec![named("omission")]);
        assert_eq!(lease, Duration::from_secs(69));
        assert_eq!(n.rule_set("s9", now).0.len(), 0);
    }
}
