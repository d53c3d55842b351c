//! `faultline-node client`: the seed's client verbs (pay, gettokens, status,
//! tokenstatus, transform) as one-shot commands or an interactive prompt.
//! The verbs talk to the running nodes' admin APIs: operations go to the
//! client node named by `--id`, which runs them and records them in its
//! history; status reads every node's `/state`.

use crate::config::Cluster;
use serde_json::{json, Value};
use std::io::{BufRead, Write};
use std::time::Duration;

pub const HELP: &str = "\
verbs:
  pay <token> <to>          pay a token this client owns to another client
  gettokens [owner]         the tokens an owner holds (default: this client)
  status                    every node's role, epoch and whether it serves
  tokenstatus <server>      a server's table: every token's owner and version
  transform [node]          turn a server into a client or a client into a server
  history                   the operations this client ran
  load <seconds> [workers]  closed-loop pays from this client; prints throughput
  help                      this text
  close                     leave the prompt";

/// The outcome of a verb: text for people, JSON for scripts, and whether
/// it succeeded (the process exit code).
pub struct Output {
    pub ok: bool,
    pub human: String,
    pub json: Value,
}

pub struct Client {
    cluster: Cluster,
    id: String,
    http: reqwest::Client,
}

fn admin_url(c: &Cluster, id: &str) -> Option<String> {
    let n = c.node(id)?;
    let mut a = n.admin;
    if a.ip().is_unspecified() {
        a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Some(format!("http://{a}"))
}

impl Client {
    pub fn new(cluster: Cluster, id: &str) -> anyhow::Result<Self> {
        if cluster.node(id).is_none() {
            anyhow::bail!(
                "unknown node {id:?}: {} has {}",
                cluster.path.display(),
                cluster.ids().join(", ")
            );
        }
        let deadline = cluster
            .file
            .tokens
            .as_ref()
            .map_or(3_000, |t| t.op_deadline_ms);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(2 * deadline + 5_000))
            .build()?;
        Ok(Client {
            cluster,
            id: id.to_string(),
            http,
        })
    }

    async fn op(&self, node: &str, body: Value) -> anyhow::Result<Value> {
        let url = admin_url(&self.cluster, node)
            .ok_or_else(|| anyhow::anyhow!("unknown node {node:?}"))?;
        let resp = self
            .http
            .post(format!("{url}/ops"))
            .bearer_auth(&self.cluster.secret)
            .json(&body)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("node {node} at {url} is unreachable: {e}"))?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!(
                "{node} refused the request: {}",
                v["error"].as_str().unwrap_or("?")
            );
        }
        Ok(v)
    }

    async fn state(&self, node: &str) -> anyhow::Result<Value> {
        let url = admin_url(&self.cluster, node)
            .ok_or_else(|| anyhow::anyhow!("unknown node {node:?}"))?;
        let v = self
            .http
            .get(format!("{url}/state"))
            .timeout(Duration::from_secs(2))
            .send()
            .await?
            .json()
            .await?;
        Ok(v)
    }

    fn known(&self, node: &str) -> anyhow::Result<()> {
        if self.cluster.node(node).is_none() {
            anyhow::bail!(
                "unknown node {node:?} (this cluster has {})",
                self.cluster.ids().join(", ")
            );
        }
        Ok(())
    }

    /// Runs one verb with its arguments.
    pub async fn run(&self, words: &[String]) -> anyhow::Result<Output> {
        let Some(verb) = words.first() else {
            anyhow::bail!("no verb given\n{HELP}");
        };
        let args = &words[1..];
        match verb.to_lowercase().as_str() {
            "pay" => {
                let [token, to] = args else {
                    anyhow::bail!("usage: pay <token> <to>");
                };
                let token: u32 = token
                    .parse()
                    .map_err(|_| anyhow::anyhow!("token must be a number, got {token:?}"))?;
                self.known(to)?;
                let v = self
                    .op(&self.id, json!({"op": "pay", "token": token, "to": to}))
                    .await?;
                Ok(render_op(&v, |r| {
                    format!(
                        "paid: token {} now belongs to {to} at version {}",
                        r["token"], r["tag"]["version"]
                    )
                }))
            }
            "gettokens" => {
                let owner = args.first().cloned().unwrap_or_else(|| self.id.clone());
                self.known(&owner)?;
                let v = self
                    .op(&self.id, json!({"op": "gettokens", "owner": owner}))
                    .await?;
                Ok(render_op(&v, |r| {
                    let list: Vec<String> = r["tokens"]
                        .as_array()
                        .map(|a| a.iter().map(|t| format!("{} (v{})", t[0], t[1])).collect())
                        .unwrap_or_default();
                    format!("{owner} owns {} tokens: {}", list.len(), list.join(", "))
                }))
            }
            "transform" => {
                let node = args.first().cloned().unwrap_or_else(|| self.id.clone());
                self.known(&node)?;
                let v = self.op(&node, json!({"op": "transform"})).await?;
                Ok(render_op(&v, |r| {
                    format!(
                        "{node} is now a {} (epoch {}, servers {})",
                        r["role"].as_str().unwrap_or("?"),
                        r["config"]["epoch"],
                        r["config"]["servers"]
                    )
                }))
            }
            "status" => {
                let mut lines = Vec::new();
                let mut all = Vec::new();
                for n in self.cluster.ids() {
                    match self.state(&n).await {
                        Ok(s) => {
                            lines.push(format!(
                                "{:<6} {:<7} epoch {:<3} {}{}",
                                n,
                                s["role"].as_str().unwrap_or("?"),
                                s["epoch"],
                                if s["serving"] == true { "serving" } else { "" },
                                if s["frozen"] == true { " frozen" } else { "" },
                            ));
                            all.push(json!({"node": n, "up": true, "role": s["role"], "epoch": s["epoch"], "serving": s["serving"]}));
                        }
                        Err(_) => {
                            lines.push(format!("{n:<6} down (admin API unreachable)"));
                            all.push(json!({"node": n, "up": false}));
                        }
                    }
                }
                Ok(Output {
                    ok: true,
                    human: lines.join("\n"),
                    json: Value::Array(all),
                })
            }
            "tokenstatus" | "token_status" => {
                let Some(node) = args.first() else {
                    anyhow::bail!("usage: tokenstatus <server>");
                };
                self.known(node)?;
                let s = self.state(node).await?;
                let Some(tokens) = s["tokens"].as_array() else {
                    anyhow::bail!(
                        "{node} is a {} and holds no token table; ask a server",
                        s["role"].as_str().unwrap_or("client")
                    );
                };
                let human = tokens
                    .iter()
                    .map(|t| {
                        format!(
                            "token {}: owner {}, version {}",
                            t["token"],
                            t["owner"].as_str().unwrap_or("?"),
                            t["version"]
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                Ok(Output {
                    ok: true,
                    human,
                    json: Value::Array(tokens.clone()),
                })
            }
            "history" => {
                let url = admin_url(&self.cluster, &self.id).unwrap_or_default();
                let v: Value = self
                    .http
                    .get(format!("{url}/history"))
                    .send()
                    .await?
                    .json()
                    .await?;
                let human = v["ops"]
                    .as_array()
                    .map(|ops| {
                        ops.iter()
                            .map(|o| {
                                format!(
                                    "{} {} -> {}",
                                    o["kind"].as_str().unwrap_or("?"),
                                    o["request"],
                                    o["outcome"].as_str().unwrap_or("?")
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default();
                Ok(Output {
                    ok: true,
                    human,
                    json: v,
                })
            }
            "load" => {
                let secs: f64 = args
                    .first()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| anyhow::anyhow!("usage: load <seconds> [workers]"))?;
                let workers: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(32);
                let url = admin_url(&self.cluster, &self.id).unwrap_or_default();
                let resp = self
                    .http
                    .post(format!("{url}/load"))
                    .bearer_auth(&self.cluster.secret)
                    .timeout(Duration::from_secs_f64(secs + 30.0))
                    .json(&json!({"duration_ms": (secs * 1000.0) as u64, "concurrency": workers, "record": false}))
                    .send()
                    .await?;
                let ok = resp.status().is_success();
                let v: Value = resp.json().await?;
                let human = if ok {
                    format!(
                        "{}: {} pays ok in {:.1}s = {:.0} pays/s, p50 {:.2} ms, p99 {:.2} ms ({} failed, {} unknown)",
                        self.id, v["pays_ok"], v["seconds"].as_f64().unwrap_or(0.0),
                        v["pays_per_second"].as_f64().unwrap_or(0.0), v["pay_p50_ms"].as_f64().unwrap_or(0.0),
                        v["pay_p99_ms"].as_f64().unwrap_or(0.0), v["pays_failed"], v["pays_unknown"]
                    )
                } else {
                    format!("load refused: {}", v["error"])
                };
                Ok(Output { ok, human, json: v })
            }
            "help" => Ok(Output {
                ok: true,
                human: HELP.into(),
                json: json!({"help": HELP}),
            }),
            other => anyhow::bail!("invalid command {other:?}\n{HELP}"),
        }
    }

    /// The interactive prompt: one verb per line until `close` or EOF.
    pub async fn prompt(&self, json_out: bool) -> anyhow::Result<()> {
        println!(
            "faultline client {} ({}); type help for the verbs",
            self.id,
            self.cluster.path.display()
        );
        let stdin = std::io::stdin();
        let mut lines = stdin.lock().lines();
        loop {
            print!("{}> ", self.id);
            std::io::stdout().flush()?;
            let Some(line) = lines.next() else { break };
            let words: Vec<String> = line?.split_whitespace().map(String::from).collect();
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

/// Renders an `/ops` answer: the success text, or the error or unknown outcome.
fn render_op(v: &Value, ok: impl Fn(&Value) -> String) -> Output {
    let reply = &v["reply"];
    let (good, human) = match v["outcome"].as_str() {
        Some("ok") => (true, ok(reply)),
        Some("failed") => (false, format!("error: {}", describe_error(&reply["error"]))),
        _ => (
            false,
            format!(
                "unknown outcome: {} (the operation may or may not have taken effect)",
                reply["reason"].as_str().unwrap_or("?")
            ),
        ),
    };
    Output {
        ok: good,
        human,
        json: v.clone(),
    }
}

fn describe_error(e: &Value) -> String {
    let detail = &e["detail"];
    match e["error"].as_str().unwrap_or("") {
        "unknown_token" => format!("unknown token {detail}"),
        "unknown_node" => format!("unknown node {detail}"),
        "not_owned" => format!("token {detail} is not owned by this client"),
        "not_a_client" => format!(
            "{} is not a client, so it cannot own tokens",
            detail.as_str().unwrap_or("?")
        ),
        "servers_cannot_pay" => "invalid action: servers cannot initiate payments".into(),
        "servers_cannot_get_tokens" => {
            "invalid action: servers cannot send gettokens requests".into()
        }
        "min_servers" => {
            format!("minimum server count ({detail}) reached; cannot transform to client")
        }
        "max_servers" => {
            format!("maximum server count ({detail}) reached; cannot transform to server")
        }
        "no_quorum" => format!(
            "no majority of servers answered ({})",
            detail.as_str().unwrap_or("")
        ),
        _ => detail
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| e.to_string()),
    }
}
