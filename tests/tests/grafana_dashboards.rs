//! The Grafana dashboards and the Prometheus alert rules: every panel's and
//! annotation's PromQL is evaluated by a real Prometheus (Debian's package)
//! scraping a live local cluster of the dashboard's system, under load and
//! with a message fault, a packet fault and a partition applied (the chaos
//! controller's dashboard: a `schedule` running token scenarios), and must
//! return data; `promtool check rules` accepts the alert rules and `promtool
//! test rules` shows each firing when it should and silent when not; the
//! dashboards and the provisioning agree on the datasource.

use faultline_e2e::{chaos_bin, free_ports, node_bin, scratch};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn dashboards() -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(repo().join("grafana/dashboards")).expect("grafana/dashboards") {
        let path = e.expect("entry").path();
        if path.extension().is_some_and(|x| x == "json") {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read"))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((path, v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 3, "dashboards: {out:?}");
    out
}

/// Every PromQL expression of a dashboard: panel targets and annotations.
fn exprs(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let e = t["expr"].as_str().unwrap_or_default().to_string();
            out.push((p["title"].as_str().unwrap_or("?").to_string(), e));
        }
    }
    for a in d["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(e) = a["expr"].as_str() {
            out.push((format!("annotation {}", a["name"]), e.to_string()));
        }
    }
    out
}

#[test]
fn dashboards_are_well_formed_and_name_the_provisioned_datasource() {
    let ds =
        std::fs::read_to_string(repo().join("grafana/provisioning/datasources/prometheus.yml"))
            .expect("datasource provisioning");
    let ds: serde_yaml::Value = serde_yaml::from_str(&ds).expect("yaml");
    let uid = ds["datasources"][0]["uid"]
        .as_str()
        .expect("uid")
        .to_string();
    let mut uids = std::collections::BTreeSet::new();
    for (path, d) in dashboards() {
        let name = path.display();
        assert!(
            uids.insert(d["uid"].as_str().expect("uid").to_string()),
            "{name}: uid reused"
        );
        assert!(
            d["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{name}: title"
        );
        let mut ids = std::collections::BTreeSet::new();
        for p in d["panels"].as_array().expect("panels") {
            assert!(
                ids.insert(p["id"].as_u64().expect("id")),
                "{name}: panel id reused"
            );
            for k in ["x", "y", "w", "h"] {
                assert!(
                    p["gridPos"][k].is_u64(),
                    "{name}: {} gridPos.{k}",
                    p["title"]
                );
            }
            assert_eq!(p["datasource"]["uid"], uid, "{name}: {}", p["title"]);
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{name}: {} has no query", p["title"]);
            for t in targets {
                assert_eq!(t["datasource"]["uid"], uid, "{name}: {}", p["title"]);
            }
        }
    }
}

#[test]
fn alert_rules_pass_promtool() {
    let dir = repo().join("grafana/prometheus");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("promtool ({e}): apt-get install prometheus; .ci/run installs it")
            });
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every dashboard conforms to Grafana's dashboard schema as the Grafana
/// Foundation SDK's generated types know it (`grafana/check_dashboards.py`
/// says how, and what it cannot see), and the check rejects broken copies.
#[test]
fn dashboards_follow_grafanas_schema() {
    let dir = repo().join("grafana/dashboards");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("grafana/dashboards")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    for args in [vec!["--self-test".to_string()], files] {
        let out = Command::new("python3")
            .arg("grafana/check_dashboards.py")
            .args(&args)
            .current_dir(repo())
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "check_dashboards.py {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A process killed when dropped, whatever the test did.
struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A local cluster kept up by `faultline-chaos up`, brought down when dropped.
struct Up(PathBuf);
impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new(chaos_bin())
            .arg("down")
            .arg("--dir")
            .arg(&self.0)
            .output();
    }
}

fn chaos(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(chaos_bin())
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .expect("faultline-chaos");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "faultline-chaos {args:?}: {text}");
    text
}

/// The dashboard's system: its tag besides `faultline` (the overview runs
/// on the token system).
fn system_of(d: &Value) -> String {
    d["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str())
        .find(|t| *t != "faultline")
        .unwrap_or("tokens")
        .to_string()
}

/// Client operations of `system` for load: verbs of its first client.
fn load_verbs(system: &str) -> Vec<Vec<&'static str>> {
    match system {
        "standby" => vec![
            vec!["deposit", "1", "5"],
            vec!["lookup", "1"],
            vec!["withdraw", "1", "2"],
        ],
        "smr" => vec![
            vec!["edit", "Harvard", "University", "5"],
            vec!["view", "Harvard", "University"],
            vec!["list"],
        ],
        "snapshot" => vec![vec!["transfer", "n4", "1"], vec!["info"]],
        "replication" => vec![
            vec!["add", "k", "1"],
            vec!["put", "r", "v"],
            vec!["get", "r"],
        ],
        _ => vec![vec!["gettokens"], vec!["pay", "0", "c2"]],
    }
}

/// Percent-encodes a query parameter (everything but unreserved bytes).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What a dashboard reads from, kept alive while its queries are tried:
/// Prometheus' `scrape_configs` for it, and the processes behind it.
struct Source {
    scrape_configs: String,
    _guards: Vec<Box<dyn std::any::Any>>,
    stop_load: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

impl Drop for Source {
    fn drop(&mut self) {
        if let Some((stop, load)) = self.stop_load.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = load.join();
        }
    }
}

/// A live local cluster of `system` with a message fault, a packet fault
/// and a partition applied, under load from its first client.
fn cluster_source(dir: &Path, system: &str) -> Source {
    let local = dir.join("local");
    // Replication ships one cluster file per mode: passive has every panel.
    let file = if system == "replication" {
        "passive"
    } else {
        system
    };
    let cluster = repo().join("clusters").join(format!("{file}.yaml"));
    chaos(
        &local,
        &[
            "up",
            "--cluster",
            cluster.to_str().expect("utf8"),
            "--node-bin",
            node_bin().to_str().expect("utf8"),
        ],
    );
    let up_guard = Up(local.clone());
    let c = faultline_node::config::load(
        &local.join("cluster.yaml"),
        faultline_node::config::Certs::Required,
    )
    .expect("the running cluster's file");
    let up: Value =
        serde_json::from_str(&std::fs::read_to_string(local.join("up.json")).expect("up.json"))
            .expect("json");
    let proxy = up["proxy_url"]
        .as_str()
        .expect("proxy url")
        .trim_start_matches("http://")
        .to_string();
    let targets: Vec<String> = c.nodes.iter().map(|n| format!("'{}'", n.admin)).collect();
    let scrape_configs = format!(
        "  - job_name: faultline-nodes\n    static_configs: [{{ targets: [{}] }}]\n  - job_name: faultline-proxy\n    static_configs: [{{ targets: ['{proxy}'] }}]\n",
        targets.join(", ")
    );
    // A message fault, a packet fault and a partition (the last node
    // cut off), all outliving the test, on the cluster's first servers.
    // Every node of a system with no server role (the bitcake network)
    // takes commands; the faults then go to its first nodes.
    let servers = if c.servers().is_empty() {
        c.ids()
    } else {
        c.servers()
    };
    let (first, second) = (&servers[0], &servers[1 % servers.len()]);
    chaos(
        &local,
        &["fault", "drop", first, "--p", "0.3", "--for", "120s"],
    );
    chaos(
        &local,
        &[
            "fault",
            "packet-loss",
            second,
            "--p",
            "0.3",
            "--for",
            "120s",
        ],
    );
    let last = c.ids().last().cloned().expect("a node");
    chaos(&local, &["fault", "isolate", &last, "--for", "120s"]);

    // Load from the first client until every query has data (bounded).
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let file = local.join("cluster.yaml");
        let client = c.clients()[0].clone();
        let verbs = load_verbs(system);
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(90) {
                let _ = Command::new(node_bin())
                    .args(["client", "--cluster"])
                    .arg(&file)
                    .args(["--id", &client])
                    .args(&verbs[i % verbs.len()])
                    .output();
                i += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    Source {
        scrape_configs,
        _guards: vec![Box::new(up_guard)],
        stop_load: Some((stop, load)),
    }
}

/// The chaos controller in `schedule` mode: rounds of a short token run with
/// a fault held most of the time, its metrics on a free port.
fn controller_source(dir: &Path) -> Source {
    let port = free_ports(1)[0];
    let scn = dir.join("sched.yaml");
    let cluster = repo().join("clusters/tokens.yaml");
    std::fs::write(
        &scn,
        format!(
            "name: sched\ncluster: {}\nduration: 10s\nseed: 3\nnemesis:\n  - {{ at: 1s, for: 8s, fault: omission, targets: [s2], params: {{ p: 1.0 }} }}\n",
            cluster.display()
        ),
    )
    .expect("scenario");
    let child = Command::new(chaos_bin())
        .arg("schedule")
        .arg(&scn)
        .args(["--every", "1s", "--rounds", "6", "--results"])
        .arg(dir.join("results"))
        .args(["--metrics", &format!("127.0.0.1:{port}"), "--node-bin"])
        .arg(node_bin())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("schedule.log")).expect("log"))
        .spawn()
        .expect("faultline-chaos schedule");
    Source {
        scrape_configs: format!(
            "  - job_name: faultline-chaos\n    static_configs: [{{ targets: ['127.0.0.1:{port}'] }}]\n"
        ),
        // SIGTERM when the test ends: the run in progress heals and takes
        // its cluster down.
        _guards: vec![Box::new(Terminated(child))],
        stop_load: None,
    }
}

/// A controller stopped with SIGTERM (it heals and tears down its cluster),
/// then killed if it has not stopped within 30 s.
struct Terminated(Child);
impl Drop for Terminated {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_panel_query_returns_data_from_a_live_cluster() {
    for (path, d) in dashboards() {
        let system = system_of(&d);
        let dir = scratch(&format!(
            "grafana-{system}-{}",
            path.file_stem().and_then(|s| s.to_str()).unwrap_or("d")
        ));
        let source = if system == "chaos" {
            controller_source(&dir)
        } else {
            cluster_source(&dir, &system)
        };

        // Prometheus scraping the source each second.
        let port = free_ports(1)[0];
        let config = format!(
            "global: {{ scrape_interval: 1s, scrape_timeout: 900ms }}\nscrape_configs:\n{}",
            source.scrape_configs
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("config");
        let prom = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).expect("log"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("prometheus ({e}): apt-get install prometheus; .ci/run installs it")
            });
        let _prom = Killed(prom);

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("http");
        let queries = exprs(&d);
        let t0 = Instant::now();
        let mut empty: Vec<(String, String)> = queries.clone();
        while !empty.is_empty() && t0.elapsed() < Duration::from_secs(90) {
            std::thread::sleep(Duration::from_secs(2));
            empty.retain(|(_, e)| {
                let r = rt.block_on(async {
                    http.get(format!(
                        "http://127.0.0.1:{port}/api/v1/query?query={}",
                        encode(e)
                    ))
                    .send()
                    .await?
                    .json::<Value>()
                    .await
                });
                let Ok(v) = r else { return true };
                let data = v["data"]["result"].as_array().cloned().unwrap_or_default();
                // A series whose value is NaN (a quantile of no traffic) is no data.
                !data
                    .iter()
                    .any(|s| s["value"][1].as_str().is_some_and(|x| x != "NaN"))
            });
        }
        drop(source);
        assert!(
            empty.is_empty(),
            "{}: queries without data after {:?}: {empty:#?}\n(see {})",
            path.display(),
            t0.elapsed(),
            dir.display()
        );
    }
}
