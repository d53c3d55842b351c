//! `report.html`: one self-contained page (inline CSS and SVG, no scripts,
//! no external resources) that says at a glance whether the run was valid,
//! which check broke and what the system did while faults were in force.
//!
//! The markup is also well-formed XML (void elements self-closed, boolean
//! attributes spelled out) so tests can check its structure with a plain
//! tag matcher.

use super::svg::{Chart, Series, Shade, IN_MODEL, OUT_OF_MODEL};
use super::{esc, fin, fmt_duration, fmt_ms, severity_rank, spans, Span};
use crate::results::{Counts, Results, Valid};
use serde_json::Value;
use std::fmt::Write as _;

const OK: &str = "#2da44e";
const FAILED: &str = "#cf222e";
const UNKNOWN: &str = "#d4a72c";
const P50: &str = "#0969da";
const P99: &str = "#bc4c00";
/// Tableau 10, one colour per node, cycling past ten nodes.
const NODE_COLORS: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

const CSS: &str = r#"
:root { --ok: #1a7f37; --bad: #cf222e; --unk: #d4a72c; --fg: #1f2328; --muted: #656d76; --line: #d0d7de; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: var(--fg); background: #fff; }
main { max-width: 1120px; margin: 0 auto; padding: 24px; }
header.top { display: flex; gap: 28px; align-items: center; padding: 20px 24px; border-radius: 10px; background: var(--bg); border: 1px solid var(--line); }
.badge { font-size: 36px; font-weight: 800; letter-spacing: .03em; padding: 14px 30px; border-radius: 10px; color: #fff; white-space: nowrap; }
.v-true { background: var(--ok); color: #fff; }
.v-false { background: var(--bad); color: #fff; }
.v-unknown { background: var(--unk); color: #1f2328; }
.meta h1 { margin: 0 0 8px; font-size: 22px; word-break: break-all; }
.meta dl { display: grid; grid-template-columns: max-content 1fr max-content 1fr; gap: 3px 14px; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; word-break: break-all; }
h2 { font-size: 18px; margin: 30px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 0 0 6px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.name { font-weight: 600; white-space: nowrap; }
tr.row-false td { background: #fff5f5; }
tr.row-unknown td { background: #fffbeb; }
.pill { display: inline-block; padding: 1px 10px; border-radius: 999px; font-weight: 700; font-size: 12px; }
details { margin-top: 4px; }
details summary { cursor: pointer; color: var(--muted); font-size: 12px; }
pre { margin: 6px 0 0; padding: 10px; background: var(--bg); border: 1px solid var(--line); border-radius: 6px; overflow: auto; max-height: 480px; font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; white-space: pre; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; word-break: break-all; }
.chart { margin: 8px 0 16px; border: 1px solid var(--line); border-radius: 8px; padding: 6px 8px; }
.chart svg { display: block; width: 100%; height: auto; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(330px, 1fr)); gap: 22px 30px; }
.bar { display: inline-block; width: 110px; height: 10px; background: #eaeef2; border-radius: 5px; overflow: hidden; vertical-align: middle; margin-right: 8px; }
.bar span { display: block; height: 100%; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; vertical-align: -1px; margin-right: 6px; }
.tiles { display: flex; gap: 10px; flex-wrap: wrap; }
.tile { flex: 1 1 70px; padding: 8px 10px; border: 1px solid var(--line); border-radius: 8px; background: var(--bg); }
.tile b { display: block; font-size: 20px; font-variant-numeric: tabular-nums; }
.tile span { color: var(--muted); font-size: 12px; }
.note { color: var(--muted); }
footer { margin: 36px 0 10px; color: var(--muted); font-size: 12px; }
"#;

pub(crate) fn render(r: &Results) -> String {
    let spans = spans(r);
    let mut o = String::with_capacity(64 * 1024);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\
         <title>faultline {}: {}</title><style>{CSS}</style></head><body><main>\n",
        esc(r.valid.label()),
        esc(&r.scenario)
    );
    header(&mut o, r, spans.as_deref());
    checks(&mut o, r);
    charts(&mut o, r, spans.as_deref());
    stats(&mut o, r, spans.as_deref());
    o.push_str("<footer>faultline chaos report; the same data is in results.json and junit.xml next to this file.</footer>\n");
    o.push_str("</main></body></html>\n");
    o
}

fn valid_class(v: Valid) -> &'static str {
    match v {
        Valid::True => "true",
        Valid::False => "false",
        Valid::Unknown => "unknown",
    }
}

fn header(o: &mut String, r: &Results, spans: Option<&[Span]>) {
    let _ = write!(
        o,
        "<header class=\"top\"><div class=\"badge v-{}\">{}</div><div class=\"meta\"><h1>{}</h1><dl>",
        valid_class(r.valid),
        esc(r.valid.label()),
        esc(&r.scenario)
    );
    let count = |v| r.checks.iter().filter(|c| c.valid == v).count();
    let checks = if r.checks.is_empty() {
        "none ran".to_string()
    } else {
        format!(
            "{} failed · {} unknown · {} passed",
            count(Valid::False),
            count(Valid::Unknown),
            count(Valid::True)
        )
    };
    let in_model = r.windows.iter().filter(|w| w.in_model).count();
    let open = r.windows.iter().filter(|w| w.end_us.is_none()).count();
    let mut faults = format!(
        "{} windows ({} in model, {} out of model",
        r.windows.len(),
        in_model,
        r.windows.len() - in_model
    );
    if open > 0 {
        let _ = write!(faults, ", {open} still open at the end");
    }
    faults.push(')');
    if spans.is_none() {
        faults.push_str("; run start unknown, not placed on the charts");
    }
    let rows = [
        ("system", esc(&r.system)),
        ("seed", r.seed.to_string()),
        ("duration", esc(&fmt_duration(r.duration_s))),
        ("checks", esc(&checks)),
        ("run dir", format!("<code>{}</code>", esc(&r.run_dir))),
        ("faults", esc(&faults)),
    ];
    for (k, v) in rows {
        let _ = write!(o, "<dt>{k}</dt><dd>{v}</dd>");
    }
    o.push_str("</dl></div></header>\n");
}

fn checks(o: &mut String, r: &Results) {
    o.push_str("<section id=\"checks\"><h2>Checks</h2>\n");
    if r.checks.is_empty() {
        o.push_str("<p class=\"note\">No checks ran, so the verdict is unknown.</p></section>\n");
        return;
    }
    o.push_str(
        "<table><thead><tr><th>Check</th><th>Valid</th><th>Summary and evidence</th></tr></thead><tbody>\n",
    );
    let mut sorted: Vec<_> = r.checks.iter().collect();
    sorted.sort_by_key(|c| severity_rank(c.valid));
    for c in sorted {
        let class = valid_class(c.valid);
        let _ = write!(
            o,
            "<tr class=\"row-{class}\"><td class=\"name\">{}</td><td><span class=\"pill v-{class}\">{class}</span></td><td>{}",
            esc(&c.name),
            esc(&c.summary)
        );
        if !c.evidence.is_null() {
            let pretty = serde_json::to_string_pretty(&c.evidence).unwrap_or_default();
            // The reader came for the failure: show its evidence unasked.
            let open = if c.valid == Valid::False {
                " open=\"open\""
            } else {
                ""
            };
            let _ = write!(
                o,
                "<details{open}><summary>evidence</summary><pre>{}</pre></details>",
                esc(&pretty)
            );
        }
        o.push_str("</td></tr>\n");
    }
    o.push_str("</tbody></table></section>\n");
}

fn shades(spans: Option<&[Span]>) -> Vec<Shade> {
    let Some(spans) = spans else {
        return Vec::new();
    };
    spans
        .iter()
        .map(|s| {
            let end = s
                .end_s
                .map_or("end of run".into(), |e| format!("{:.1}s", fin(e)));
            let mut title = format!(
                "{} ({}, {}): {:.1}s to {end}",
                s.label(),
                s.w.layer,
                if s.w.in_model {
                    "in model"
                } else {
                    "out of model"
                },
                fin(s.start_s)
            );
            if !s.w.detail.is_null() {
                let _ = write!(title, "; {}", s.w.detail);
            }
            Shade {
                start_s: s.start_s,
                end_s: s.end_s,
                label: s.label(),
                title,
                in_model: s.w.in_model,
            }
        })
        .collect()
}

fn charts(o: &mut String, r: &Results, spans: Option<&[Span]>) {
    o.push_str("<section id=\"timeline\"><h2>Timeline</h2>\n");
    if spans.is_none() {
        o.push_str("<p class=\"note\">Fault windows are not shaded: the run start (start_us) is unknown.</p>\n");
    }
    let shades = shades(spans);
    let tl = &r.timeline;
    let series =
        |name: &str, color: &str, f: &dyn Fn(&crate::results::TimePoint) -> Option<f64>| Series {
            name: name.into(),
            color: color.into(),
            points: tl.points.iter().map(|p| (p.t_s, f(p))).collect(),
        };
    // Latency is 0 in buckets without ok operations: a gap, not a dip.
    let latency = |v: f64| (v > 0.0).then_some(v);
    let charts = [
        Chart {
            id: "throughput",
            title: "Throughput: operations completed per second",
            y_unit: "ops/s",
            x_max: r.duration_s,
            series: vec![
                series("ok", OK, &|p| Some(p.ok_per_s)),
                series("failed", FAILED, &|p| Some(p.failed_per_s)),
                series("unknown", UNKNOWN, &|p| Some(p.unknown_per_s)),
            ],
            shades: &shades,
            log_if_wide: false,
        },
        Chart {
            id: "latency",
            title: "Latency of ok operations",
            y_unit: "ms",
            x_max: r.duration_s,
            series: vec![
                series("p50", P50, &|p| latency(p.p50_ms)),
                series("p99", P99, &|p| latency(p.p99_ms)),
            ],
            shades: &shades,
            log_if_wide: true,
        },
        Chart {
            id: "messages",
            title: "Messages sent per second, by node",
            y_unit: "msgs/s",
            x_max: r.duration_s,
            series: tl
                .node_rates
                .iter()
                .enumerate()
                .map(|(i, (node, pts))| Series {
                    name: node.clone(),
                    color: NODE_COLORS[i % NODE_COLORS.len()].into(),
                    points: pts.iter().map(|&(t, v)| (t, Some(v))).collect(),
                })
                .collect(),
            shades: &shades,
            log_if_wide: false,
        },
    ];
    for c in &charts {
        let _ = writeln!(o, "<div class=\"chart\">{}</div>", c.render());
    }
    o.push_str("</section>\n");
}

fn pct(f: f64) -> String {
    format!("{:.1}%", fin(f).clamp(0.0, 1.0) * 100.0)
}

fn bar(frac: f64, color: &str) -> String {
    format!(
        "<span class=\"bar\"><span style=\"width: {:.1}%; background: {color}\"></span></span>",
        fin(frac).clamp(0.0, 1.0) * 100.0
    )
}

fn ops_row(o: &mut String, kind: &str, c: &Counts, strong: bool) {
    let total = c.total();
    let frac = if total == 0 {
        1.0
    } else {
        c.ok as f64 / total as f64
    };
    let name = if strong {
        format!("<b>{}</b>", esc(kind))
    } else {
        esc(kind)
    };
    let _ = write!(
        o,
        "<tr><td>{name}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{total}</td><td class=\"num\">{}</td></tr>",
        c.ok,
        c.failed,
        c.unknown,
        pct(frac)
    );
}

/// Configured and measured fault parameters are free-form JSON; flat
/// objects read better as `key: value` pairs.
fn json_inline(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}: {s}"),
                v => format!("{k}: {v}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        v => v.to_string(),
    }
}

fn availability_color(f: f64) -> &'static str {
    if f >= 0.99 {
        OK
    } else if f >= 0.5 {
        UNKNOWN
    } else {
        FAILED
    }
}

fn stats(o: &mut String, r: &Results, spans: Option<&[Span]>) {
    let s = &r.stats;
    o.push_str("<section id=\"stats\"><h2>Statistics</h2><div class=\"grid\">\n");

    o.push_str("<div><h3>Operations</h3><table><thead><tr><th>kind</th><th class=\"num\">ok</th><th class=\"num\">failed</th><th class=\"num\">unknown</th><th class=\"num\">total</th><th class=\"num\">ok share</th></tr></thead><tbody>");
    ops_row(o, "all", &s.ops, true);
    for (kind, c) in &s.by_kind {
        ops_row(o, kind, c, false);
    }
    o.push_str("</tbody></table></div>\n");

    o.push_str("<div><h3>Latency of ok operations</h3><div class=\"tiles\">");
    let q = &s.latency_ms;
    for (name, v) in [
        ("p50", q.p50),
        ("p90", q.p90),
        ("p99", q.p99),
        ("max", q.max),
    ] {
        let _ = write!(
            o,
            "<div class=\"tile\"><b>{}</b><span>{name}, ms</span></div>",
            esc(&fmt_ms(v))
        );
    }
    o.push_str("</div></div>\n");

    o.push_str("<div><h3>Availability</h3>");
    if s.availability.is_empty() {
        o.push_str("<p class=\"note\">No availability measured.</p>");
    } else {
        o.push_str("<table><thead><tr><th>window</th><th class=\"num\">span (s)</th><th class=\"num\">ok / completed inside</th><th class=\"num\">waited across</th><th>ok fraction</th></tr></thead><tbody>");
        for a in &s.availability {
            let f = fin(a.fraction);
            let _ = write!(
                o,
                "<tr><td>{}</td><td class=\"num\">{:.1} to {:.1}</td><td class=\"num\">{} / {}</td><td class=\"num\">{}</td><td class=\"num\" style=\"text-align: left\">{}{}</td></tr>",
                esc(&a.label),
                fin(a.start_s),
                fin(a.end_s),
                a.ok,
                a.ops,
                a.spanned,
                bar(f, availability_color(f)),
                pct(f)
            );
        }
        o.push_str("</tbody></table>");
    }
    o.push_str("</div>\n");

    o.push_str("<div><h3>Messages sent by kind</h3>");
    if s.messages_by_kind.is_empty() {
        o.push_str("<p class=\"note\">No message counts scraped.</p>");
    } else {
        let max = s
            .messages_by_kind
            .values()
            .copied()
            .max()
            .unwrap_or(0)
            .max(1);
        o.push_str("<table><thead><tr><th>kind</th><th class=\"num\">messages</th><th></th></tr></thead><tbody>");
        for (kind, n) in &s.messages_by_kind {
            let _ = write!(
                o,
                "<tr><td>{}</td><td class=\"num\">{n}</td><td>{}</td></tr>",
                esc(kind),
                bar(*n as f64 / max as f64, IN_MODEL.0)
            );
        }
        o.push_str("</tbody></table>");
    }
    o.push_str("</div>\n</div>\n");

    fault_tables(o, r, spans);
    o.push_str("</section>\n");
}

fn fault_tables(o: &mut String, r: &Results, spans: Option<&[Span]>) {
    let window_name = |id: usize| {
        r.windows
            .iter()
            .find(|w| w.id == id)
            .map_or(format!("#{id}"), |w| format!("#{id} {}", w.fault))
    };

    o.push_str("<h3 style=\"margin-top: 22px\">Faults: configured vs measured</h3>");
    if r.stats.faults.is_empty() {
        o.push_str("<p class=\"note\">No fault measurements.</p>");
    } else {
        o.push_str("<table><thead><tr><th>window</th><th>target</th><th>configured</th><th>measured</th></tr></thead><tbody>");
        for f in &r.stats.faults {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
                esc(&window_name(f.window)),
                esc(&f.target),
                esc(&json_inline(&f.configured)),
                esc(&json_inline(&f.measured))
            );
        }
        o.push_str("</tbody></table>");
    }

    o.push_str("<h3 style=\"margin-top: 22px\">Fault windows</h3>");
    if r.windows.is_empty() {
        o.push_str("<p class=\"note\">No faults were applied.</p>\n");
        return;
    }
    o.push_str("<table><thead><tr><th>window</th><th>layer</th><th>targets</th><th class=\"num\">start (s)</th><th class=\"num\">end (s)</th><th>model</th><th>detail</th></tr></thead><tbody>");
    for (i, w) in r.windows.iter().enumerate() {
        let span = spans.and_then(|s| s.get(i));
        let start = span.map_or("?".into(), |s| format!("{:.1}", fin(s.start_s)));
        let end = match (span, w.end_us) {
            (_, None) => "open".to_string(),
            (Some(Span { end_s: Some(e), .. }), _) => format!("{:.1}", fin(*e)),
            _ => "?".into(),
        };
        let (color, model) = if w.in_model {
            (IN_MODEL.0, "in model")
        } else {
            (OUT_OF_MODEL.0, "out of model")
        };
        let _ = write!(
            o,
            "<tr><td><span class=\"swatch\" style=\"background: {color}\"></span>#{} {}</td><td>{}</td><td>{}</td><td class=\"num\">{start}</td><td class=\"num\">{end}</td><td>{model}</td><td><code>{}</code></td></tr>",
            w.id,
            esc(&w.fault),
            esc(&w.layer),
            esc(&w.targets.join(", ")),
            esc(&json_inline(&w.detail))
        );
    }
    o.push_str("</tbody></table>\n");
}
