//! `faultline-node`: one binary for every role. `run` starts a node from the
//! cluster file, `check` validates a file, `certs` makes the cluster's
//! certificates, `client` runs the client verbs against running nodes.

use clap::{Parser, Subcommand};
use faultline_node::cli;
use faultline_node::config::{self, Certs, ConfigError};
use faultline_node::runtime::{self, RunOptions};
use std::path::PathBuf;
use std::process::ExitCode;

/// Nodes allocate many small, short-lived buffers (messages, frames);
/// mimalloc handles that pattern far better than glibc's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "faultline-node",
    version,
    about = "A faultline node: every role of every system, from one cluster file"
)]
struct Cli {
    /// Log filter (tracing's EnvFilter syntax); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info")]
    log: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run node ID of the cluster until Ctrl-C or SIGTERM.
    Run {
        #[arg(long)]
        cluster: PathBuf,
        #[arg(long, required_unless_present = "id_from_ordinal")]
        id: Option<String>,
        /// Be the node at index N of the cluster file, N being the number at
        /// the end of this host's name (a StatefulSet's pod `faultline-node-3`
        /// is the fourth node).
        #[arg(long, conflicts_with = "id")]
        id_from_ordinal: bool,
        /// Where the durable log lives (default: the file's data_dir/ID, or data/ID beside the file).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// fsync the log before every acknowledgement (survives power loss;
        /// slower). Default: the system's choice (on for smr and standby,
        /// off for tokens); `--fsync` or `--fsync=false` overrides it.
        #[arg(long, num_args = 0..=1, default_missing_value = "true")]
        fsync: Option<bool>,
    },
    /// Validate a cluster file and print what it describes.
    Check {
        #[arg(long)]
        cluster: PathBuf,
    },
    /// Make a private CA and one certificate per node (default: the file's tls.dir).
    Certs {
        #[arg(long)]
        cluster: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Client verbs against a running cluster; without a verb, an interactive prompt.
    Client {
        #[arg(long)]
        cluster: PathBuf,
        /// The client node that runs the operations (and records them).
        #[arg(long)]
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// A verb and its arguments (`help` lists the cluster's system's
        /// verbs). Everything after the verb is its own, dashes included, so
        /// a negative amount reaches the verb and gets its error.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        verb: Vec<String>,
    },
}

fn load(path: &std::path::Path, certs: Certs) -> Result<config::Cluster, ExitCode> {
    config::load(path, certs).map_err(|e: ConfigError| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let args = Cli::parse();
    match args.cmd {
        Cmd::Check { cluster } => match load(&cluster, Certs::Required) {
            Ok(c) => {
                print!("{}", config::describe(&c));
                println!("ok");
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Cmd::Certs { cluster, out } => {
            let c = match load(&cluster, Certs::NotYet) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let dir = out.unwrap_or_else(|| c.tls_dir.clone());
            match faultline_node::transport::tls::generate(&c, &dir) {
                Ok(files) => {
                    println!(
                        "wrote {} files to {} (a CA and {} node certificates)",
                        files.len(),
                        dir.display(),
                        c.nodes.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Run {
            cluster,
            id,
            id_from_ordinal,
            data_dir,
            fsync,
        } => {
            faultline_node::logging::init(&args.log);
            let c = match load(&cluster, Certs::Required) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let id = match id {
                Some(id) => id,
                // clap requires one of --id and --id-from-ordinal.
                None if id_from_ordinal => match id_of_this_host(&c.ids()) {
                    Ok(id) => id,
                    Err(e) => {
                        eprintln!("error: {}: {e}", cluster.display());
                        return ExitCode::from(2);
                    }
                },
                None => {
                    eprintln!("error: give --id ID or --id-from-ordinal");
                    return ExitCode::from(2);
                }
            };
            if c.node(&id).is_none() {
                eprintln!(
                    "error: {}: no node with id {id:?}\n  fix: use one of: {}",
                    cluster.display(),
                    c.ids().join(", ")
                );
                return ExitCode::from(2);
            }
            // One thread by default: a node's work is one protocol loop plus
            // the transport, and on a small machine shared by many nodes
            // cross-thread wake-ups cost more than a second core gains.
            let threads: usize = std::env::var("FAULTLINE_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            let built = if threads <= 1 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .enable_all()
                    .build()
            };
            let rt = match built {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(runtime::run(c, &id, RunOptions { data_dir, fsync })) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Client {
            cluster,
            id,
            json,
            verb,
        } => {
            let c = match load(&cluster, Certs::NotYet) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = rt.block_on(cli::main(c, &id, json, &verb));
            match result {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The id at index N of `ids`, N being the ordinal at the end of this
/// host's name (`$HOSTNAME`, else the kernel's): how a StatefulSet's pods,
/// which share one template, each find their node.
fn id_of_this_host(ids: &[String]) -> Result<String, String> {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .ok_or("--id-from-ordinal: this host has no name")?;
    ordinal_id(&host, ids)
}

fn ordinal_id(host: &str, ids: &[String]) -> Result<String, String> {
    let n: usize = host
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .ok_or_else(|| format!("--id-from-ordinal: host name {host:?} does not end in -N"))?;
    ids.get(n).cloned().ok_or_else(|| {
        format!(
            "--id-from-ordinal: host {host:?} is ordinal {n}, but the cluster file has {} nodes",
            ids.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::ordinal_id;

    #[test]
    fn a_pod_finds_its_node_by_its_ordinal() {
        let ids: Vec<String> = ["s1", "s2", "c1"].map(String::from).to_vec();
        assert_eq!(ordinal_id("faultline-node-0", &ids).as_deref(), Ok("s1"));
        assert_eq!(ordinal_id("faultline-node-2", &ids).as_deref(), Ok("c1"));
        let e = ordinal_id("faultline-node-3", &ids).expect_err("past the end");
        assert!(e.contains("ordinal 3") && e.contains("3 nodes"), "{e}");
        let e = ordinal_id("laptop", &ids).expect_err("no ordinal");
        assert!(e.contains("does not end in -N"), "{e}");
    }
}
