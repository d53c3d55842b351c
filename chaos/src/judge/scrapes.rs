//! Reading the recorded scrapes: scrapes by target in time order, gauge values, and counter
//! increases that survive restarts.
//!
//! Counters restart from zero when a process restarts. A node says so through
//! `faultline_process_start_time_seconds`; the proxy does not, so a counter that went down is
//! also taken as a restart. Either way the increase across a restart is the new value (what was
//! counted between the last scrape and the crash is lost, which undercounts, never overcounts).

use crate::record::{Sample, Scrape};
use std::collections::BTreeMap;

pub(crate) type Labels = BTreeMap<String, String>;

pub(crate) const PROXY: &str = "proxy";
const START_TIME: &str = "faultline_process_start_time_seconds";

/// Scrapes by target, each list in time order (ties keep the file's order).
pub struct ScrapeIndex<'a> {
    by_target: BTreeMap<&'a str, Vec<&'a Scrape>>,
}

impl<'a> ScrapeIndex<'a> {
    pub(crate) fn new(scrapes: &'a [Scrape]) -> Self {
        let mut by_target: BTreeMap<&str, Vec<&Scrape>> = BTreeMap::new();
        for s in scrapes {
            by_target.entry(s.target.as_str()).or_default().push(s);
        }
        for list in by_target.values_mut() {
            list.sort_by_key(|s| s.t_us);
        }
        ScrapeIndex { by_target }
    }

    pub(crate) fn targets(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.by_target.keys().copied()
    }

    /// Every scrape of `target`, answered or not, in time order.
    pub(crate) fn all(&self, target: &str) -> &[&'a Scrape] {
        self.by_target.get(target).map_or(&[], |v| v.as_slice())
    }

    /// The answered scrapes of `target`, in time order.
    pub(crate) fn ok(&self, target: &str) -> Vec<&'a Scrape> {
        self.all(target).iter().copied().filter(|s| s.ok).collect()
    }

    /// The answered scrapes of `target` from the last one at or before `from_us` to the first
    /// one at or after `to_us`, and whether each end was found. Without a scrape before, the
    /// span starts at the first scrape and counters are read from zero (they start at zero
    /// when the process starts, which is before the run).
    pub(crate) fn span(&self, target: &str, from_us: u64, to_us: u64) -> Span<'a> {
        let ok = self.ok(target);
        let first = ok.iter().rposition(|s| s.t_us <= from_us);
        let last = ok.iter().position(|s| s.t_us >= to_us);
        let start = first.unwrap_or(0);
        let end = last.map_or(ok.len(), |i| i + 1);
        Span {
            scrapes: ok.get(start..end).map(<[_]>::to_vec).unwrap_or_default(),
            has_before: first.is_some(),
            has_after: last.is_some(),
        }
    }

    /// The answered scrapes of `target` taken within `[from_us, to_us]`.
    pub(crate) fn within(&self, target: &str, from_us: u64, to_us: u64) -> Vec<&'a Scrape> {
        self.ok(target)
            .into_iter()
            .filter(|s| s.t_us >= from_us && s.t_us <= to_us)
            .collect()
    }
}

pub(crate) struct Span<'a> {
    pub scrapes: Vec<&'a Scrape>,
    pub has_before: bool,
    pub has_after: bool,
}

impl<'a> Span<'a> {
    /// The answered scrapes of a target within an interval, read from the first of them.
    pub(crate) fn inside(scrapes: Vec<&'a Scrape>) -> Self {
        Span {
            scrapes,
            has_before: true,
            has_after: true,
        }
    }

    fn parts(&self) -> (Option<&'a Scrape>, &[&'a Scrape]) {
        if self.has_before {
            (
                self.scrapes.first().copied(),
                self.scrapes.get(1..).unwrap_or(&[]),
            )
        } else {
            (None, &self.scrapes[..])
        }
    }

    /// Counter increase over the span; from zero at the start when there was no scrape before.
    pub(crate) fn increase(&self, name: &str, keep: &dyn Fn(&Labels) -> bool) -> f64 {
        let (base, rest) = self.parts();
        increase_over(base, rest, name, keep)
    }

    /// [`Span::increase`] summed by the value of one label.
    pub(crate) fn increase_by(
        &self,
        name: &str,
        keep: &dyn Fn(&Labels) -> bool,
        label: &str,
    ) -> BTreeMap<String, f64> {
        let (base, rest) = self.parts();
        let mut out: BTreeMap<String, f64> = BTreeMap::new();
        let mut prev = base;
        for next in rest {
            for (labels, inc) in increases(prev, next, name, keep) {
                let key = labels.get(label).cloned().unwrap_or_default();
                *out.entry(key).or_default() += inc;
            }
            prev = Some(next);
        }
        out
    }

    /// Time covered, microseconds.
    pub(crate) fn bounds(&self) -> Option<(u64, u64)> {
        Some((self.scrapes.first()?.t_us, self.scrapes.last()?.t_us))
    }
}

/// Sum of counter increases over consecutive scrapes, starting from `base` (zero if None).
pub(crate) fn increase_over(
    base: Option<&Scrape>,
    rest: &[&Scrape],
    name: &str,
    keep: &dyn Fn(&Labels) -> bool,
) -> f64 {
    let mut total = 0.0;
    let mut prev = base;
    for next in rest {
        total += increases(prev, next, name, keep)
            .iter()
            .map(|(_, v)| v)
            .sum::<f64>();
        prev = Some(next);
    }
    total
}

/// Increase of every series of counter `name` in `next` since `prev` (None: since zero).
pub(crate) fn increases<'s>(
    prev: Option<&Scrape>,
    next: &'s Scrape,
    name: &str,
    keep: &dyn Fn(&Labels) -> bool,
) -> Vec<(&'s Labels, f64)> {
    let restarted =
        prev.is_some_and(
            |p| match (gauge(p, START_TIME, &[]), gauge(next, START_TIME, &[])) {
                (Some(a), Some(b)) => a != b,
                _ => false,
            },
        );
    // Indexed once per pair: a node exports hundreds of series and runs are scraped
    // thousands of times.
    let before: BTreeMap<&Labels, f64> = match prev {
        Some(p) if !restarted => p
            .samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| (&s.labels, s.value))
            .collect(),
        _ => BTreeMap::new(),
    };
    next.samples
        .iter()
        .filter(|s| s.name == name && keep(&s.labels))
        .map(|s| {
            let before = before.get(&s.labels).copied();
            let inc = match before {
                Some(b) if s.value >= b => s.value - b,
                // A counter that went down restarted from zero.
                _ => s.value.max(0.0),
            };
            (&s.labels, inc)
        })
        .collect()
}

/// The first sample of `name` whose labels include all of `want`.
pub(crate) fn gauge(scrape: &Scrape, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.name == name && has_labels(s, want))
        .map(|s| s.value)
}

pub(crate) fn has_labels(s: &Sample, want: &[(&str, &str)]) -> bool {
    want.iter()
        .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
}

/// A label filter matching every series whose labels include `want`.
pub(crate) fn labels_include<'w>(want: &'w [(&'w str, &'w str)]) -> impl Fn(&Labels) -> bool + 'w {
    move |l: &Labels| want.iter().all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::fixtures::{sample, scrape};

    #[test]
    fn counter_increase_survives_restarts() {
        let c = |v: f64| sample("faultline_messages_sent_total", &[("kind", "read")], v);
        let st = |v: f64| sample(START_TIME, &[], v);
        let s = [
            scrape(1, "s1", vec![c(10.0), st(100.0)]),
            scrape(2, "s1", vec![c(15.0), st(100.0)]),
            // Restarted and already past the old value: only the start time shows it.
            scrape(3, "s1", vec![c(20.0), st(200.0)]),
            // Went down: a restart the start time missed.
            scrape(4, "s1", vec![c(4.0), st(200.0)]),
        ];
        let refs: Vec<&Scrape> = s.iter().collect();
        let all = |_: &Labels| true;
        assert_eq!(
            increase_over(None, &refs, "faultline_messages_sent_total", &all),
            10.0 + 5.0 + 20.0 + 4.0
        );
        assert_eq!(
            increase_over(
                Some(refs[0]),
                &refs[1..],
                "faultline_messages_sent_total",
                &all
            ),
            5.0 + 20.0 + 4.0
        );
    }

    #[test]
    fn span_finds_the_scrapes_around_an_interval() {
        let s = [
            scrape(1_000, "proxy", vec![]),
            scrape(2_000, "proxy", vec![]),
            scrape(3_000, "proxy", vec![]),
            scrape(4_000, "proxy", vec![]),
        ];
        let idx = ScrapeIndex::new(&s);
        let span = idx.span("proxy", 2_500, 3_500);
        let times: Vec<u64> = span.scrapes.iter().map(|s| s.t_us).collect();
        assert_eq!(times, vec![2_000, 3_000, 4_000]);
        assert!(span.has_before && span.has_after);
        let open = idx.span("proxy", 500, 9_000);
        assert!(!open.has_before && !open.has_after);
        assert_eq!(open.scrapes.len(), 4);
        assert!(idx.span("s9", 0, 1).scrapes.is_empty());
    }
}
