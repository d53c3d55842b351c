//! `faults-applied`: each fault as configured next to what the scrapes say happened.
//!
//! Measurements come from counters read around the window: the last answered scrape at or
//! before its start and the first at or after its end (counters read from zero if the target
//! was never scraped before). Those spans include some time outside the window, so they
//! measure but never convict. A verdict of `false` needs the scrapes taken inside the window
//! (a quarter-second grace at each end, for clocks and in-flight work) and an effect that is
//! clearly missing where traffic flowed:
//! - packet layer (proxy): a cut, blackholed or drop-1.0 link that forwarded packets; a drop,
//!   duplicate probability that touched none of so many packets that the odds are below 1e-9;
//!   a delay whose measured mean is under a quarter of the configured one over 20+ packets.
//!   `links` pairs are directions `from -> to`, as the proxy labels them.
//! - message layer (node fault rules): a send rule that acts on every match (cut, drop 1.0,
//!   delay) while the node went on sending matching messages it never acted on, or a
//!   probabilistic one that never acted on so many that the odds are below 1e-9 (the send
//!   counter is after the fault layer); a receive rule likewise, when the node injected no
//!   fault at all while matching messages arrived (the receive counter is before the layer).
//!   At least ten matching messages are needed, as a message delayed before the rule was
//!   installed may leave inside the window.
//! - a fault the controller reports it could not apply is unknown (a harness failure).
//! - process layer: a kill or pause whose target answered every scrape inside the window and
//!   did not restart.
//!
//! Faults with nothing to measure (a transform) are listed and not judged.

use super::liveness::label;
use super::scrapes::{gauge, labels_include, Labels, ScrapeIndex, Span, PROXY};
use super::{outcome, rel_ms_json};
use crate::record::{FaultWindow, RunRecord, Scrape};
use crate::results::{CheckOutcome, FaultMeasure, Valid};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const NAME: &str = "faults-applied";
const GRACE_US: u64 = 250_000;
/// Odds below which "never happened" counts as "not applied".
const IMPROBABLE: f64 = 1e-9;
/// Matching messages that must get through a message-layer cut before it is called broken
/// (a message delayed before the cut was installed may still leave inside the window).
const MESSAGE_LEAK: f64 = 10.0;

struct WindowResult {
    /// None: nothing to measure, not judged.
    valid: Option<Valid>,
    why: String,
    measures: Vec<FaultMeasure>,
}

impl WindowResult {
    fn unknown(why: impl Into<String>) -> Self {
        WindowResult {
            valid: Some(Valid::Unknown),
            why: why.into(),
            measures: Vec::new(),
        }
    }
}

/// Judgement of one target of a window.
struct Finding {
    valid: Valid,
    why: String,
}

fn worst(findings: &[Finding]) -> (Valid, String) {
    let valid = findings.iter().fold(Valid::True, |v, f| v.and(f.valid));
    let why = findings
        .iter()
        .find(|f| f.valid == valid)
        .map_or_else(|| "no target".to_string(), |f| f.why.clone());
    (valid, why)
}

/// The part of a window its scrapes can be trusted to be inside of.
fn inner(w: &FaultWindow, end: u64) -> (u64, u64) {
    let len = end.saturating_sub(w.start_us);
    let grace = GRACE_US.min(len / 4);
    (w.start_us.saturating_add(grace), end.saturating_sub(grace))
}

pub(crate) fn check(record: &RunRecord, index: &ScrapeIndex) -> (CheckOutcome, Vec<FaultMeasure>) {
    let meta = &record.meta;
    let mut measures = Vec::new();
    let mut per_window = Vec::new();
    let mut judged: Vec<(Valid, String)> = Vec::new();
    for w in &record.windows {
        let end = w.end_us.unwrap_or(meta.end_us).max(w.start_us);
        let apply_error = w.detail.get("error").and_then(Value::as_str);
        let r = match w.layer.as_str() {
            // A fault the controller failed to apply is its failure, not the system's.
            _ if apply_error.is_some() => WindowResult::unknown(format!(
                "the controller could not apply it: {}",
                apply_error.unwrap_or_default()
            )),
            "packet" => packet(w, end, index, meta.start_us),
            "message" => message(w, end, index, meta.start_us),
            "process" => process(w, end, index, meta.start_us),
            other => WindowResult {
                valid: None,
                why: format!("layer {other:?} is not measured"),
                measures: Vec::new(),
            },
        };
        if let Some(v) = r.valid {
            judged.push((v, format!("{}: {}", label(w), r.why)));
        }
        per_window.push(json!({"window": w.id, "label": label(w), "valid": r.valid,
            "why": r.why}));
        measures.extend(r.measures);
    }
    let valid = judged.iter().fold(Valid::True, |v, (x, _)| v.and(*x));
    let summary = if judged.is_empty() {
        if record.windows.is_empty() {
            "no faults were applied".to_string()
        } else {
            "no fault had anything to measure".to_string()
        }
    } else if valid == Valid::True {
        format!(
            "{} faults measured; each had an effect where traffic flowed",
            judged.len()
        )
    } else {
        judged
            .iter()
            .find(|(v, _)| *v == valid)
            .map(|(_, why)| why.clone())
            .unwrap_or_default()
    };
    (
        outcome(NAME, valid, summary, json!({"windows": per_window})),
        measures,
    )
}

fn pairs(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    let p = p.as_array()?;
                    Some((
                        p.first()?.as_str()?.to_string(),
                        p.get(1)?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn f64_at(v: &Value, path: &[&str]) -> f64 {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_f64)
        .unwrap_or(0.0)
}

/// What one proxy direction did over a span.
struct LinkCounts {
    forwarded: f64,
    duplicated: f64,
    delayed: f64,
    dropped: BTreeMap<String, f64>,
    delay_sum_s: f64,
    delay_count: f64,
}

impl LinkCounts {
    fn read(span: &Span, from: &str, to: &str) -> Self {
        let want = [("from", from), ("to", to)];
        let keep = labels_include(&want);
        LinkCounts {
            forwarded: span.increase("faultline_proxy_forwarded_packets_total", &keep),
            duplicated: span.increase("faultline_proxy_duplicated_packets_total", &keep),
            delayed: span.increase("faultline_proxy_delayed_packets_total", &keep),
            dropped: span.increase_by("faultline_proxy_dropped_packets_total", &keep, "reason"),
            delay_sum_s: span.increase("faultline_proxy_added_delay_seconds_sum", &keep),
            delay_count: span.increase("faultline_proxy_added_delay_seconds_count", &keep),
        }
    }

    fn dropped_total(&self) -> f64 {
        self.dropped.values().sum()
    }

    /// Datagrams that reached the proxy on this direction.
    fn arrived(&self) -> f64 {
        (self.forwarded - self.duplicated).max(0.0) + self.dropped_total()
    }

    fn mean_delay_ms(&self) -> Option<f64> {
        (self.delay_count > 0.0).then(|| self.delay_sum_s / self.delay_count * 1000.0)
    }

    fn json(&self) -> Value {
        let arrived = self.arrived();
        json!({
            "arrived": arrived,
            "forwarded": self.forwarded,
            "dropped": self.dropped,
            "drop_fraction": if arrived > 0.0 { self.dropped_total() / arrived } else { 0.0 },
            "duplicated": self.duplicated,
            "delayed": self.delayed,
            "added_delay_mean_ms": self.mean_delay_ms(),
        })
    }
}

fn span_json(span: &Span, start: u64, counts: Value) -> Value {
    match span.bounds() {
        Some((a, b)) => json!({"from_ms": rel_ms_json(a, start), "to_ms": rel_ms_json(b, start),
                               "counts": counts}),
        None => Value::Null,
    }
}

fn packet(w: &FaultWindow, end: u64, index: &ScrapeIndex, start: u64) -> WindowResult {
    let cuts = w.detail.get("cuts");
    let partition = w.fault == "partition" || cuts.is_some();
    let links = pairs(cuts.or_else(|| w.detail.get("links")));
    if links.is_empty() {
        return WindowResult::unknown("the window names no links");
    }
    let spec = w.detail.get("spec").cloned().unwrap_or(Value::Null);
    let configured = if partition {
        json!({"partition": w.detail.get("shape").cloned().unwrap_or(Value::Null)})
    } else {
        spec.clone()
    };
    let drop_p = f64_at(&spec, &["drop"]);
    let blocks =
        partition || spec.get("blackhole").and_then(Value::as_bool) == Some(true) || drop_p >= 1.0;
    let dup_p = f64_at(&spec, &["duplicate"]);
    let delay_ms = f64_at(&spec, &["delay", "ms"]);

    let around = index.span(PROXY, w.start_us, end);
    if around.scrapes.is_empty() || !around.has_after {
        return WindowResult::unknown("the proxy was not scraped after the window");
    }
    let (a, b) = inner(w, end);
    let inside = Span::inside(index.within(PROXY, a, b));
    let mut findings = Vec::new();
    let mut measures = Vec::new();
    for (from, to) in &links {
        let outer = LinkCounts::read(&around, from, to);
        let dir = [("from", from.as_str()), ("to", to.as_str())];
        let reported = inside.scrapes.first().map(|s| {
            json!({
                "partitioned": gauge(s, "faultline_proxy_partitioned", &dir),
                "drop_probability": gauge(s, "faultline_proxy_configured_drop_probability", &dir),
                "delay_ms": gauge(s, "faultline_proxy_configured_delay_seconds", &dir)
                    .map(|d| d * 1000.0),
                "blackhole": gauge(s, "faultline_proxy_configured_blackhole", &dir),
            })
        });
        let mut finding = Finding {
            valid: Valid::True,
            why: "measured".into(),
        };
        let mut inside_json = Value::Null;
        if inside.scrapes.len() >= 2 {
            let c = LinkCounts::read(&inside, from, to);
            let secs = inside
                .bounds()
                .map_or(0.0, |(x, y)| (y.saturating_sub(x)) as f64 / 1e6);
            let lost = c.dropped.get("loss").copied().unwrap_or(0.0);
            // Packets a partition or blackhole dropped first (another fault on
            // the same direction) never reached the loss stage.
            let dropped_before = ["partition", "blackhole"]
                .iter()
                .map(|r| c.dropped.get(*r).copied().unwrap_or(0.0))
                .sum::<f64>();
            let arrived = (c.arrived() - dropped_before).max(0.0);
            let originals = (c.forwarded - c.duplicated).max(0.0);
            let bad = if blocks && c.forwarded > 0.0 {
                Some(format!(
                    "{from}->{to} forwarded {} packets in {secs:.1} s inside the window while {}",
                    c.forwarded,
                    if partition {
                        "cut"
                    } else {
                        "dropping everything"
                    }
                ))
            } else if !blocks
                && drop_p > 0.0
                && lost == 0.0
                && (1.0 - drop_p).powf(arrived) < IMPROBABLE
            {
                Some(format!(
                    "{from}->{to} dropped none of {arrived} packets at drop probability {drop_p}"
                ))
            } else if dup_p > 0.0
                && c.duplicated == 0.0
                && (1.0 - dup_p).powf(originals) < IMPROBABLE
            {
                Some(format!(
                    "{from}->{to} duplicated none of {originals} packets at probability {dup_p}"
                ))
            } else if delay_ms >= 5.0
                && c.delay_count >= 20.0
                && c.mean_delay_ms().is_some_and(|m| m < 0.25 * delay_ms)
            {
                Some(format!(
                    "{from}->{to} added {:.2} ms on average over {} packets, configured {delay_ms} ms",
                    c.mean_delay_ms().unwrap_or(0.0),
                    c.delay_count
                ))
            } else {
                None
            };
            if let Some(why) = bad {
                finding = Finding {
                    valid: Valid::False,
                    why,
                };
            }
            inside_json = span_json(&inside, start, c.json());
        }
        measures.push(FaultMeasure {
            window: w.id,
            target: format!("{from}->{to}"),
            configured: configured.clone(),
            measured: json!({
                "around_window": span_json(&around, start, outer.json()),
                "inside_window": inside_json,
                "proxy_reported": reported,
            }),
        });
        findings.push(finding);
    }
    let (valid, why) = worst(&findings);
    WindowResult {
        valid: Some(valid),
        why,
        measures,
    }
}

/// A node fault rule, read leniently (missing fields take the node's defaults).
struct Rule {
    id: String,
    from: String,
    to: String,
    kind: String,
    receive: bool,
    cut: bool,
    drop: f64,
    duplicate: f64,
    delays: bool,
    raw: Value,
}

impl Rule {
    fn certain_drop(&self) -> bool {
        self.cut || self.drop >= 1.0
    }

    /// Why the rule clearly did nothing to `n` matching messages that `injected` (by action)
    /// says it never acted on, if it clearly did nothing.
    fn idle(&self, n: f64, injected: &BTreeMap<String, f64>) -> Option<String> {
        let none = |action: &str| injected.get(action).copied().unwrap_or(0.0) == 0.0;
        let improbable = |p: f64| p > 0.0 && (1.0 - p.min(1.0)).powf(n) < IMPROBABLE;
        if n < MESSAGE_LEAK {
            None
        } else if self.certain_drop() {
            Some("cut or dropped with certainty".to_string())
        } else if improbable(self.drop) && none("drop") {
            Some(format!("none dropped at probability {}", self.drop))
        } else if improbable(self.duplicate) && none("duplicate") {
            Some(format!("none duplicated at probability {}", self.duplicate))
        } else if self.delays && none("delay") {
            Some("none delayed".to_string())
        } else {
            None
        }
    }
}

fn rules(detail: &Value) -> Vec<Rule> {
    let Some(list) = detail.get("rules").and_then(Value::as_array) else {
        return Vec::new();
    };
    let s = |r: &Value, k: &str| r.get(k).and_then(Value::as_str).unwrap_or("*").to_string();
    list.iter()
        .enumerate()
        .map(|(i, r)| Rule {
            id: r
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("rule{i}"), str::to_string),
            from: s(r, "from"),
            to: s(r, "to"),
            kind: s(r, "kind"),
            receive: r.get("at").and_then(Value::as_str) == Some("receive"),
            cut: r.get("cut").and_then(Value::as_bool) == Some(true),
            drop: f64_at(r, &["drop"]),
            duplicate: f64_at(r, &["duplicate"]),
            delays: f64_at(r, &["delay_ms"]) > 0.0 || f64_at(r, &["jitter_ms"]) > 0.0,
            raw: r.clone(),
        })
        .collect()
}

fn matches(want: &str, got: Option<&String>) -> bool {
    want == "*" || got.is_some_and(|g| g == want)
}

/// The scrapes of a node inside a window from which its rules were surely in
/// place: a node restarted inside the window comes back with no rules and
/// sends until the controller re-installs them, so only the scrapes after
/// its last restart that show rules installed measure the fault.
fn since_rules_reinstalled(scrapes: Vec<&Scrape>) -> Vec<&Scrape> {
    let started = |s: &Scrape| gauge(s, "faultline_process_start_time_seconds", &[]);
    let Some(restart) = scrapes
        .windows(2)
        .rposition(|p| started(p[0]) != started(p[1]))
        .map(|i| i + 1)
    else {
        return scrapes;
    };
    let from = scrapes[restart..]
        .iter()
        .position(|s| gauge(s, "faultline_fault_rules", &[]).is_some_and(|n| n > 0.0))
        .map_or(scrapes.len(), |i| restart + i);
    scrapes[from..].to_vec()
}

fn message(w: &FaultWindow, end: u64, index: &ScrapeIndex, start: u64) -> WindowResult {
    let rules = rules(&w.detail);
    if rules.is_empty() {
        return WindowResult::unknown("the window lists no rules");
    }
    let (a, b) = inner(w, end);
    let mut findings = Vec::new();
    let mut measures = Vec::new();
    for node in &w.targets {
        let around = index.span(node, w.start_us, end);
        if around.scrapes.is_empty() || !around.has_after {
            findings.push(Finding {
                valid: Valid::Unknown,
                why: format!("{node} was not scraped after the window"),
            });
            continue;
        }
        let inside = Span::inside(since_rules_reinstalled(index.within(node, a, b)));
        let injected_all = inside.increase("faultline_faults_injected_total", &|_| true);
        for rule in &rules {
            let of_rule = |l: &Labels| l.get("rule").is_some_and(|r| *r == rule.id);
            let injected =
                around.increase_by("faultline_faults_injected_total", &of_rule, "action");
            let injected_inside =
                inside.increase_by("faultline_faults_injected_total", &of_rule, "action");
            // Sent messages went through the fault layer (the counter is after it), so with
            // a rule that always acts, any is a leak; received messages are counted before
            // it, so they show only that the layer saw traffic and did nothing at all.
            let mut leak = None;
            if inside.scrapes.len() >= 2 {
                if !rule.receive && (rule.from == "*" || rule.from == *node) {
                    let sent = inside.increase("faultline_messages_sent_total", &|l: &Labels| {
                        let peer = l.get("peer");
                        (if rule.to == "*" {
                            peer.is_some_and(|p| p != node)
                        } else {
                            matches(&rule.to, peer)
                        }) && matches(&rule.kind, l.get("kind"))
                    });
                    leak = rule.idle(sent, &injected_inside).map(|why| {
                        format!(
                            "{node} sent {sent} messages matching rule {} inside the window: {why}",
                            rule.id
                        )
                    });
                } else if rule.receive && (rule.to == "*" || rule.to == *node) {
                    let received =
                        inside.increase("faultline_messages_received_total", &|l: &Labels| {
                            matches(&rule.from, l.get("peer")) && matches(&rule.kind, l.get("kind"))
                        });
                    if injected_all == 0.0 {
                        leak = rule.idle(received, &injected_inside).map(|why| {
                            format!(
                                "{node} received {received} messages matching rule {} and \
                                 injected no fault at all: {why}",
                                rule.id
                            )
                        });
                    }
                }
            }
            findings.push(match leak {
                Some(why) => Finding {
                    valid: Valid::False,
                    why,
                },
                None => Finding {
                    valid: Valid::True,
                    why: "measured".into(),
                },
            });
            measures.push(FaultMeasure {
                window: w.id,
                target: format!("{node} {}", rule.id),
                configured: rule.raw.clone(),
                measured: json!({
                    "around_window": span_json(&around, start, json!({"injected": injected})),
                    "inside_window": if inside.scrapes.len() >= 2 {
                        span_json(&inside, start, json!({"injected": injected_inside}))
                    } else {
                        Value::Null
                    },
                }),
            });
        }
    }
    let (valid, why) = worst(&findings);
    WindowResult {
        valid: Some(valid),
        why,
        measures,
    }
}

fn process(w: &FaultWindow, end: u64, index: &ScrapeIndex, start: u64) -> WindowResult {
    const DOWN: &[&str] = &["kill", "pause", "crash", "stop"];
    if !DOWN.contains(&w.fault.as_str()) {
        return WindowResult {
            valid: None,
            why: format!("{} has no measure", w.fault),
            measures: Vec::new(),
        };
    }
    if w.targets.is_empty() {
        return WindowResult::unknown("the window names no target");
    }
    let (a, b) = inner(w, end);
    let mut findings = Vec::new();
    let mut measures = Vec::new();
    for node in &w.targets {
        let inside: Vec<_> = index
            .all(node)
            .iter()
            .filter(|s| s.t_us >= a && s.t_us <= b)
            .collect();
        let unanswered: Vec<_> = inside.iter().filter(|s| !s.ok).collect();
        let start_time = |s: Option<&&crate::record::Scrape>| {
            s.and_then(|s| gauge(s, "faultline_process_start_time_seconds", &[]))
        };
        let ok = index.ok(node);
        let before = start_time(ok.iter().rev().find(|s| s.t_us <= w.start_us));
        let after = start_time(ok.iter().find(|s| s.t_us >= end));
        let restarted = match (before, after) {
            (Some(x), Some(y)) => Some(x != y),
            _ => None,
        };
        let finding = if !unanswered.is_empty() || restarted == Some(true) {
            Finding {
                valid: Valid::True,
                why: "measured".into(),
            }
        } else if inside.len() >= 2 {
            Finding {
                valid: Valid::False,
                why: format!(
                    "{node} answered all {} scrapes inside the window and did not restart",
                    inside.len()
                ),
            }
        } else {
            Finding {
                valid: Valid::Unknown,
                why: format!(
                    "{node} was scraped {} time(s) inside the window",
                    inside.len()
                ),
            }
        };
        findings.push(finding);
        measures.push(FaultMeasure {
            window: w.id,
            target: node.clone(),
            configured: json!({"fault": w.fault}),
            measured: json!({
                "scrapes_inside": inside.len(),
                "unanswered": unanswered.len(),
                "first_unanswered_ms": unanswered.first().map(|s| rel_ms_json(s.t_us, start)),
                "restarted": restarted,
            }),
        });
    }
    let (valid, why) = worst(&findings);
    WindowResult {
        valid: Some(valid),
        why,
        measures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::fixtures::*;
    use crate::record::Scrape;

    fn proxy(at_ms: u64, forwarded: f64, partition_drops: f64) -> Scrape {
        let d = [("from", "s1"), ("to", "s2")];
        scrape_at(
            at_ms,
            PROXY,
            vec![
                sample("faultline_proxy_forwarded_packets_total", &d, forwarded),
                sample(
                    "faultline_proxy_dropped_packets_total",
                    &[("from", "s1"), ("to", "s2"), ("reason", "partition")],
                    partition_drops,
                ),
            ],
        )
    }

    fn run(rec: &RunRecord) -> (CheckOutcome, Vec<FaultMeasure>) {
        check(rec, &ScrapeIndex::new(&rec.scrapes))
    }

    fn partitioned() -> RunRecord {
        let mut rec = record();
        rec.windows.push(window(
            0,
            "partition",
            "packet",
            &["s1"],
            1_000,
            Some(5_000),
            json!({"shape": {"shape": "isolate", "node": "s1"}, "cuts": [["s1", "s2"]]}),
        ));
        rec
    }

    #[test]
    fn a_cut_link_that_stops_forwarding_is_applied() {
        let mut rec = partitioned();
        rec.scrapes = vec![
            proxy(0, 100.0, 0.0),
            proxy(2_000, 110.0, 50.0),
            proxy(3_000, 110.0, 90.0),
            proxy(4_000, 110.0, 130.0),
            proxy(6_000, 200.0, 140.0),
        ];
        let (c, m) = run(&rec);
        assert_eq!(c.valid, Valid::True, "{}", c.summary);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].target, "s1->s2");
        assert_eq!(m[0].measured["around_window"]["counts"]["forwarded"], 100.0);
        assert_eq!(
            m[0].measured["around_window"]["counts"]["dropped"]["partition"],
            140.0
        );
    }

    /// Proxy scrapes of s1->s2 each second: `per_s` packets arrive, `lost` of them dropped
    /// as loss.
    fn lossy(per_s: f64, lost: f64) -> Vec<Scrape> {
        let d = [("from", "s1"), ("to", "s2")];
        (0..7)
            .map(|i| {
                let n = i as f64;
                scrape_at(
                    i * 1_000,
                    PROXY,
                    vec![
                        sample(
                            "faultline_proxy_forwarded_packets_total",
                            &d,
                            n * (per_s - lost),
                        ),
                        sample(
                            "faultline_proxy_dropped_packets_total",
                            &[("from", "s1"), ("to", "s2"), ("reason", "loss")],
                            n * lost,
                        ),
                    ],
                )
            })
            .collect()
    }

    #[test]
    fn drop_faults_are_judged_by_what_got_through() {
        let with_spec = |spec: Value, scrapes: Vec<Scrape>| {
            let mut rec = record();
            rec.windows.push(window(
                0,
                "drop",
                "packet",
                &["s1"],
                1_000,
                Some(5_000),
                json!({"links": [["s1", "s2"]], "spec": spec}),
            ));
            rec.scrapes = scrapes;
            run(&rec).0.valid
        };
        // Drop everything, and everything was dropped / some got through.
        assert_eq!(
            with_spec(json!({"drop": 1.0}), lossy(100.0, 100.0)),
            Valid::True
        );
        assert_eq!(
            with_spec(json!({"drop": 1.0}), lossy(100.0, 90.0)),
            Valid::False
        );
        // Drop 30%: 200 packets without a single loss is not chance.
        assert_eq!(
            with_spec(json!({"drop": 0.3}), lossy(100.0, 0.0)),
            Valid::False
        );
        assert_eq!(
            with_spec(json!({"drop": 0.3}), lossy(100.0, 25.0)),
            Valid::True
        );
        // Drop 1%: 200 packets without a loss happens.
        assert_eq!(
            with_spec(json!({"drop": 0.01}), lossy(100.0, 0.0)),
            Valid::True
        );
        // Issue 6: a partition on the same direction dropped everything first;
        // the loss fault had nothing to act on.
        let mut cut = lossy(100.0, 0.0);
        for (i, s) in cut.iter_mut().enumerate() {
            s.samples
                .retain(|x| x.name != "faultline_proxy_forwarded_packets_total");
            s.samples.push(sample(
                "faultline_proxy_dropped_packets_total",
                &[("from", "s1"), ("to", "s2"), ("reason", "partition")],
                i as f64 * 100.0,
            ));
        }
        assert_eq!(with_spec(json!({"drop": 0.3}), cut), Valid::True);
    }

    #[test]
    fn a_message_drop_that_never_fired_is_false_and_an_unapplied_fault_unknown() {
        let mut rec = record();
        rec.windows.push(window(
            0,
            "drop",
            "message",
            &["s1"],
            1_000,
            Some(5_000),
            json!({"rules": [{"id": "d", "to": "s2", "drop": 0.5}]}),
        ));
        let node = |i: u64, dropped: f64| {
            scrape_at(
                i * 1_000,
                "s1",
                vec![
                    sample(
                        "faultline_messages_sent_total",
                        &[("peer", "s2"), ("kind", "read")],
                        100.0 * i as f64,
                    ),
                    sample(
                        "faultline_faults_injected_total",
                        &[("rule", "d"), ("action", "drop")],
                        dropped * i as f64,
                    ),
                ],
            )
        };
        rec.scrapes = (0..7).map(|i| node(i, 0.0)).collect();
        assert_eq!(run(&rec).0.valid, Valid::False);
        rec.scrapes = (0..7).map(|i| node(i, 90.0)).collect();
        let (c, m) = run(&rec);
        assert_eq!(c.valid, Valid::True, "{}", c.summary);
        assert_eq!(
            m[0].measured["inside_window"]["counts"]["injected"]["drop"],
            180.0
        );

        rec.windows[0].detail = json!({"error": "node s1 refused the rules"});
        let (c, _) = run(&rec);
        assert_eq!(c.valid, Valid::Unknown);
        assert!(c.summary.contains("could not apply"), "{}", c.summary);
    }

    #[test]
    fn no_scrapes_is_unknown() {
        let (c, _) = run(&partitioned());
        assert_eq!(c.valid, Valid::Unknown);
    }

    #[test]
    fn a_kill_the_target_ignored_is_false() {
        let mut rec = record();
        rec.windows.push(window(
            0,
            "kill",
            "process",
            &["s2"],
            1_000,
            Some(5_000),
            json!({}),
        ));
        let st = |v| vec![sample("faultline_process_start_time_seconds", &[], v)];
        rec.scrapes = (0..7)
            .map(|i| scrape_at(i * 1_000, "s2", st(1.0)))
            .collect();
        assert_eq!(run(&rec).0.valid, Valid::False);

        rec.scrapes[3] = down_at(3_000, "s2");
        assert_eq!(run(&rec).0.valid, Valid::True);

        // Never seen down, but restarted: the kill happened between scrapes.
        rec.scrapes = (0..7)
            .filter(|i| !(2..=4).contains(i))
            .map(|i| scrape_at(i * 1_000, "s2", st(if i < 3 { 1.0 } else { 2.0 })))
            .collect();
        assert_eq!(run(&rec).0.valid, Valid::True);
    }

    #[test]
    fn a_send_cut_that_lets_messages_through_is_false() {
        let mut rec = record();
        rec.windows.push(window(
            0,
            "omission",
            "message",
            &["s1"],
            1_000,
            Some(5_000),
            json!({"rules": [{"id": "cut-s2", "to": "s2", "cut": true}]}),
        ));
        let sent = |v| {
            vec![sample(
                "faultline_messages_sent_total",
                &[("peer", "s2"), ("kind", "write")],
                v,
            )]
        };
        rec.scrapes = (0..7)
            .map(|i| scrape_at(i * 1_000, "s1", sent(100.0 * i as f64)))
            .collect();
        let (c, m) = run(&rec);
        assert_eq!(c.valid, Valid::False, "{}", c.summary);
        assert_eq!(m[0].target, "s1 cut-s2");

        rec.scrapes = (0..7)
            .map(|i| scrape_at(i * 1_000, "s1", sent(100.0 * i.min(1) as f64)))
            .collect();
        assert_eq!(run(&rec).0.valid, Valid::True);
    }
}
