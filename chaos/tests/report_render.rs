//! The report renderer on a realistic run and on degenerate ones: the files
//! are written, the page and the JUnit file are well-formed and escaped, and
//! nothing produces NaN.
//!
//! Set `FAULTLINE_SAMPLE_REPORT=/some/file.html` to also keep the sample page.

use faultline_chaos::record::FaultWindow;
use faultline_chaos::report::{self, render_html, render_junit, summary, write_all};
use faultline_chaos::results::{
    Availability, CheckOutcome, Counts, FaultMeasure, Quantiles, Results, Stats, TimePoint,
    Timeline, Valid,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;

const START_US: u64 = 1_700_000_000_000_000;

fn window(
    id: usize,
    fault: &str,
    layer: &str,
    targets: &[&str],
    s: f64,
    e: Option<f64>,
    in_model: bool,
) -> FaultWindow {
    FaultWindow {
        id,
        fault: fault.into(),
        layer: layer.into(),
        targets: targets.iter().map(|t| t.to_string()).collect(),
        start_us: START_US + (s * 1e6) as u64,
        end_us: e.map(|e| START_US + (e * 1e6) as u64),
        in_model,
        detail: json!({"note": format!("{fault} configured")}),
    }
}

fn check(name: &str, valid: Valid, summary: &str, evidence: serde_json::Value) -> CheckOutcome {
    CheckOutcome {
        name: name.into(),
        valid,
        summary: summary.into(),
        evidence,
        took_ms: 0.0,
    }
}

fn counts(ok: u64, failed: u64, unknown: u64) -> Counts {
    Counts {
        ok,
        failed,
        unknown,
    }
}

fn availability(
    window: Option<usize>,
    label: &str,
    s: f64,
    e: f64,
    ops: u64,
    ok: u64,
) -> Availability {
    Availability {
        window,
        label: label.into(),
        start_s: s,
        end_s: e,
        ops,
        ok,
        spanned: 0,
        fraction: if ops == 0 {
            1.0
        } else {
            ok as f64 / ops as f64
        },
    }
}

fn sample() -> Results {
    let checks = vec![
        check(
            "quiescent-state",
            Valid::True,
            "3 servers agree on 8 tokens",
            json!({"nodes": 3, "tokens": 8}),
        ),
        check(
            "linearizable",
            Valid::False,
            "token 3: no linearization of \"transfer\" <after> heal & 2 reads",
            json!({
                "token": 3,
                "ops": [{"f": "transfer", "value": "<a & b>", "note": "say \"hi\" & 'bye'"}],
                "nested": {"deep": {"cmp": "1 < 2 > 0"}},
            }),
        ),
        check(
            "liveness",
            Valid::Unknown,
            "no in-model fault healed before the end",
            json!({"bound_ms": 2000}),
        ),
        check(
            "versions-monotonic",
            Valid::True,
            "versions never went back",
            serde_json::Value::Null,
        ),
        check(
            "faults-applied",
            Valid::True,
            "3 of 3 faults measured",
            json!({"windows": 3}),
        ),
    ];
    let in_partition = |t: f64| (5.0..12.0).contains(&t);
    let points = (0..30)
        .map(|i| {
            let t = f64::from(i);
            let ok = if t == 8.0 {
                0.0
            } else if in_partition(t) {
                60.0
            } else if (15.0..20.0).contains(&t) {
                120.0
            } else {
                200.0 + f64::from(i % 4) * 5.0
            };
            TimePoint {
                t_s: t,
                ok_per_s: ok,
                failed_per_s: if in_partition(t) { 15.0 } else { 0.0 },
                unknown_per_s: if in_partition(t) { 5.0 } else { 0.0 },
                p50_ms: if ok == 0.0 {
                    0.0
                } else if t >= 24.0 {
                    52.0
                } else {
                    1.2
                },
                p99_ms: if ok == 0.0 {
                    0.0
                } else if in_partition(t) {
                    900.0
                } else {
                    4.0
                },
            }
        })
        .collect();
    let mut node_rates = BTreeMap::new();
    for (node, base) in [("n1", 400.0), ("n2", 380.0)] {
        let pts = (0..30)
            .map(|i| {
                let t = f64::from(i) + 0.5;
                let down = node == "n2" && (15.0..20.0).contains(&t);
                (
                    t,
                    if down {
                        0.0
                    } else {
                        base + f64::from(i % 3) * 10.0
                    },
                )
            })
            .collect();
        node_rates.insert(node.to_string(), pts);
    }
    let mut by_kind = BTreeMap::new();
    by_kind.insert("read".to_string(), counts(2500, 20, 0));
    by_kind.insert("transfer".to_string(), counts(1500, 40, 20));
    let mut messages_by_kind = BTreeMap::new();
    messages_by_kind.insert("propose".to_string(), 12000);
    messages_by_kind.insert("ack".to_string(), 11800);
    messages_by_kind.insert("gift".to_string(), 300);
    Results {
        valid: Results::combine(&checks),
        scenario: "partition-then-kill".into(),
        system: "tokens".into(),
        seed: 42,
        run_dir: "runs/2024-01-01T00-00-00-partition-then-kill".into(),
        start_us: START_US,
        duration_s: 30.0,
        checks,
        stats: Stats {
            ops: counts(4000, 60, 20),
            by_kind,
            latency_ms: Quantiles {
                p50: 1.3,
                p90: 6.0,
                p99: 850.0,
                max: 1400.0,
            },
            availability: vec![
                availability(None, "whole run", 0.0, 30.0, 4080, 4000),
                availability(Some(0), "#0 partition", 5.0, 12.0, 560, 420),
                availability(Some(1), "#1 kill", 15.0, 20.0, 600, 600),
                availability(Some(2), "#2 delay", 24.0, 30.0, 0, 0),
            ],
            messages_by_kind,
            faults: vec![
                FaultMeasure {
                    window: 0,
                    target: "n1->n2".into(),
                    configured: json!({"drop": 1.0}),
                    measured: json!({"dropped": 812, "passed": 0}),
                },
                FaultMeasure {
                    window: 2,
                    target: "n1->n2".into(),
                    configured: json!({"delay_ms": 50}),
                    measured: json!({"p50_delay_ms": 51.2}),
                },
            ],
        },
        timeline: Timeline {
            bucket_s: 1.0,
            points,
            node_rates,
        },
        windows: vec![
            window(
                0,
                "partition",
                "packet",
                &["n1", "n2"],
                5.0,
                Some(12.0),
                true,
            ),
            window(1, "kill", "process", &["n2"], 15.0, Some(20.0), false),
            window(2, "delay", "packet", &["n1->n2"], 24.0, None, true),
        ],
        judge_s: 0.4,
    }
}

fn empty() -> Results {
    Results {
        valid: Valid::Unknown,
        scenario: String::new(),
        system: String::new(),
        seed: 0,
        run_dir: String::new(),
        start_us: 0,
        duration_s: 0.0,
        checks: Vec::new(),
        stats: Stats::default(),
        timeline: Timeline::default(),
        windows: Vec::new(),
        judge_s: 0.0,
    }
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("faultline-report-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Checks what a report needs of XML well-formedness: tags balanced and
/// nested, attributes quoted and unique, no raw `<` and only known entities
/// in text and attribute values. Returns the first problem found.
fn well_formed(doc: &str) -> Result<(), String> {
    let mut stack: Vec<&str> = Vec::new();
    let bytes = doc.as_bytes();
    let mut i = 0;
    // Every branch advances i by at least one byte.
    while i < bytes.len() {
        match bytes[i] {
            b'<' => {
                let rest = &doc[i..];
                let skip = |open: &str, close: &str| -> Result<Option<usize>, String> {
                    if !rest.starts_with(open) {
                        return Ok(None);
                    }
                    let end = rest
                        .find(close)
                        .ok_or(format!("unterminated {open} at {i}"))?;
                    Ok(Some(end + close.len()))
                };
                if let Some(n) = skip("<?", "?>")?
                    .or(skip("<!--", "-->")?)
                    .or(skip("<!DOCTYPE", ">")?)
                {
                    i += n;
                    continue;
                }
                let end = tag_end(rest).ok_or(format!("unterminated tag at {i}"))?;
                let inner = &rest[1..end];
                if let Some(name) = inner.strip_prefix('/') {
                    let open = stack
                        .pop()
                        .ok_or(format!("</{name}> closes nothing at {i}"))?;
                    if open != name.trim() {
                        return Err(format!("<{open}> closed by </{name}> at {i}"));
                    }
                } else {
                    let self_closing = inner.ends_with('/');
                    let body = inner.strip_suffix('/').unwrap_or(inner);
                    let name_end = body.find(char::is_whitespace).unwrap_or(body.len());
                    let name = &body[..name_end];
                    if name.is_empty()
                        || !name
                            .chars()
                            .all(|c| c.is_alphanumeric() || "-_:.".contains(c))
                    {
                        return Err(format!("bad tag name {name:?} at {i}"));
                    }
                    attributes(&body[name_end..]).map_err(|e| format!("<{name}> at {i}: {e}"))?;
                    if !self_closing {
                        stack.push(name);
                    }
                }
                i += end + 1;
            }
            b'&' => {
                i += entity(&doc[i..]).ok_or(format!("bad entity at {i}: {:.12}", &doc[i..]))?
            }
            _ => i += 1,
        }
    }
    match stack.pop() {
        Some(open) => Err(format!("<{open}> never closed")),
        None => Ok(()),
    }
}

/// Index of the `>` ending the tag at the start of `s`, outside quotes.
fn tag_end(s: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some(i),
            (None, '<') if i > 0 => return None,
            _ => {}
        }
    }
    None
}

/// Length of the entity reference at the start of `s`, if it is one.
fn entity(s: &str) -> Option<usize> {
    let semi = s.char_indices().take(12).find(|&(_, c)| c == ';')?.0;
    let name = &s[1..semi];
    let ok = matches!(name, "amp" | "lt" | "gt" | "quot" | "apos")
        || name
            .strip_prefix('#')
            .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()));
    ok.then_some(semi + 1)
}

fn attributes(s: &str) -> Result<(), String> {
    let mut seen: Vec<&str> = Vec::new();
    let mut rest = s.trim_start();
    // Each round consumes one attribute or fails.
    for _ in 0..=s.len() {
        if rest.is_empty() {
            return Ok(());
        }
        let eq = rest
            .find('=')
            .ok_or(format!("attribute without value: {rest:.30}"))?;
        let name = rest[..eq].trim();
        if name.is_empty() || name.contains(char::is_whitespace) || seen.contains(&name) {
            return Err(format!("bad or repeated attribute {name:?}"));
        }
        seen.push(name);
        let after = &rest[eq + 1..];
        let q = after
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
            .ok_or("unquoted value")?;
        let close = after[1..].find(q).ok_or("unterminated value")? + 1;
        let value = &after[1..close];
        if value.contains('<') {
            return Err(format!("raw < in value of {name}"));
        }
        let mut j = 0;
        // j moves past one entity per round.
        while let Some(k) = value[j..].find('&') {
            j += k;
            j += entity(&value[j..]).ok_or(format!("bad entity in {name}"))?;
        }
        rest = after[close + 1..].trim_start();
    }
    Err("too many attributes".into())
}

fn attr(doc: &str, tag: &str, name: &str) -> String {
    let start = doc.find(&format!("<{tag} ")).expect("tag present");
    let key = format!(" {name}=\"");
    let from = start + doc[start..].find(&key).expect("attribute present") + key.len();
    doc[from..from + doc[from..].find('"').expect("closing quote")].to_string()
}

#[test]
fn writes_all_files_and_results_json_round_trips() {
    let r = sample();
    let dir = scratch_dir("files");
    write_all(&r, &dir).expect("write_all");
    for f in [report::RESULTS_JSON, report::JUNIT_XML, report::REPORT_HTML] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let back: Results =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    // Not the whole value: serde_json parses floats to within one ulp
    // unless its float_roundtrip feature is on.
    assert_eq!(
        (&back.checks, &back.windows, back.start_us),
        (&r.checks, &r.windows, r.start_us)
    );
    assert_eq!(back.stats.ops, r.stats.ops);
    assert_eq!(back.timeline.points.len(), 30);
    if let Some(path) = std::env::var_os("FAULTLINE_SAMPLE_REPORT") {
        std::fs::copy(dir.join(report::REPORT_HTML), path).expect("copy sample");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn html_shows_verdict_checks_charts_and_windows() {
    let r = sample();
    let html = render_html(&r);
    well_formed(&html).unwrap();
    assert!(html.contains(r#"<div class="badge v-false">INVALID</div>"#));
    for c in &r.checks {
        assert!(
            html.contains(&format!(r#"<td class="name">{}</td>"#, c.name)),
            "{}",
            c.name
        );
    }
    assert_eq!(html.matches("<svg").count(), 3);
    assert!(!html.contains("NaN") && !html.contains("inf<"));
    for label in ["#0 partition n1,n2", "#1 kill n2", "#2 delay n1-&gt;n2"] {
        assert!(
            html.matches(label).count() >= 3,
            "{label} not on every chart"
        );
    }
    // Nested evidence, escaped, with the failing check first and open.
    assert!(html.contains("&quot;value&quot;: &quot;&lt;a &amp; b&gt;&quot;"));
    assert!(html.contains(r#"\&quot;hi\&quot; &amp; &#39;bye&#39;"#));
    assert!(html.contains("1 &lt; 2 &gt; 0"));
    assert!(!html.contains("<a & b>") && !html.contains("<after>"));
    assert_eq!(html.matches(r#"<details open="open">"#).count(), 1);
    let first = |name: &str| {
        html.find(&format!(r#"<td class="name">{name}</td>"#))
            .unwrap()
    };
    assert!(first("linearizable") < first("liveness"));
    assert!(first("liveness") < first("quiescent-state"));
    // The latency spans p50 1.2 ms to p99 900 ms: drawn on a log axis.
    assert!(html.contains("log scale"));
    assert!(html.contains("n1") && html.contains("n2"));
    assert!(html.contains("still open at the end"));
    // Self-contained: nothing to fetch.
    assert!(!html.contains(" src=") && !html.contains(" href=") && !html.contains("@import"));
}

#[test]
fn junit_counts_and_escapes() {
    let r = sample();
    let xml = render_junit(&r);
    well_formed(&xml).unwrap();
    assert_eq!(attr(&xml, "testsuite", "name"), "faultline");
    assert_eq!(attr(&xml, "testsuite", "tests"), "5");
    assert_eq!(attr(&xml, "testsuite", "failures"), "1");
    assert_eq!(attr(&xml, "testsuite", "errors"), "0");
    assert_eq!(attr(&xml, "testsuite", "skipped"), "1");
    assert_eq!(xml.matches("<testcase ").count(), 5);
    assert_eq!(xml.matches(r#"classname="faultline.tokens""#).count(), 5);
    assert_eq!(xml.matches("<failure ").count(), 1);
    assert_eq!(xml.matches("<skipped ").count(), 1);
    assert!(xml.contains(r#"message="token 3: no linearization of &quot;transfer&quot; &lt;after&gt; heal &amp; 2 reads""#));
    assert!(xml.contains("&lt;a &amp; b&gt;"));
    assert!(!xml.contains("<a & b>"));
}

#[test]
fn empty_results_render() {
    let r = empty();
    let dir = scratch_dir("empty");
    write_all(&r, &dir).expect("write_all");
    let html = std::fs::read_to_string(dir.join(report::REPORT_HTML)).unwrap();
    well_formed(&html).unwrap();
    assert_eq!(html.matches("<svg").count(), 3);
    assert!(html.contains("no data") && html.contains("No checks ran"));
    assert!(!html.contains("NaN"));
    let xml = std::fs::read_to_string(dir.join(report::JUNIT_XML)).unwrap();
    well_formed(&xml).unwrap();
    assert_eq!(attr(&xml, "testsuite", "tests"), "1");
    assert_eq!(attr(&xml, "testsuite", "errors"), "1");
    let text = summary(&r);
    assert!(text.contains("unknown") && text.contains("no checks ran"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn non_finite_numbers_and_unplaceable_windows_render() {
    let mut r = sample();
    r.start_us = 0;
    r.duration_s = f64::NAN;
    r.timeline.points[3].ok_per_s = f64::INFINITY;
    r.timeline.points[4].p99_ms = f64::NAN;
    r.timeline.points[5].t_s = f64::NAN;
    r.stats.latency_ms.p50 = f64::NAN;
    r.stats.availability[0].fraction = f64::NAN;
    r.timeline
        .node_rates
        .insert("n3".into(), vec![(f64::NEG_INFINITY, f64::NAN)]);
    r.checks[0].summary = "bell \u{7} and \u{1b}[31m".into();
    let html = render_html(&r);
    well_formed(&html).unwrap();
    assert!(!html.contains("NaN") && !html.contains("inf<") && !html.contains("\"inf"));
    assert!(html.contains("run start (start_us) is unknown"));
    assert_eq!(html.matches("<svg").count(), 3);
    well_formed(&render_junit(&r)).unwrap();
    assert!(!summary(&r).contains('\u{1b}'));
}

#[test]
fn summary_lists_verdict_checks_ops_latency_and_path() {
    let r = sample();
    let text = summary(&r);
    assert!(text.starts_with("verdict: INVALID"), "{text}");
    for c in &r.checks {
        assert!(
            text.contains(&format!("{}: {}", c.name, c.valid.label())),
            "{text}"
        );
    }
    assert!(
        text.contains("4000 ok, 60 failed, 20 unknown (4080 total)"),
        "{text}"
    );
    assert!(text.contains("p50 1.30 ms, p99 850 ms"), "{text}");
    assert!(
        text.contains("runs/2024-01-01T00-00-00-partition-then-kill/report.html"),
        "{text}"
    );
    assert!(text.lines().count() <= r.checks.len() + 5);
}

#[test]
fn the_checker_rejects_broken_markup() {
    assert!(well_formed("<a><b></a></b>").is_err());
    assert!(well_formed("<a>x & y</a>").is_err());
    assert!(well_formed(r#"<a t="1 < 2"/>"#).is_err());
    assert!(well_formed("<a t=1/>").is_err());
    assert!(well_formed("<a>").is_err());
    assert!(well_formed(r#"<?xml version="1.0"?><a t="&quot;"><!-- c --><b/>&#39;</a>"#).is_ok());
}
