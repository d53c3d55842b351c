//! `faultline-node client`: a system's client verbs, one-shot or at an
//! interactive prompt, plus the verbs every system has (`status`, `history`,
//! `load`). Verbs are clap subcommands, so the prompt line gets the same
//! parsing, help and errors as the command line. Operations go to the client
//! node named by `--id`, which runs them and records them in its history;
//! `status` reads every node's `/state`.

use crate::api::{ApiError, HistoryDump, LoadSpec, LoadStats, NodeState, OpReply, Outcome};
use crate::config::Cluster;
use crate::protocol::Core;
use crate::system::System;
use clap::{Parser, Subcommand};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::io::{BufRead, Write};
use std::marker::PhantomData;
use std::time::Duration;

/// The outcome of a verb: text for people, JSON for scripts, and whether
/// it succeeded (the process exit code).
pub struct Output {
    pub ok: bool,
    pub human: String,
    pub json: Value,
}

impl Output {
    /// A successful verb's output; `json` is its machine-readable form.
    pub fn ok(human: String, json: &impl Serialize) -> Self {
        Output {
            ok: true,
            human,
            json: serde_json::to_value(json).unwrap_or(Value::Null),
        }
    }
}

/// One line of verbs: the system's own and the generic ones.
#[derive(Parser, Debug)]
#[command(
    no_binary_name = true,
    disable_version_flag = true,
    help_template = "verbs:\n{subcommands}"
)]
struct Line<V: Subcommand> {
    #[command(subcommand)]
    verb: Verb<V>,
}

#[derive(Subcommand, Debug)]
enum Verb<V: Subcommand> {
    #[command(flatten)]
    System(V),
    /// Every node's role and state.
    Status,
    /// The operations this client ran.
    History,
    /// Closed-loop load from this client for SECONDS; prints throughput.
    Load {
        seconds: f64,
        #[arg(default_value_t = 32)]
        workers: usize,
    },
}

/// A client of a running cluster of system `S`, acting as node `id`.
pub struct Client<S: System> {
    cluster: Cluster,
    id: String,
    http: reqwest::Client,
    _system: PhantomData<S>,
}

/// The admin API's base URL of node `id` (a wildcard address is reached on
/// loopback).
pub fn admin_url(c: &Cluster, id: &str) -> Option<String> {
    let n = c.node(id)?;
    let mut a = n.admin;
    if a.ip().is_unspecified() {
        a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Some(format!("http://{a}"))
}

/// Runs `words` (a verb and its arguments; none opens the prompt) as client
/// node `id` of the cluster's system. Returns whether the verb succeeded.
pub async fn main(
    cluster: Cluster,
    id: &str,
    json: bool,
    words: &[String],
) -> anyhow::Result<bool> {
    let system = cluster.file.system.clone();
    crate::with_system!(
        system.as_str(),
        |S| {
            let client = Client::<S>::new(cluster, id)?;
            if words.is_empty() {
                match <S as System>::interactive() {
                    Some(verb) => {
                        S::verb(&client, verb).await?;
                    }
                    None => client.prompt(json).await?,
                }
                return Ok(true);
            }
            let out = client.run(words).await?;
            let text = if json { out.json.to_string() } else { out.human };
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout(), "{text}");
            Ok(out.ok)
        },
        else anyhow::bail!("this build has no system {system:?}")
    )
}

impl<S: System> Client<S> {
    pub fn new(cluster: Cluster, id: &str) -> anyhow::Result<Self> {
        if cluster.node(id).is_none() {
            anyhow::bail!(
                "unknown node {id:?}: {} has {}",
                cluster.path.display(),
                cluster.ids().join(", ")
            );
        }
        // An operation answers within its deadline; leave room for the
        // admin API and a slow machine before calling the node dead.
        let http = reqwest::Client::builder()
            .timeout(2 * cluster.op_deadline + Duration::from_secs(5))
            .build()?;
        Ok(Client {
            cluster,
            id: id.to_string(),
            http,
            _system: PhantomData,
        })
    }

    /// The client node the verbs run as.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    fn url(&self, node: &str) -> anyhow::Result<String> {
        admin_url(&self.cluster, node).ok_or_else(|| anyhow::anyhow!("unknown node {node:?}"))
    }

    /// Reads a JSON answer, or the API's error message for a refusal.
    async fn answer<T: DeserializeOwned>(node: &str, resp: reqwest::Response) -> anyhow::Result<T> {
        let status = resp.status();
        let body = resp.text().await?;
        if !status.is_success() {
            let why = serde_json::from_str::<ApiError>(&body)
                .map(|e| e.error)
                .unwrap_or(body);
            anyhow::bail!("{node} refused the request ({status}): {why}");
        }
        serde_json::from_str(&body)
            .map_err(|e| anyhow::anyhow!("{node} answered something unexpected ({e}): {body}"))
    }

    /// Runs one operation on `node` through its `/ops`.
    pub async fn op(&self, node: &str, request: &S::Request) -> anyhow::Result<OpReply<S::Reply>> {
        let url = self.url(node)?;
        let resp = self
            .http
            .post(format!("{url}/ops"))
            .bearer_auth(&self.cluster.secret)
            .json(request)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("node {node} at {url} is unreachable: {e}"))?;
        Self::answer(node, resp).await
    }

    /// `node`'s `/state`.
    pub async fn state(&self, node: &str) -> anyhow::Result<NodeState<<S::Core as Core>::State>> {
        let url = self.url(node)?;
        let resp = self
            .http
            .get(format!("{url}/state"))
            .timeout(Duration::from_secs(2))
            .send()
            .await?;
        Self::answer(node, resp).await
    }

    /// An error unless `node` is in the cluster file.
    pub fn known(&self, node: &str) -> anyhow::Result<()> {
        if self.cluster.node(node).is_none() {
            anyhow::bail!(
                "unknown node {node:?} (this cluster has {})",
                self.cluster.ids().join(", ")
            );
        }
        Ok(())
    }

    /// Renders an operation's answer: `ok` words the reply of a success; a
    /// failure or unknown outcome is worded by the reply's Display.
    pub fn render(op: &OpReply<S::Reply>, ok: impl Fn(&S::Reply) -> String) -> Output
    where
        S::Reply: std::fmt::Display,
    {
        let human = match op.outcome {
            Outcome::Ok => ok(&op.reply),
            Outcome::Failed => format!("error: {}", op.reply),
            Outcome::Unknown | Outcome::Pending => format!(
                "unknown outcome: {} (the operation may or may not have taken effect)",
                op.reply
            ),
        };
        Output {
            ok: op.outcome == Outcome::Ok,
            human,
            json: serde_json::to_value(op).unwrap_or(Value::Null),
        }
    }

    /// Runs one verb with its arguments.
    pub async fn run(&self, words: &[String]) -> anyhow::Result<Output> {
        // Verbs are case-insensitive, as the seeds' menus were.
        let words: Vec<String> = words
            .iter()
            .enumerate()
            .map(|(i, w)| if i == 0 { w.to_lowercase() } else { w.clone() })
            .collect();
        let line = match Line::<S::Verb>::try_parse_from(&words) {
            Ok(line) => line,
            Err(e) if !e.use_stderr() => {
                // `help` and `--help`: the text is the answer.
                let text = e.render().to_string();
                return Ok(Output::ok(
                    text.clone(),
                    &serde_json::json!({ "help": text }),
                ));
            }
            // The caller prints "error: " already.
            Err(e) => anyhow::bail!(
                "{}",
                e.render()
                    .to_string()
                    .trim_end()
                    .trim_start_matches("error: ")
            ),
        };
        match line.verb {
            Verb::System(v) => S::verb(self, v).await,
            Verb::Status => self.status().await,
            Verb::History => self.history().await,
            Verb::Load { seconds, workers } => self.load(seconds, workers).await,
        }
    }

    async fn status(&self) -> anyhow::Result<Output> {
        let mut lines = Vec::new();
        let mut all = Vec::new();
        for n in self.cluster.ids() {
            match self.state(&n).await {
                Ok(s) => {
                    lines.push(format!("{:<6} {:<7} {}", n, s.role, S::status_line(&s)));
                    all.push(serde_json::json!({ "node": n, "up": true, "state": s }));
                }
                Err(_) => {
                    lines.push(format!("{n:<6} down (admin API unreachable)"));
                    all.push(serde_json::json!({ "node": n, "up": false }));
                }
            }
        }
        Ok(Output::ok(lines.join("\n"), &all))
    }

    async fn history(&self) -> anyhow::Result<Output> {
        let url = self.url(&self.id)?;
        let resp = self.http.get(format!("{url}/history")).send().await?;
        let dump: HistoryDump = Self::answer(&self.id, resp).await?;
        let human = dump
            .ops
            .iter()
            .map(|o| format!("{} {} -> {}", o.kind, o.request, o.outcome))
            .collect::<Vec<_>>()
            .join("\n");
        Ok(Output::ok(human, &dump))
    }

    async fn load(&self, seconds: f64, workers: usize) -> anyhow::Result<Output> {
        if !(seconds > 0.0 && seconds <= 3600.0) {
            anyhow::bail!("load: seconds must be in (0, 3600], got {seconds}");
        }
        let spec = LoadSpec {
            duration_ms: (seconds * 1000.0) as u64,
            concurrency: workers,
            record: false,
        };
        spec.validate().map_err(|e| anyhow::anyhow!("load: {e}"))?;
        let url = self.url(&self.id)?;
        let resp = self
            .http
            .post(format!("{url}/load"))
            .bearer_auth(&self.cluster.secret)
            .timeout(Duration::from_secs_f64(seconds + 30.0))
            .json(&spec)
            .send()
            .await?;
        let v: LoadStats = Self::answer(&self.id, resp).await?;
        let human = format!(
            "{}: {} {}s ok in {:.1}s = {:.0} {}s/s, p50 {:.2} ms, p99 {:.2} ms ({} failed, {} unknown)",
            self.id, v.ok, v.op, v.seconds, v.ok_per_second, v.op, v.p50_ms, v.p99_ms, v.failed, v.unknown
        );
        Ok(Output::ok(human, &v))
    }

    /// The interactive prompt: one verb per line until `close` or EOF.
    /// Words are split like a shell's (quotes keep spaces).
    pub async fn prompt(&self, json_out: bool) -> anyhow::Result<()> {
        println!(
            "faultline client {} ({}, system {}); type help for the verbs",
            self.id,
            self.cluster.path.display(),
            S::NAME
        );
        let stdin = std::io::stdin();
        let mut lines = stdin.lock().lines();
        loop {
            print!("{}> ", self.id);
            std::io::stdout().flush()?;
            let Some(line) = lines.next() else { break };
            let line = line?;
            let Some(words) = shlex::split(&line) else {
                println!("error: unbalanced quotes");
                continue;
            };
            match words.first().map(|w| w.to_lowercase()) {
                None => continue,
                Some(w) if matches!(w.as_str(), "close" | "quit" | "exit") => break,
                _ => {}
            }
            match self.run(&words).await {
                Ok(o) if json_out => println!("{}", o.json),
                Ok(o) => println!("{}", o.human),
                Err(e) => println!("error: {e}"),
            }
        }
        Ok(())
    }
}
