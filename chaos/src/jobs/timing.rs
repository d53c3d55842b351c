//! When a schedule's next round of runs starts: every fixed interval
//! (`--every 30m`) or at the times of a cron pattern (`--cron "*/30 * * * *"`,
//! five fields, minute granularity, UTC; parsed by the `croner` crate).
//!
//! A round that overruns its slot, or slots missed while the schedule was
//! stopped, cause one round at once, never a pile of rounds to catch up.

use chrono::{DateTime, Utc};
use croner::Cron;
use std::str::FromStr;

#[derive(Clone, Debug)]
pub enum Timing {
    /// A round starts this many ms after the previous one started.
    Every(u64),
    /// A round starts at each time the pattern matches (UTC).
    Cron(Box<Cron>),
}

#[derive(Debug, thiserror::Error)]
pub enum TimingError {
    #[error("--every {0}: {1}")]
    Every(String, String),
    #[error("--cron {0:?}: {1} (write five fields, e.g. \"*/30 * * * *\")")]
    Cron(String, String),
    #[error("--cron {0:?} never matches after {1}")]
    Never(String, DateTime<Utc>),
}

/// The shortest interval `--every` accepts, ms: shorter would only run the
/// cluster back to back.
pub const MIN_EVERY_MS: u64 = 1_000;

impl Timing {
    /// `--every` as a scenario duration (`30m`, `90s`, `2h`), at least 1 s.
    pub fn every(text: &str) -> Result<Self, TimingError> {
        let ms = crate::scenario::parse_duration_text(text)
            .map_err(|e| TimingError::Every(text.into(), e))?;
        if ms < MIN_EVERY_MS {
            return Err(TimingError::Every(
                text.into(),
                format!("shorter than the minimum of {} s", MIN_EVERY_MS / 1000),
            ));
        }
        Ok(Timing::Every(ms))
    }

    pub fn cron(pattern: &str) -> Result<Self, TimingError> {
        if pattern.split_whitespace().count() != 5 && !pattern.trim_start().starts_with('@') {
            return Err(TimingError::Cron(pattern.into(), "not five fields".into()));
        }
        let cron = Cron::from_str(pattern)
            .map_err(|e| TimingError::Cron(pattern.into(), e.to_string()))?;
        Ok(Timing::Cron(Box::new(cron)))
    }

    /// When the next round starts, given when the last one started (none
    /// yet: `every` starts at once, `cron` at its next match).
    pub fn next(
        &self,
        last_start: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, TimingError> {
        let due = match (self, last_start) {
            (Timing::Every(_), None) => now,
            (Timing::Every(ms), Some(last)) => {
                last + chrono::Duration::milliseconds(i64::try_from(*ms).unwrap_or(i64::MAX))
            }
            (Timing::Cron(c), last) => {
                let from = last.unwrap_or(now);
                c.find_next_occurrence(&from, false)
                    .map_err(|_| TimingError::Never(c.pattern.to_string(), from))?
            }
        };
        Ok(due.max(now))
    }

    pub fn describe(&self) -> String {
        match self {
            Timing::Every(ms) => {
                format!("every {}", crate::report::fmt_duration(*ms as f64 / 1000.0))
            }
            Timing::Cron(c) => format!("at \"{}\" (UTC)", c.pattern),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, h, m, s)
            .single()
            .expect("a valid time")
    }

    #[test]
    fn every_starts_at_once_then_one_interval_after_each_start() {
        let t = Timing::every("30m").expect("valid");
        assert_eq!(t.next(None, at(10, 0, 0)).ok(), Some(at(10, 0, 0)));
        assert_eq!(
            t.next(Some(at(10, 0, 0)), at(10, 5, 0)).ok(),
            Some(at(10, 30, 0))
        );
        // A round that overran, or a schedule stopped for hours: once, now.
        assert_eq!(
            t.next(Some(at(10, 0, 0)), at(13, 7, 0)).ok(),
            Some(at(13, 7, 0))
        );
    }

    #[test]
    fn cron_waits_for_its_next_match() {
        let t = Timing::cron("*/30 * * * *").expect("valid");
        assert_eq!(t.next(None, at(10, 5, 0)).ok(), Some(at(10, 30, 0)));
        assert_eq!(
            t.next(Some(at(10, 30, 0)), at(10, 41, 0)).ok(),
            Some(at(11, 0, 0))
        );
        // Missed matches while stopped: one round now.
        assert_eq!(
            t.next(Some(at(8, 0, 0)), at(10, 41, 0)).ok(),
            Some(at(10, 41, 0))
        );
    }

    #[test]
    fn bad_timings_are_refused_with_the_reason() {
        for bad in ["0s", "500ms", "soon", "-5m", "40d"] {
            let e = Timing::every(bad).expect_err(bad).to_string();
            assert!(e.starts_with("--every"), "{e}");
        }
        for bad in ["* * * *", "61 * * * *", "every minute", "* * * * * * *"] {
            let e = Timing::cron(bad).expect_err(bad).to_string();
            assert!(e.contains("--cron"), "{e}");
        }
        assert!(Timing::every("2h").is_ok());
    }
}
