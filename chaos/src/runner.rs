//! `faultline-chaos run`: bring a cluster up, run the workload and the
//! nemesis schedule, scrape metrics throughout, heal and wait for
//! quiescence, collect histories and states, judge, write the report, and
//! tear everything down, on success, on error and on Ctrl-C alike.
//!
//! A first Ctrl-C ends the run early but keeps its evidence: the workload
//! stops (operations in flight are recorded as pending), every fault heals,
//! states and histories are collected with short timeouts, and the run is
//! judged with the verdict at best `unknown` ("interrupted at 12.3 s"). A
//! second Ctrl-C stops at once.

use crate::judge::{self, JudgeOptions};
use crate::metrics::{ControllerMetrics, FaultLabels};
use crate::nemesis::Nemesis;
use crate::platform::compose::{self, ComposeCluster, StackOptions};
use crate::platform::kube_api::{ApiConfig, KubeApi};
use crate::platform::kubernetes::{self, KubeCluster};
use crate::platform::local::{self, LocalCluster, LocalOptions};
use crate::platform::{self, Platform};
use crate::record::scrapes::ScrapeLog;
use crate::record::{self, FaultWindow, HistoryFile, NodeInfo, RunMeta, RunRecord, Scrape};
use crate::results::{Results, Valid};
use crate::scenario::{self, Scenario, Schedule};
use crate::systems::ChaosSystem;
use crate::workload::{ClientDriver, Recorder, Roles};
use crate::{prom, report};
use anyhow::Context;
use faultline_node::api::{HistoryDump, Outcome};
use faultline_node::runtime::history::unix_us;
use faultline_node::system::System;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often every node and the proxy are scraped.
const SCRAPE_EVERY: Duration = Duration::from_millis(500);

pub struct RunOptions {
    pub out: Option<PathBuf>,
    pub replay: Option<PathBuf>,
    pub node_bin: PathBuf,
    pub quiet: bool,
    /// Overrides the scenario's `platform`.
    pub platform: Option<String>,
    /// The controller's metrics, when it exports them (`--metrics`).
    pub metrics: Option<Arc<ControllerMetrics>>,
    /// Set by a caller that was asked to stop (a schedule's signal): a run
    /// starting with it set is cut short at once, as if interrupted.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Also write every scrape in full (`scrapes.jsonl`), beside the
    /// compact `scrapes.gz` the judge reads.
    pub keep_scrapes: bool,
}

/// SIGINT and SIGTERM during a run, registered before anything else is done
/// so that none is missed: the first cuts the run short (faults healed,
/// evidence saved, judged `unknown`), the second stops it without judging.
struct Interrupt {
    /// 0, or the Unix time (µs) of the first signal.
    first_us: Arc<AtomicU64>,
    twice: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Interrupt {
    fn listen() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        // Registered here, synchronously: a signal from now on is seen.
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        let first_us = Arc::new(AtomicU64::new(0));
        let twice = Arc::new(tokio::sync::Notify::new());
        let task = {
            let (first_us, twice) = (first_us.clone(), twice.clone());
            tokio::spawn(async move {
                for n in 0..2 {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                    if n == 0 {
                        first_us.store(unix_us(), Ordering::SeqCst);
                        eprintln!("\ninterrupted: healing and saving the evidence (Ctrl-C again to stop at once)");
                    } else {
                        twice.notify_one();
                    }
                }
            })
        };
        Ok(Interrupt {
            first_us,
            twice,
            task,
        })
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        // A schedule's later runs listen anew.
        self.task.abort();
    }
}

/// Runs a scenario; returns the judged results and the run directory.
/// SIGINT or SIGTERM cuts it short: faults healed, evidence saved, judged.
pub async fn run(scn: &Scenario, opts: RunOptions) -> anyhow::Result<(Results, PathBuf)> {
    let t0 = Instant::now();
    let interrupt = Interrupt::listen()?;
    if opts
        .cancel
        .as_ref()
        .is_some_and(|c| c.load(Ordering::SeqCst))
    {
        interrupt.first_us.store(unix_us(), Ordering::SeqCst);
    }
    if let Some(m) = &opts.metrics {
        m.run_started(&scn.name);
    }
    let result = run_inner(scn, &opts, &interrupt).await;
    if let Some(m) = &opts.metrics {
        let verdict = result.as_ref().map_or(Valid::Unknown, |(r, _)| r.valid);
        m.run_finished(&scn.name, verdict, t0.elapsed().as_secs_f64());
    }
    result
}

async fn run_inner(
    scn: &Scenario,
    opts: &RunOptions,
    interrupt: &Interrupt,
) -> anyhow::Result<(Results, PathBuf)> {
    let template = local::load_template(&scn.cluster_path)?;
    let servers = template.servers();
    let clients = template.clients();
    let schedule: Schedule = match &opts.replay {
        Some(dir) => {
            let text = std::fs::read_to_string(dir.join("schedule.json"))
                .with_context(|| format!("{} holds no schedule.json", dir.display()))?;
            serde_json::from_str(&text).context("schedule.json")?
        }
        None => scenario::expand(&scn.file, &servers, &clients).map_err(anyhow::Error::msg)?,
    };
    let run_dir = opts
        .out
        .clone()
        .unwrap_or_else(|| default_run_dir(&scn.name));
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create {}", run_dir.display()))?;
    std::fs::copy(&scn.path, run_dir.join("scenario.yaml")).ok();
    record::write_json(&run_dir.join("schedule.json"), &schedule)?;
    eprintln!("run directory: {}", run_dir.display());
    eprint!("{}", schedule.describe());
    for w in &scn.warnings {
        eprintln!("warning: {w}");
    }

    let platform = opts
        .platform
        .clone()
        .unwrap_or_else(|| scn.file.platform.clone());
    match platform.as_str() {
        "local" => {
            let mut cluster = LocalCluster::create(
                &template,
                &run_dir,
                LocalOptions {
                    node_bin: opts.node_bin.clone(),
                    seed: schedule.seed,
                    bugs: scn.file.bugs.clone(),
                },
            )
            .await?;
            let result = run_on(scn, &schedule, &mut cluster, &run_dir, opts, interrupt).await;
            cluster.teardown().await;
            Ok((result?, run_dir))
        }
        "compose" => {
            let was_up = compose::running_stack().await?.is_some();
            let stack_dir = run_dir.join("compose");
            let stack_opts = StackOptions::new(&stack_dir, &template.base_dir());
            let stack = compose::stack(
                &template,
                schedule.seed,
                template.secret.clone(),
                &scn.file.bugs,
                &stack_opts,
            )?;
            let mut cluster = ComposeCluster::create(&stack, &stack_dir, stack_opts)?;
            let result = run_on(scn, &schedule, &mut cluster, &run_dir, opts, interrupt).await;
            if let Err(e) = cluster.save_logs(&run_dir.join("logs")).await {
                eprintln!("warning: cannot save the containers' logs: {e:#}");
            }
            // As the run found the project: a cluster that was up stays up
            // (this run's, healed); none stays none.
            if was_up {
                if let Err(e) = heal_everything(&mut cluster).await {
                    eprintln!("warning: the cluster may keep a fault: {e:#}");
                }
                eprintln!("the compose cluster stays up (faults healed); `make down` removes it");
            } else {
                cluster.down().await;
            }
            Ok((result?, run_dir))
        }
        "kubernetes" => {
            anyhow::ensure!(
                scn.file.bugs.is_empty(),
                "planted bugs ({}) need a cluster made for the run; the kubernetes platform runs against the deployed cluster, which has none",
                scn.file.bugs.join(", ")
            );
            let api = KubeApi::new(ApiConfig::from_env()?)?;
            let deployed = kubernetes::deployed_cluster(&template)?;
            let endpoints = kubernetes::Endpoints::services(&deployed.ids());
            let mut cluster = KubeCluster::new(deployed, api, endpoints)?;
            let result = run_on(scn, &schedule, &mut cluster, &run_dir, opts, interrupt).await;
            // The cluster was there before the run and stays, healed.
            if let Err(e) = heal_everything(&mut cluster).await {
                eprintln!("warning: the cluster may keep a fault: {e:#}");
            }
            cluster.down().await;
            Ok((result?, run_dir))
        }
        other => anyhow::bail!(
            "there is no platform {other:?} (use one of: {})",
            scenario::PLATFORMS.join(", ")
        ),
    }
}

/// Clears every packet and message fault and brings every node back, on a
/// cluster that outlives the run.
async fn heal_everything<P: Platform>(cluster: &mut P) -> anyhow::Result<()> {
    let system = cluster.cluster().file.system.clone();
    let deadline = cluster.cluster().op_deadline;
    let mut nemesis =
        Nemesis::new(crate::systems::op_faults_of(&system)?, deadline).with_margin(Duration::ZERO);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    nemesis.heal_all(cluster, &http).await
}

/// Drives the scenario on a created cluster until it is judged, or until a
/// second Ctrl-C. The caller tears the cluster down either way.
async fn run_on<P: Platform>(
    scn: &Scenario,
    schedule: &Schedule,
    cluster: &mut P,
    run_dir: &Path,
    opts: &RunOptions,
    interrupt: &Interrupt,
) -> anyhow::Result<Results> {
    let interrupted = &interrupt.first_us;
    let system = cluster.cluster().file.system.clone();
    let result = tokio::select! {
        r = async {
            crate::with_chaos_system!(
                system.as_str(),
                |S| drive::<S, _>(scn, schedule, cluster, run_dir, opts, interrupted).await,
                else Err(anyhow::anyhow!("the controller has no support for system {system:?}"))
            )
        } => r,
        _ = interrupt.twice.notified() => Err(anyhow::anyhow!("interrupted twice: stopped without judging")),
    };
    result
}

fn default_run_dir(name: &str) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("{name}-{secs}"))
}

async fn drive<S: ChaosSystem, P: Platform>(
    scn: &Scenario,
    schedule: &Schedule,
    cluster: &mut P,
    run_dir: &Path,
    opts: &RunOptions,
    interrupted: &AtomicU64,
) -> anyhow::Result<Results> {
    let (quiet, metrics) = (opts.quiet, opts.metrics.as_deref());
    let cut_short = || interrupted.load(Ordering::SeqCst) != 0;
    // Faults with a selector resolved when they apply get their targets here.
    let mut schedule = schedule.clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()?;
    let ids = cluster.cluster().ids();
    cluster.up().await?;
    platform::wait_ready(cluster, &http, &ids, Duration::from_secs(30))
        .await
        .with_context(|| format!("see the logs in {}", run_dir.join("logs").display()))?;
    let roles: Roles = Arc::new(std::sync::RwLock::new(
        cluster.cluster().clients().into_iter().collect(),
    ));
    // Every node gets a driver (idle while it is not a client), unless the
    // scenario names the clients to drive.
    // Initial clients come first, so each keeps the seed it had by position.
    let workload_clients: Vec<String> = if scn.file.workload.clients.is_empty() {
        let first = cluster.cluster().clients();
        let rest = ids.iter().filter(|i| !first.contains(i)).cloned();
        first.iter().cloned().chain(rest).collect()
    } else {
        scn.file.workload.clients.clone()
    };
    let params = cluster
        .cluster()
        .params::<<S::Node as System>::Params>()
        .context("the cluster holds no parameters of its system")?;
    let duration = Duration::from_millis(scn.file.duration.ms());

    // Scraper: every node and the proxy, appended to scrapes.jsonl.
    let stop_scrape = Arc::new(AtomicBool::new(false));
    let scraper = {
        let mut log = ScrapeLog::create(run_dir, opts.keep_scrapes)
            .with_context(|| format!("cannot write the scrapes in {}", run_dir.display()))?;
        let targets: Vec<(String, String)> = ids
            .iter()
            .map(|id| (id.clone(), cluster.admin_url(id)))
            .collect();
        let proxy = cluster.proxy().cloned();
        let (http, stop) = (http.clone(), stop_scrape.clone());
        tokio::spawn(async move {
            // A scrape that cannot be written (a full disk) is said once;
            // the judge then finds fewer scrapes and says what it could not
            // measure.
            let mut write_failed = false;
            let mut said = |e: std::io::Error| {
                if !write_failed {
                    tracing::warn!("cannot write the scrapes: {e}");
                    eprintln!("warning: cannot write the scrapes: {e}");
                    write_failed = true;
                }
            };
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                for (id, url) in &targets {
                    let t_us = unix_us();
                    let text = match http
                        .get(format!("{url}/metrics"))
                        .timeout(Duration::from_millis(800))
                        .send()
                        .await
                    {
                        Ok(r) => r.text().await.ok(),
                        Err(_) => None,
                    };
                    let s = Scrape {
                        t_us,
                        target: id.clone(),
                        ok: text.is_some(),
                        samples: text.map(|t| prom::parse(&t)).unwrap_or_default(),
                    };
                    if let Err(e) = log.append(&s) {
                        said(e);
                    }
                }
                if let Some(p) = &proxy {
                    let t_us = unix_us();
                    let text = p.metrics().await.ok();
                    let s = Scrape {
                        t_us,
                        target: "proxy".into(),
                        ok: text.is_some(),
                        samples: text.map(|t| prom::parse(&t)).unwrap_or_default(),
                    };
                    if let Err(e) = log.append(&s) {
                        said(e);
                    }
                }
                if let Err(e) = log.flush() {
                    said(e);
                }
                tokio::time::sleep(SCRAPE_EVERY.saturating_sub(t0.elapsed())).await;
            }
            if let Err(e) = log.finish() {
                said(e);
            }
        })
    };

    // Workload.
    let start_us = unix_us();
    let t_start = Instant::now();
    // Written now with `end_us: 0` and again at the end: a controller that
    // dies between leaves a run `check` can still judge from history.jsonl.
    let meta = RunMeta {
        scenario: scn.name.clone(),
        system: cluster.cluster().file.system.clone(),
        seed: schedule.seed,
        start_us,
        end_us: 0,
        nodes: cluster
            .cluster()
            .nodes
            .iter()
            .map(|n| NodeInfo {
                id: n.id.clone(),
                role: n.role.clone(),
            })
            .collect(),
        system_meta: S::meta(cluster.cluster()).context("the system's run facts")?,
        liveness_bound_ms: scn.file.checks.liveness_bound.ms(),
        bugs: scn.file.bugs.clone(),
        interrupted_us: None,
        controller_died: false,
    };
    record::write_json(&run_dir.join("meta.json"), &meta)?;
    let rec = Arc::new(
        Recorder::with_journal(&run_dir.join("history.jsonl"))
            .context("cannot write the history journal")?,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut drivers = Vec::new();
    for (i, id) in workload_clients.iter().enumerate() {
        let d = ClientDriver::<S> {
            id: id.clone(),
            url: cluster.admin_url(id),
            secret: cluster.secret().to_string(),
            roles: roles.clone(),
            params: params.clone(),
            spec: scn.file.workload.clone(),
            seed: schedule.seed.wrapping_add(i as u64),
        };
        drivers.push(tokio::spawn(d.run(http.clone(), rec.clone(), stop.clone())));
    }

    // Nemesis, on the schedule's clock.
    let mut nemesis = Nemesis::new(
        crate::systems::op_fault_bodies::<S>()?,
        cluster.cluster().op_deadline,
    );
    let windows: Arc<Mutex<Vec<FaultWindow>>> = Arc::default();
    // (time from start, fault index, apply?)
    let mut events: Vec<(u64, usize, bool)> = Vec::new();
    for (i, f) in schedule.faults.iter().enumerate() {
        events.push((f.at_ms, i, true));
        if let Some(d) = f.for_ms {
            events.push(((f.at_ms + d).min(duration.as_millis() as u64), i, false));
        }
    }
    events.sort_by_key(|e| (e.0, !e.2 as u8));
    // Fault id -> its window's index while it holds.
    let mut open: BTreeMap<usize, usize> = BTreeMap::new();
    let progress = Progress::new(quiet, duration);
    let mut next = 0;
    while t_start.elapsed() < duration && !cut_short() {
        let seen = next;
        while next < events.len() && t_start.elapsed() >= Duration::from_millis(events[next].0) {
            let (_, i, apply) = events[next];
            next += 1;
            if apply && schedule.faults[i].resolve.as_deref() == Some("primary") {
                // Resolved now (and kept for the heal): it may have moved.
                let mut states = Vec::new();
                for id in cluster.cluster().servers() {
                    if let Some(s) =
                        platform::state(cluster, &http, &id, Duration::from_secs(2)).await
                    {
                        states.push(s);
                    }
                }
                schedule.faults[i].targets = S::primary(&states).into_iter().collect();
            }
            let f = &schedule.faults[i];
            if apply {
                let lease =
                    Duration::from_millis(f.for_ms.unwrap_or(duration.as_millis() as u64) + 5_000);
                let (detail, applied) = match nemesis.apply(f, cluster, &http, lease).await {
                    Ok(d) => (d, true),
                    Err(e) => (json!({"error": format!("{e:#}")}), false),
                };
                // A partition's targets are the side cut off, when it has one.
                let targets = if f.targets.is_empty() {
                    detail["shape"]["minority"]
                        .as_array()
                        .or_else(|| f.params["minority"].as_array())
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(String::from))
                                .collect()
                        })
                        .or_else(|| {
                            detail["shape"]["node"]
                                .as_str()
                                .map(|n| vec![n.to_string()])
                        })
                        .unwrap_or_default()
                } else {
                    f.targets.clone()
                };
                if let Ok(mut w) = windows.lock() {
                    open.insert(f.id, w.len());
                    w.push(FaultWindow {
                        id: f.id,
                        fault: f.fault.clone(),
                        layer: f.layer.clone(),
                        targets,
                        start_us: unix_us(),
                        end_us: None,
                        in_model: f.in_model,
                        detail,
                    });
                }
                let on = windows
                    .lock()
                    .ok()
                    .and_then(|w| w.last().map(|w| w.describe_targets()))
                    .unwrap_or_default();
                progress.note(&format!("applied #{} {} on {on}", f.id, f.fault));
                // Only what holds is exported: a failed apply is in its window.
                if let Some(m) = metrics.filter(|_| applied) {
                    if let Some(labels) = windows
                        .lock()
                        .ok()
                        .and_then(|w| w.last().map(|w| FaultLabels::of(&scn.name, w)))
                    {
                        m.fault_applied(&labels, lease.as_secs_f64());
                    }
                }
                if let Some(skipped) = windows.lock().ok().and_then(|w| {
                    w.last().and_then(|w| {
                        w.detail["results"]
                            .as_array()
                            .map(|r| r.iter().filter(|x| x.get("skipped").is_some()).count())
                    })
                }) {
                    if skipped > 0 {
                        progress.note(&format!(
                            "warning: #{} {} did nothing on {skipped} target(s) (see its window)",
                            f.id, f.fault
                        ));
                    }
                }
                if S::OP_FAULTS.contains(&f.fault.as_str()) {
                    learn_roles(cluster, &http, &ids, &roles).await;
                }
            } else {
                if let Err(e) = nemesis.heal(f, cluster, &http).await {
                    progress.note(&format!("healing #{} failed: {e:#}", f.id));
                }
                if let (Some(ix), Ok(mut w)) = (open.remove(&f.id), windows.lock()) {
                    if let Some(win) = w.get_mut(ix) {
                        win.end_us = Some(unix_us());
                        if let Some(m) = metrics {
                            m.fault_healed(&FaultLabels::of(&scn.name, win));
                        }
                    }
                }
                progress.note(&format!("healed #{} {}", f.id, f.fault));
            }
        }
        if next != seen {
            // Kept current as faults apply and heal, for a controller that dies.
            let now = windows.lock().map(|w| w.clone()).unwrap_or_default();
            if let Err(e) = record::write_json(&run_dir.join("windows.json"), &now) {
                progress.note(&format!("warning: cannot write windows.json: {e}"));
            }
        }
        let active: Vec<String> = open
            .keys()
            .filter_map(|id| schedule.faults.iter().find(|f| f.id == *id))
            .map(|f| format!("#{} {}", f.id, f.fault))
            .collect();
        progress.tick(t_start.elapsed(), &rec, &active);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Quiescence: stop the workload, heal everything, wait for the cluster.
    stop.store(true, Ordering::Relaxed);
    for d in drivers {
        if cut_short() {
            // Operations in flight stay in the history as pending.
            d.abort();
        } else {
            let _ = d.await;
        }
    }
    nemesis.heal_all(cluster, &http).await?;
    if let Some(m) = metrics {
        m.faults_cleared(&scn.name);
    }
    let healed_us = unix_us();
    if let Ok(mut w) = windows.lock() {
        for win in w.iter_mut().filter(|w| w.end_us.is_none()) {
            // Kills and pauses without `for` heal here; operation faults are instantaneous.
            if win.layer != "process" || !S::OP_FAULTS.contains(&win.fault.as_str()) {
                win.end_us = Some(healed_us);
            } else {
                win.end_us = Some(win.start_us);
            }
        }
    }
    progress.done();
    let quiet_for = Duration::from_millis(scn.file.checks.quiescence.ms());
    if !cut_short() {
        if let Err(e) = platform::wait_ready(cluster, &http, &ids, quiet_for).await {
            eprintln!("warning: {e:#}");
        }
    }
    // The system's final reads (tokens: with write-back, which puts every
    // token's latest value at a majority, so the state check can demand it).
    // They are in the history. They go through a node that is a client now
    // (operation faults can move roles).
    learn_roles(cluster, &http, &ids, &roles).await;
    let reader = roles
        .read()
        .ok()
        .and_then(|r| r.iter().next().cloned())
        .unwrap_or_default();
    let timeout = Duration::from_millis(scn.file.workload.op_timeout.ms().max(1000));
    let final_reads = if cut_short() || reader.is_empty() {
        Vec::new()
    } else {
        S::final_reads(cluster.cluster())
    };
    for request in &final_reads {
        let t0 = Instant::now();
        loop {
            let done = rec
                .run::<S::Node>(
                    &http,
                    &cluster.admin_url(&reader),
                    cluster.secret(),
                    &reader,
                    request,
                    timeout,
                )
                .await;
            if done.op.outcome == Outcome::Ok || t0.elapsed() > quiet_for || cut_short() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // The system's own work in flight (snapshot waves, delayed messages)
    // settles before the evidence is read, within the quiescence bound.
    if !cut_short() {
        let t0 = Instant::now();
        // Bounded by the quiescence bound.
        while t0.elapsed() < quiet_for && !cut_short() {
            let states = read_states(&http, cluster, &ids, Duration::from_secs(2)).await;
            if S::is_quiet(&states) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    // One more round of scrapes after the heal, so every fault window has a
    // measurement on both sides.
    if !cut_short() {
        tokio::time::sleep(2 * SCRAPE_EVERY).await;
    }
    // Evidence is collected within a few seconds even from a sick cluster.
    let ask = if cut_short() {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(10)
    };
    let end_us = unix_us();
    stop_scrape.store(true, Ordering::Relaxed);
    let _ = scraper.await;

    // Evidence: states, histories (ours, and each node's own for reference).
    let states = read_states(&http, cluster, &ids, ask).await;
    for id in &ids {
        if let Ok(r) = http
            .get(format!("{}/history", cluster.admin_url(id)))
            .timeout(ask)
            .send()
            .await
        {
            if let Ok(v) = r.json::<HistoryDump>().await {
                if !v.ops.is_empty() {
                    record::write_json_gz(
                        &run_dir.join("node-history").join(format!("{id}.json.gz")),
                        &v,
                    )?;
                }
            }
        }
    }
    let histories: BTreeMap<String, HistoryFile> = rec
        .take()
        .into_iter()
        .map(|(c, ops)| (c, HistoryFile { ops, truncated: 0 }))
        .collect();
    let record = RunRecord {
        meta: RunMeta {
            end_us,
            interrupted_us: Some(interrupted.load(Ordering::SeqCst)).filter(|t| *t != 0),
            ..meta
        },
        windows: windows.lock().map(|w| w.clone()).unwrap_or_default(),
        histories,
        states,
        scrapes: Vec::new(),
    };
    record.save(run_dir)?;
    // history/ holds every operation the journal holds (both come from the
    // same recorder); the journal only mattered had the controller died
    // before this.
    let journal = run_dir.join("history.jsonl");
    if let Err(e) = std::fs::remove_file(&journal) {
        tracing::warn!(error = %e, "cannot remove {}", journal.display());
    }
    judge_dir(
        run_dir,
        scn.file.checks.linearizability_timeout.ms(),
        scn.file.checks.linearizability_memory_mb,
    )
}

/// Reads every node's role from its `/state` and sets `roles` to the nodes
/// that are clients now. A node that does not answer keeps its last role.
async fn learn_roles<P: Platform>(
    cluster: &P,
    http: &reqwest::Client,
    ids: &[String],
    roles: &Roles,
) {
    let client_roles = cluster.cluster().system.client_roles;
    for id in ids {
        let Some(s) = platform::state(cluster, http, id, Duration::from_secs(2)).await else {
            continue;
        };
        if let Ok(mut r) = roles.write() {
            if client_roles.contains(&s.role.as_str()) {
                r.insert(id.clone());
            } else {
                r.remove(id);
            }
        }
    }
}

/// Every node's `/state` JSON that answered within `ask`, by node.
async fn read_states<P: Platform>(
    http: &reqwest::Client,
    cluster: &P,
    ids: &[String],
    ask: Duration,
) -> BTreeMap<String, Value> {
    let mut states = BTreeMap::new();
    for id in ids {
        if let Ok(r) = http
            .get(format!("{}/state", cluster.admin_url(id)))
            .timeout(ask)
            .send()
            .await
        {
            if let Ok(v) = r.json::<Value>().await {
                states.insert(id.clone(), v);
            }
        }
    }
    states
}

/// Judges a recorded run directory and writes its report.
/// `lin_timeout_ms` and `lin_memory_mb` bound the linearizability search.
pub fn judge_dir(
    run_dir: &Path,
    lin_timeout_ms: u64,
    lin_memory_mb: u64,
) -> anyhow::Result<Results> {
    let record = RunRecord::load(run_dir)?;
    let opts = JudgeOptions {
        lin_time_limit: Duration::from_millis(lin_timeout_ms),
        lin_memory_limit: usize::try_from(lin_memory_mb << 20).unwrap_or(usize::MAX),
        ..JudgeOptions::default()
    };
    let results = judge::judge(&record, &run_dir.display().to_string(), &opts);
    report::write_all(&results, run_dir)?;
    Ok(results)
}

/// A one-line progress bar on a terminal, periodic lines otherwise.
struct Progress {
    quiet: bool,
    tty: bool,
    total: Duration,
    last_line: Mutex<Instant>,
}

impl Progress {
    fn new(quiet: bool, total: Duration) -> Self {
        Progress {
            quiet,
            tty: std::io::stderr().is_terminal(),
            total,
            last_line: Mutex::new(Instant::now()),
        }
    }

    fn tick(&self, elapsed: Duration, rec: &Recorder, active: &[String]) {
        if self.quiet {
            return;
        }
        let c = &rec.counters;
        let frac = (elapsed.as_secs_f64() / self.total.as_secs_f64().max(1e-9)).min(1.0);
        let width = 30;
        let filled = (frac * width as f64) as usize;
        let line = format!(
            "[{}{}] {:>5.1}/{:.0}s  ok {}  failed {}  unknown {}  {}",
            "=".repeat(filled),
            " ".repeat(width - filled),
            elapsed.as_secs_f64(),
            self.total.as_secs_f64(),
            c.ok.load(Ordering::Relaxed),
            c.failed.load(Ordering::Relaxed),
            c.unknown.load(Ordering::Relaxed),
            if active.is_empty() {
                "no faults".to_string()
            } else {
                format!("faults: {}", active.join(" "))
            }
        );
        if self.tty {
            eprint!("\r\x1b[2K{line}");
        } else if let Ok(mut last) = self.last_line.lock() {
            if last.elapsed() >= Duration::from_secs(5) {
                *last = Instant::now();
                eprintln!("{line}");
            }
        }
    }

    fn note(&self, msg: &str) {
        if self.quiet {
            return;
        }
        if self.tty {
            eprint!("\r\x1b[2K");
        }
        eprintln!("  {msg}");
    }

    fn done(&self) {
        if !self.quiet && self.tty {
            eprintln!();
        }
        if !self.quiet {
            eprintln!("workload done; healing and waiting for quiescence");
        }
    }
}
