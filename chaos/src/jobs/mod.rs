//! `faultline-chaos schedule`: scheduled chaos jobs. Rounds of runs (every
//! scenario given, one after another) start `--every` interval or on a
//! `--cron` pattern; each run is judged as `run` would judge it, kept in the
//! results directory beside an index page (`index`), and counted in the
//! controller's metrics. SIGTERM or SIGINT stops the schedule: a run in
//! progress heals its faults and is judged (`unknown`, interrupted) first.
//! A schedule restarted on the same results directory reads its index and
//! goes on where it stopped.

pub mod index;
pub mod timing;

use crate::metrics::ControllerMetrics;
use crate::results::Valid;
use crate::runner::{self, RunOptions};
use crate::scenario::{self, Scenario};
use anyhow::Context;
use chrono::{DateTime, Utc};
use index::{Index, IndexEntry};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use timing::Timing;

pub struct ScheduleOptions {
    pub scenarios: Vec<PathBuf>,
    pub timing: Timing,
    /// Where runs and the index are kept.
    pub results: PathBuf,
    pub node_bin: PathBuf,
    /// Overrides every scenario's `platform`.
    pub platform: Option<String>,
    pub metrics: Arc<ControllerMetrics>,
    /// Stop after this many rounds (none: until a signal).
    pub rounds: Option<u32>,
    /// Keep only the last this many run directories (none: keep all).
    pub keep: Option<usize>,
}

/// How a schedule ended: by a signal, or after its `--rounds`, with the
/// worst verdict of the runs it made.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Signalled,
    Rounds(Valid),
}

/// The file that says a schedule is using a results directory: its pid.
const LOCK: &str = "schedule.pid";

/// Runs the schedule until a signal or its last round.
pub async fn schedule(opts: ScheduleOptions) -> anyhow::Result<Ended> {
    // Every scenario is checked before anything runs: a typo fails now, not
    // at three in the morning.
    let scenarios: Vec<Scenario> = opts
        .scenarios
        .iter()
        .map(|p| scenario::load(p).map_err(|e| anyhow::anyhow!("{e}")))
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(!scenarios.is_empty(), "name at least one scenario");
    std::fs::create_dir_all(&opts.results)
        .with_context(|| format!("cannot create {}", opts.results.display()))?;
    let _lock = Lock::take(&opts.results)?;
    let mut index = Index::load(&opts.results)?;
    for e in &index.runs {
        opts.metrics.restore(&e.scenario, e.valid(), 1, e.end_s);
    }
    let title = format!(
        "faultline schedule: {} {}",
        scenarios
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        opts.timing.describe()
    );
    if !index.runs.is_empty() {
        eprintln!(
            "{}: going on after {} earlier runs",
            opts.results.display(),
            index.runs.len()
        );
    }
    index.save(&opts.results, &title)?;

    let stop = Arc::new(AtomicBool::new(false));
    let signalled = Arc::new(tokio::sync::Notify::new());
    {
        let (stop, signalled) = (stop.clone(), signalled.clone());
        tokio::spawn(async move {
            faultline_node::runtime::wait_for_signal().await;
            stop.store(true, Ordering::SeqCst);
            signalled.notify_one();
        });
    }
    let mut worst = Valid::True;
    let mut rounds = 0u32;
    let mut last_start: Option<DateTime<Utc>> = index
        .runs
        .iter()
        .map(|e| e.start_s)
        .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))))
        .and_then(|s| DateTime::from_timestamp(s as i64, 0));
    while opts.rounds.is_none_or(|n| rounds < n) {
        let now = Utc::now();
        let due = opts.timing.next(last_start, now)?;
        opts.metrics.next_run_at(due.timestamp() as f64);
        if due > now {
            eprintln!("next round at {} UTC", due.format("%Y-%m-%d %H:%M:%S"));
            let wait = (due - now).to_std().unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = signalled.notified() => {}
            }
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
        // The slot, not the clock: a clock stepped back cannot find the
        // same slot again.
        last_start = Some(due);
        for scn in &scenarios {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let entry = run_one(scn, &opts, &stop).await;
            eprintln!("{}: {}", entry.dir, entry.summary);
            worst = worst.and(entry.valid());
            index.runs.push(entry);
            if let Some(keep) = opts.keep {
                for gone in index.prune(&opts.results, keep) {
                    eprintln!("removed {} (keeping the last {keep} runs)", gone.display());
                }
            }
            index.save(&opts.results, &title)?;
        }
        rounds += 1;
    }
    opts.metrics.next_run_at(0.0);
    Ok(if stop.load(Ordering::SeqCst) {
        Ended::Signalled
    } else {
        Ended::Rounds(worst)
    })
}

/// One run of one scenario into a new directory of the results; a run that
/// cannot be made is an `unknown` entry saying why.
async fn run_one(scn: &Scenario, opts: &ScheduleOptions, stop: &Arc<AtomicBool>) -> IndexEntry {
    let start = Utc::now();
    let dir = fresh_dir(&opts.results, &scn.name, start);
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let run = RunOptions {
        out: Some(dir),
        replay: None,
        node_bin: opts.node_bin.clone(),
        quiet: true,
        platform: opts.platform.clone(),
        metrics: Some(opts.metrics.clone()),
        cancel: Some(stop.clone()),
        keep_scrapes: false,
    };
    let (verdict, summary) = match runner::run(scn, run).await {
        Ok((results, _)) => (
            results.valid,
            crate::report::summary(&results)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
        ),
        Err(e) => (Valid::Unknown, format!("the run could not be made: {e:#}")),
    };
    IndexEntry {
        scenario: scn.name.clone(),
        dir: name,
        start_s: start.timestamp_millis() as f64 / 1000.0,
        end_s: Utc::now().timestamp_millis() as f64 / 1000.0,
        verdict: crate::metrics::verdict_name(verdict).to_string(),
        summary,
        pruned: false,
    }
}

/// `<results>/<scenario>-<UTC time>`, with a suffix if that exists already.
fn fresh_dir(results: &Path, name: &str, at: DateTime<Utc>) -> PathBuf {
    let base = format!("{name}-{}", at.format("%Y%m%dT%H%M%SZ"));
    (0..1000)
        .map(|i| match i {
            0 => results.join(&base),
            i => results.join(format!("{base}-{i}")),
        })
        .find(|p| !p.exists())
        .unwrap_or_else(|| results.join(format!("{base}-{}", std::process::id())))
}

/// One schedule per results directory: a second one would interleave runs
/// on the same cluster and overwrite the index. An exclusive `flock` on
/// `schedule.pid`, which the kernel drops when the process dies however it
/// dies; the file says who holds it (pid and host), for the message only.
struct Lock {
    /// Held for as long as the schedule runs; dropped, it unlocks.
    _held: nix::fcntl::Flock<std::fs::File>,
}

impl Lock {
    fn take(dir: &Path) -> anyhow::Result<Lock> {
        use std::io::{Seek, Write};
        let path = dir.join(LOCK);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut lock =
            match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                Ok(l) => l,
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    let holder = std::fs::read_to_string(&path).unwrap_or_default();
                    anyhow::bail!(
                        "a schedule (pid and host: {}) already uses {}; stop it first",
                        holder.trim(),
                        dir.display()
                    );
                }
                Err((_, e)) => anyhow::bail!("cannot lock {}: {e}", path.display()),
            };
        let who = format!("{} {}\n", std::process::id(), host_name());
        lock.set_len(0)
            .and_then(|()| lock.rewind())
            .and_then(|()| lock.write_all(who.as_bytes()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Lock { _held: lock })
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}
