//! `faultline-chaos`: the chaos controller. `run` a scenario and judge it,
//! `schedule` runs, `check` a recorded run again, run the packet `proxy` alone.

use anyhow::Context;
use clap::{Parser, Subcommand};
use faultline_chaos::metrics::{self, ControllerMetrics};
use faultline_chaos::platform::compose::ComposeCluster;
use faultline_chaos::platform::local;
use faultline_chaos::proxy::{self, ProxyConfig};
use faultline_chaos::results::Valid;
use faultline_chaos::{jobs, report, runner, scenario, terminal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "faultline-chaos",
    version,
    about = "The faultline chaos controller"
)]
struct Cli {
    /// Log filter for the controller's own logs (RUST_LOG overrides).
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scenario: cluster up, workload and nemesis, judge, report, tear down.
    Run {
        scenario: PathBuf,
        /// Run directory (default: runs/<scenario>-<time>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Play the schedule recorded in a previous run directory again.
        #[arg(long)]
        replay: Option<PathBuf>,
        /// The faultline-node binary (default: next to this one).
        #[arg(long)]
        node_bin: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Where the cluster runs (overrides the scenario's `platform`):
        /// local, compose, or kubernetes (the cluster `kubectl apply -k
        /// k8s/overlays/<system>` deployed; FAULTLINE_KUBE_* outside a pod).
        #[arg(long, value_parser = ["local", "compose", "kubernetes"])]
        platform: Option<String>,
        /// Serve the controller's metrics on this address while the run
        /// goes on (GET /metrics), e.g. 127.0.0.1:9095.
        #[arg(long)]
        metrics: Option<SocketAddr>,
        /// Also keep every scrape in full as text (scrapes.jsonl, about
        /// 50 MB for 30 s of 12 targets) beside the compact scrapes.gz.
        #[arg(long)]
        keep_scrapes: bool,
    },
    /// Run scenarios again and again: every interval or on a cron pattern,
    /// each run judged and kept in a results directory with an index page.
    /// Stops on SIGTERM or Ctrl-C with every fault healed; restarted on the
    /// same directory, it goes on.
    #[command(group(clap::ArgGroup::new("when").required(true).args(["every", "cron"])))]
    Schedule {
        /// Scenario files; each round runs them all, one after another.
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
        /// A round starts this long after the previous one started (e.g.
        /// 30m, 1h; at least 1s). The first starts at once.
        #[arg(long)]
        every: Option<String>,
        /// A round starts when this five-field cron pattern matches (UTC),
        /// e.g. "*/30 * * * *".
        #[arg(long)]
        cron: Option<String>,
        /// Where runs, index.json and index.html are kept.
        #[arg(long, default_value = "runs/schedule")]
        results: PathBuf,
        /// Serve the controller's metrics here (GET /metrics).
        #[arg(long)]
        metrics: Option<SocketAddr>,
        /// Stop after this many rounds (default: until a signal); the exit
        /// code is then the worst verdict's, as for `run`.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        rounds: Option<u32>,
        /// Keep only the last this many run directories (the index keeps
        /// every verdict).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        keep: Option<u64>,
        #[arg(long)]
        node_bin: Option<PathBuf>,
        /// Where the clusters run (overrides each scenario's `platform`).
        #[arg(long, value_parser = ["local", "compose", "kubernetes"])]
        platform: Option<String>,
    },
    /// Judge a recorded run directory again and rewrite its report.
    Check {
        run_dir: PathBuf,
        /// Linearizability search bound in seconds (1..=3600).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
        /// Linearizability search memory bound in MiB (16..=65536).
        #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(16..=65536))]
        memory_mb: u64,
    },
    /// Start a cluster (nodes and proxy) and keep it running: detached local
    /// processes, or a docker compose stack (`--platform compose`).
    Up {
        #[arg(long, default_value = "clusters/default.yaml")]
        cluster: PathBuf,
        /// Local: the cluster's directory (default runs/local). Compose: the
        /// stack's directory (default compose/<system>).
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long)]
        node_bin: Option<PathBuf>,
        #[arg(long, default_value = "local", value_parser = ["local", "compose"])]
        platform: String,
        /// Compose: the private network (a /24).
        #[arg(long)]
        subnet: Option<String>,
        /// Compose: also start Grafana (the public image, pulled by compose)
        /// with the dashboards of grafana/ on 127.0.0.1:3000.
        #[arg(long)]
        grafana: bool,
        /// Compose: also run the system's scenario (scenarios/<system>.yaml)
        /// on a schedule in its own container, reports on a volume
        /// (`down` copies them to <stack>/schedule-results), metrics to
        /// the stack's Prometheus.
        #[arg(long)]
        schedule: bool,
        /// Compose: how often the schedule runs (with --schedule).
        #[arg(long, default_value = "30m", requires = "schedule")]
        every: String,
    },
    /// Stop the cluster `up` started (compose: containers, network, volumes).
    Down {
        #[arg(long, default_value = "runs/local")]
        dir: PathBuf,
        #[arg(long, default_value = "local", value_parser = ["local", "compose"])]
        platform: String,
    },
    /// Every node's role and epoch, and the proxy's faulty links.
    Status {
        #[arg(long, default_value = "runs/local")]
        dir: PathBuf,
        #[arg(long, default_value = "local", value_parser = ["local", "compose"])]
        platform: String,
    },
    /// Apply a fault to the running cluster now, e.g. `partition s1,s2 / s3,s4,s5`,
    /// `omission s4 --p 1`, `packet-loss s2 --p 0.3`, `kill s2`, `restart s2`, `heal`.
    Fault {
        #[arg(long, default_value = "runs/local")]
        dir: PathBuf,
        #[arg(long, default_value = "local", value_parser = ["local", "compose"])]
        platform: String,
        /// How long the fault holds (its lease), e.g. 10s.
        #[arg(long = "for", default_value = "60s")]
        for_: String,
        #[arg(long)]
        p: Option<f64>,
        #[arg(long)]
        ms: Option<f64>,
        #[arg(long)]
        jitter: Option<f64>,
        words: Vec<String>,
    },
    /// Write the Kubernetes overlay of a cluster file (k8s/overlays/<system>/):
    /// `kubectl apply -k` it with k8s/base/.
    K8s {
        /// The template cluster file, e.g. clusters/standby.yaml.
        #[arg(long)]
        cluster: PathBuf,
        /// Default: k8s/overlays/<system>.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The scenario the CronJob runs (default: scenarios/<system>.yaml
        /// beside the cluster file's directory, if there is one).
        #[arg(long)]
        scenario: Option<PathBuf>,
    },
    /// Run the packet proxy alone (as compose and Kubernetes do).
    Proxy {
        #[arg(long)]
        config: PathBuf,
    },
    /// Pause and resume the node process of this pod on the controller's
    /// request (SIGSTOP/SIGCONT under a lease): the sidecar of every node
    /// pod on Kubernetes. Its token is the cluster file's secret.
    Freezer {
        #[arg(long)]
        cluster: PathBuf,
        #[arg(long, default_value = "0.0.0.0:9101")]
        listen: SocketAddr,
    },
}

/// Starts the controller's metrics endpoint, or says why it cannot.
async fn serve_metrics(addr: SocketAddr) -> Result<Arc<ControllerMetrics>, ExitCode> {
    let m = ControllerMetrics::new();
    match metrics::serve(m.clone(), addr).await {
        Ok(bound) => {
            eprintln!("controller metrics on http://{bound}/metrics");
            Ok(m)
        }
        Err(e) => {
            eprintln!("error: cannot serve metrics on {addr}: {e}");
            Err(ExitCode::from(2))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    faultline_node::logging::init(&cli.log);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.cmd {
        Cmd::Run {
            scenario: path,
            out,
            replay,
            node_bin,
            quiet,
            platform,
            metrics,
            keep_scrapes,
        } => {
            let scn = match scenario::load(&path) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let metrics = match metrics.map(|addr| rt.block_on(serve_metrics(addr))) {
                None => None,
                Some(Ok(m)) => Some(m),
                Some(Err(code)) => return code,
            };
            let opts = runner::RunOptions {
                out,
                replay,
                node_bin: node_bin.unwrap_or_else(local::default_node_bin),
                quiet,
                platform,
                metrics,
                cancel: None,
                keep_scrapes,
            };
            match rt.block_on(runner::run(&scn, opts)) {
                Ok((results, _dir)) => {
                    println!("{}", report::summary(&results));
                    ExitCode::from(results.valid.exit_code())
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(Valid::Unknown.exit_code())
                }
            }
        }
        Cmd::Schedule {
            scenarios,
            every,
            cron,
            results,
            metrics,
            rounds,
            keep,
            node_bin,
            platform,
        } => {
            let timing = match (every, cron) {
                (Some(e), _) => jobs::timing::Timing::every(&e),
                (None, Some(c)) => jobs::timing::Timing::cron(&c),
                (None, None) => unreachable!("clap requires --every or --cron"),
            };
            let timing = match timing {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let registry = match metrics {
                Some(addr) => match rt.block_on(serve_metrics(addr)) {
                    Ok(m) => m,
                    Err(code) => return code,
                },
                None => ControllerMetrics::new(),
            };
            let opts = jobs::ScheduleOptions {
                scenarios,
                timing,
                results,
                node_bin: node_bin.unwrap_or_else(local::default_node_bin),
                platform,
                metrics: registry,
                rounds,
                keep: keep.map(|k| usize::try_from(k).unwrap_or(usize::MAX)),
            };
            match rt.block_on(jobs::schedule(opts)) {
                Ok(jobs::Ended::Signalled) => ExitCode::SUCCESS,
                Ok(jobs::Ended::Rounds(worst)) => ExitCode::from(worst.exit_code()),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::K8s {
            cluster,
            out,
            scenario,
        } => exit((|| {
            let template = local::load_template(&cluster)?;
            let system = template.file.system.clone();
            let scenario = scenario.or_else(|| {
                Some(
                    template
                        .base_dir()
                        .join("../scenarios")
                        .join(format!("{system}.yaml")),
                )
                .filter(|p| p.is_file())
            });
            let out = out.unwrap_or_else(|| PathBuf::from("k8s/overlays").join(&system));
            faultline_chaos::platform::kube::write(&template, scenario.as_deref(), &out)?;
            println!(
                "wrote {} (kubectl apply -k {})",
                out.display(),
                out.display()
            );
            Ok(())
        })()),
        Cmd::Check {
            run_dir,
            timeout,
            memory_mb,
        } => match runner::judge_dir(&run_dir, timeout * 1000, memory_mb) {
            Ok(results) => {
                println!("{}", report::summary(&results));
                ExitCode::from(results.valid.exit_code())
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Cmd::Up {
            cluster,
            dir,
            node_bin,
            platform,
            subnet,
            grafana,
            schedule,
            every,
        } => exit(rt.block_on(async {
            if platform == "compose" {
                let extras = terminal::ComposeExtras {
                    grafana,
                    schedule: schedule.then_some(every),
                };
                terminal::up_compose(&cluster, dir, subnet.as_deref(), extras).await
            } else {
                terminal::up(
                    &cluster,
                    &dir.unwrap_or_else(|| PathBuf::from("runs/local")),
                    node_bin.unwrap_or_else(local::default_node_bin),
                )
                .await
            }
        })),
        Cmd::Down { dir, platform } => exit(rt.block_on(async {
            if platform == "compose" {
                terminal::down_compose().await
            } else {
                terminal::down(&dir).await
            }
        })),
        Cmd::Status { dir, platform } => exit(rt.block_on(async {
            if platform == "compose" {
                terminal::status(&mut ComposeCluster::attach_running().await?).await
            } else {
                terminal::status(&mut terminal::Detached::attach(&dir)?).await
            }
        })),
        Cmd::Fault {
            dir,
            platform,
            for_,
            p,
            ms,
            jitter,
            words,
        } => {
            let lease = match scenario::Duration::try_from(serde_yaml::Value::String(for_)) {
                Ok(d) => std::time::Duration::from_millis(d.ms().max(1)),
                Err(e) => {
                    eprintln!("error: --for: {e}");
                    return ExitCode::from(2);
                }
            };
            let mut params = serde_json::json!({});
            for (k, v) in [("p", p), ("ms", ms), ("jitter_ms", jitter)] {
                if let Some(v) = v {
                    params[k] = serde_json::json!(v);
                }
            }
            exit(rt.block_on(async {
                if platform == "compose" {
                    let mut p = ComposeCluster::attach_running().await?;
                    terminal::fault(&mut p, &words, params, lease).await
                } else {
                    let mut p = terminal::Detached::attach(&dir)?;
                    terminal::fault(&mut p, &words, params, lease).await
                }
            }))
        }
        Cmd::Proxy { config } => {
            let cfg = match ProxyConfig::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {}: {e}", config.display());
                    return ExitCode::from(2);
                }
            };
            // Ctrl-C at a terminal, SIGTERM from `docker stop` or a pod's end.
            let r = rt.block_on(proxy::run(cfg, faultline_node::runtime::wait_for_signal()));
            match r {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Freezer { cluster, listen } => exit(rt.block_on(freezer(&cluster, listen))),
    }
}

/// The freezer sidecar until SIGTERM (it thaws the node on the way out).
async fn freezer(cluster: &std::path::Path, listen: SocketAddr) -> anyhow::Result<()> {
    let c = local::load_template(cluster)?;
    let l = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    eprintln!("freezer on http://{listen} for {}", cluster.display());
    faultline_chaos::freezer::serve(
        l,
        faultline_chaos::freezer::Target::node(),
        c.secret,
        faultline_node::runtime::wait_for_signal(),
    )
    .await
}

fn exit(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
