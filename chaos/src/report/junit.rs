//! `junit.xml`: one test suite for the run, one test case per check, so that
//! CI systems show which property broke and why.

use super::{esc, esc_attr, fin};
use crate::results::{Results, Valid};
use std::fmt::Write as _;

pub(crate) fn render(r: &Results) -> String {
    let failures = r.checks.iter().filter(|c| c.valid == Valid::False).count();
    let skipped = r
        .checks
        .iter()
        .filter(|c| c.valid == Valid::Unknown)
        .count();
    // A run that judged nothing must not look green to CI: it gets one
    // test case in error.
    let errors = usize::from(r.checks.is_empty());
    let tests = r.checks.len() + errors;
    let classname = esc_attr(&format!("faultline.{}", r.system));

    let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        o,
        r#"<testsuite name="faultline" tests="{tests}" failures="{failures}" errors="{errors}" skipped="{skipped}" time="{:.3}">"#,
        fin(r.duration_s).max(0.0)
    );
    o.push_str("  <properties>\n");
    let props = [
        ("verdict", r.valid.label().to_string()),
        ("scenario", r.scenario.clone()),
        ("system", r.system.clone()),
        ("seed", r.seed.to_string()),
        ("run_dir", r.run_dir.clone()),
        ("start_us", r.start_us.to_string()),
    ];
    for (k, v) in props {
        let _ = writeln!(o, r#"    <property name="{k}" value="{}"/>"#, esc_attr(&v));
    }
    o.push_str("  </properties>\n");

    for c in &r.checks {
        let _ = write!(
            o,
            r#"  <testcase classname="{classname}" name="{}" time="0">"#,
            esc_attr(&c.name)
        );
        let evidence = if c.evidence.is_null() {
            String::new()
        } else {
            serde_json::to_string_pretty(&c.evidence).unwrap_or_default()
        };
        match c.valid {
            Valid::False => {
                let _ = write!(
                    o,
                    "\n    <failure message=\"{}\" type=\"invalid\">{}</failure>\n  ",
                    esc_attr(&c.summary),
                    esc(&evidence)
                );
            }
            Valid::Unknown => {
                // Unknown is not a pass: the checker could not decide (search
                // budget exhausted, history truncated...). JUnit has no such
                // state; skipped is the closest that does not read as green.
                let _ = write!(
                    o,
                    "\n    <skipped message=\"{}\"/>{}\n  ",
                    esc_attr(&format!("unknown: {}", c.summary)),
                    system_out(&evidence)
                );
            }
            Valid::True => {
                if !evidence.is_empty() {
                    let _ = write!(o, "{}\n  ", system_out(&evidence));
                }
            }
        }
        o.push_str("</testcase>\n");
    }
    if r.checks.is_empty() {
        let _ = writeln!(
            o,
            r#"  <testcase classname="{classname}" name="checks" time="0">
    <error message="no checks ran; the verdict is unknown" type="no-checks"/>
  </testcase>"#
        );
    }
    o.push_str("</testsuite>\n");
    o
}

/// Measurements of checks that did not fail, for whoever opens the case.
fn system_out(evidence: &str) -> String {
    if evidence.is_empty() {
        String::new()
    } else {
        format!("\n    <system-out>{}</system-out>", esc(evidence))
    }
}
