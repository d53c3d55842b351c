//! `faultline-chaos`: the chaos controller. `run` a scenario and judge it,
//! `check` a recorded run again, run the packet `proxy` alone.

use clap::{Parser, Subcommand};
use faultline_chaos::platform::compose::ComposeCluster;
use faultline_chaos::platform::local;
use faultline_chaos::proxy::{self, ProxyConfig};
use faultline_chaos::results::Valid;
use faultline_chaos::{report, runner, scenario, terminal};
use std::path::PathBuf;
use std::process::ExitCode;

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
        /// local or compose.
        #[arg(long, value_parser = ["local", "compose"])]
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
    /// Run the packet proxy alone (as compose and Kubernetes do).
    Proxy {
        #[arg(long)]
        config: PathBuf,
    },
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
        } => {
            let scn = match scenario::load(&path) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let opts = runner::RunOptions {
                out,
                replay,
                node_bin: node_bin.unwrap_or_else(local::default_node_bin),
                quiet,
                platform,
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
        } => exit(rt.block_on(async {
            if platform == "compose" {
                terminal::up_compose(&cluster, dir, subnet.as_deref(), grafana).await
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
    }
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
