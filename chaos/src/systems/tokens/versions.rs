//! `versions-monotonic`: a server's version of a token never goes down, as its
//! `faultline_token_version{token}` gauge shows over the run.
//!
//! Servers keep their log across restarts, so the rule holds across scrapes the node did not
//! answer. A series that disappears from an answered scrape (the node became a client and
//! dropped its table) may come back from any value.

use crate::judge::{outcome, rel_ms_json, ScrapeIndex};
use crate::results::{CheckOutcome, Valid};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

const NAME: &str = "versions-monotonic";
const METRIC: &str = "faultline_token_version";

pub(crate) fn check_monotonic(index: &ScrapeIndex, start_us: u64) -> CheckOutcome {
    let mut series = 0usize;
    let mut samples = 0usize;
    let mut violations = 0usize;
    let mut first: Option<serde_json::Value> = None;
    let mut first_t = u64::MAX;
    for target in index.targets() {
        // token -> (value, time) as of the last answered scrape that had it.
        let mut last: BTreeMap<&str, (f64, u64)> = BTreeMap::new();
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for scrape in index.ok(target) {
            let mut present: BTreeMap<&str, f64> = BTreeMap::new();
            for s in scrape.samples.iter().filter(|s| s.name == METRIC) {
                if let Some(token) = s.labels.get("token") {
                    present.entry(token.as_str()).or_insert(s.value);
                }
            }
            for (&token, &value) in &present {
                samples += 1;
                if seen.insert(token) {
                    series += 1;
                }
                if let Some(&(before, t_before)) = last.get(token) {
                    if value < before {
                        violations += 1;
                        if scrape.t_us < first_t {
                            first_t = scrape.t_us;
                            first = Some(json!({
                                "node": target,
                                "token": token,
                                "before": before,
                                "before_ms": rel_ms_json(t_before, start_us),
                                "after": value,
                                "t_ms": rel_ms_json(scrape.t_us, start_us),
                            }));
                        }
                    }
                }
                last.insert(token, (value, scrape.t_us));
            }
            last.retain(|token, _| present.contains_key(token));
        }
    }
    if let Some(mut f) = first {
        let summary = format!(
            "node {} token {} went from version {} to {} ({} decrease(s) in all)",
            f["node"].as_str().unwrap_or("?"),
            f["token"].as_str().unwrap_or("?"),
            f["before"],
            f["after"],
            violations
        );
        if let Some(map) = f.as_object_mut() {
            map.insert("violations".into(), json!(violations));
        }
        return outcome(NAME, Valid::False, summary, f);
    }
    let evidence = json!({"series": series, "samples": samples});
    if samples == 0 {
        return outcome(
            NAME,
            Valid::Unknown,
            "no token version was scraped",
            evidence,
        );
    }
    outcome(
        NAME,
        Valid::True,
        format!("{samples} samples of {series} series never decreased"),
        evidence,
    )
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::record::Scrape;

    fn v(token: &str, value: f64) -> crate::record::Sample {
        sample(METRIC, &[("token", token)], value)
    }

    fn run(scrapes: &[Scrape]) -> CheckOutcome {
        check_monotonic(&ScrapeIndex::new(scrapes), T0)
    }

    #[test]
    fn rising_and_restarted_series_are_fine_a_drop_is_not() {
        let ok = [
            scrape_at(0, "s1", vec![v("0", 1.0), v("1", 1.0)]),
            down_at(1000, "s1"),
            scrape_at(2000, "s1", vec![v("0", 3.0), v("1", 1.0)]),
            // s1 became a client: its table is gone...
            scrape_at(3000, "s1", vec![]),
            // ...and came back from an older version as a server again.
            scrape_at(4000, "s1", vec![v("0", 2.0), v("1", 1.0)]),
        ];
        assert_eq!(run(&ok).valid, Valid::True);
        assert_eq!(run(&[]).valid, Valid::Unknown);

        let mut bad = ok.to_vec();
        bad.push(scrape_at(5000, "s1", vec![v("0", 2.0), v("1", 0.0)]));
        let c = run(&bad);
        assert_eq!(c.valid, Valid::False);
        assert_eq!(c.evidence["node"], "s1");
        assert_eq!(c.evidence["token"], "1");
        assert_eq!(c.evidence["before"], 1.0);
        assert_eq!(c.evidence["after"], 0.0);
    }
}
