//! Rendering a run's [`Results`] for people and for CI: `results.json` (the
//! verdict as data), `junit.xml` (one test case per check), `report.html`
//! (one self-contained page with hand-drawn SVG charts) and a few lines for
//! the terminal.

mod html;
mod junit;
mod svg;

use crate::record::FaultWindow;
use crate::results::{Results, Valid};
use std::fmt::Write as _;
use std::path::Path;
use thiserror::Error;

pub const RESULTS_JSON: &str = "results.json";
pub const JUNIT_XML: &str = "junit.xml";
pub const REPORT_HTML: &str = "report.html";

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("serialising results: {0}")]
    Json(#[from] serde_json::Error),
}

/// Writes `results.json`, `junit.xml` and `report.html` into `dir`,
/// creating it if needed.
pub fn write_all(results: &Results, dir: &Path) -> Result<(), ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let json = serde_json::to_string_pretty(results)?;
    write_file(&dir.join(RESULTS_JSON), &json)?;
    write_file(&dir.join(JUNIT_XML), &render_junit(results))?;
    write_file(&dir.join(REPORT_HTML), &render_html(results))
}

/// The JUnit XML document, as written to `junit.xml`.
pub fn render_junit(results: &Results) -> String {
    junit::render(results)
}

/// The HTML page, as written to `report.html`.
pub fn render_html(results: &Results) -> String {
    html::render(results)
}

/// A few lines for the terminal. The report path assumes the files were
/// written into `results.run_dir`.
pub fn summary(results: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "verdict: {}  (scenario {}, system {}, seed {}, {})",
        results.valid.label(),
        one_line(&results.scenario),
        one_line(&results.system),
        results.seed,
        fmt_duration(results.duration_s)
    );
    let experiment = results.experiment_failures();
    if !experiment.is_empty() && results.valid != Valid::False {
        let _ = writeln!(
            out,
            "  the system was not found wrong, but the experiment did not do what the scenario said ({}): the run cannot be judged valid",
            experiment.join(", ")
        );
    }
    if results.checks.is_empty() {
        let _ = writeln!(out, "  no checks ran");
    }
    for c in &results.checks {
        let mark = match c.valid {
            Valid::True => " ok ",
            Valid::False => "FAIL",
            Valid::Unknown => " ?? ",
        };
        // A slow check says so, so a slow judgement names its culprit.
        let took = if c.took_ms >= 1000.0 {
            format!(" (judged in {:.1} s)", c.took_ms / 1000.0)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  [{mark}] {}: {} - {}{took}",
            one_line(&c.name),
            c.valid.label(),
            one_line(&c.summary)
        );
    }
    let ops = &results.stats.ops;
    let _ = writeln!(
        out,
        "  ops: {} ok, {} failed, {} unknown ({} total)",
        ops.ok,
        ops.failed,
        ops.unknown,
        ops.total()
    );
    let lat = &results.stats.latency_ms;
    let _ = writeln!(
        out,
        "  latency: p50 {} ms, p99 {} ms",
        fmt_ms(lat.p50),
        fmt_ms(lat.p99)
    );
    if results.judge_s >= 1.0 {
        let _ = writeln!(out, "  judged in {:.1} s", results.judge_s);
    }
    let path = Path::new(&results.run_dir).join(REPORT_HTML);
    let _ = writeln!(out, "  report: {}", path.display());
    out
}

fn write_file(path: &Path, text: &str) -> Result<(), ReportError> {
    // Through a temporary and a rename, so that a browser or a CI uploader
    // never picks up half a file.
    let tmp = path.with_extension("tmp");
    let io = |source| ReportError::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Escapes text for XML and HTML, in content and in quoted attributes.
/// Characters XML 1.0 forbids even when escaped become U+FFFD, so that a
/// stray control byte in a summary cannot make `junit.xml` unparsable.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// [`esc`] for attribute values: parsers turn raw newlines and tabs in
/// attributes into spaces, character references survive.
pub(crate) fn esc_attr(s: &str) -> String {
    esc(s)
        .replace('\n', "&#10;")
        .replace('\r', "&#13;")
        .replace('\t', "&#9;")
}

/// Control characters (newlines, ANSI escapes) would break the one line per
/// item of the terminal summary.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Non-finite inputs (a 0/0 upstream) must never reach the SVG or the page.
pub(crate) fn fin(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

pub(crate) fn fmt_ms(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

pub(crate) fn fmt_duration(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "n/a".into();
    }
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        let m = (s / 60.0).floor();
        format!("{m:.0}m {:.1}s", s - m * 60.0)
    }
}

/// A fault window placed on the run's time axis.
pub(crate) struct Span<'a> {
    pub w: &'a FaultWindow,
    pub start_s: f64,
    /// None while the fault was still in force at the end of the run.
    pub end_s: Option<f64>,
}

impl Span<'_> {
    /// What the charts print on the shaded rectangle.
    pub fn label(&self) -> String {
        let mut l = format!("#{} {}", self.w.id, self.w.fault);
        if !self.w.targets.is_empty() {
            l.push(' ');
            l.push_str(&self.w.targets.join(","));
        }
        l
    }
}

/// The fault windows relative to the run start, or None when the run start
/// is unknown (`start_us` 0) and the windows cannot be placed.
pub(crate) fn spans(results: &Results) -> Option<Vec<Span<'_>>> {
    if results.start_us == 0 && !results.windows.is_empty() {
        return None;
    }
    let rel = |us: u64| (i128::from(us) - i128::from(results.start_us)) as f64 / 1e6;
    Some(
        results
            .windows
            .iter()
            .map(|w| Span {
                w,
                start_s: rel(w.start_us),
                end_s: w.end_us.map(rel),
            })
            .collect(),
    )
}

/// Failing checks first, then unknown, then passing; stable otherwise.
pub(crate) fn severity_rank(v: Valid) -> u8 {
    match v {
        Valid::False => 0,
        Valid::Unknown => 1,
        Valid::True => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_forbidden_chars() {
        assert_eq!(
            esc(r#"<a href="x">&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(esc("a\u{1}b\u{FFFF}"), "a\u{FFFD}b\u{FFFD}");
        assert_eq!(esc_attr("a\nb\t"), "a&#10;b&#9;");
        assert_eq!(one_line("a\nb\u{1b}[31m"), "a b [31m");
    }

    #[test]
    fn formats_without_nan() {
        assert_eq!(fmt_ms(f64::NAN), "n/a");
        assert_eq!(fmt_ms(1.234), "1.23");
        assert_eq!(fmt_ms(123.4), "123");
        assert_eq!(fmt_duration(f64::INFINITY), "n/a");
        assert_eq!(fmt_duration(75.0), "1m 15.0s");
        assert_eq!(fin(f64::NAN), 0.0);
    }
}
