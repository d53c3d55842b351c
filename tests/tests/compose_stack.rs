//! The docker compose platform: the committed stacks are what the generator
//! writes, follow the compose specification (`check-jsonschema`) and
//! Prometheus's (`promtool`); and, where a Docker daemon answers, `make up`,
//! a token scenario with a killed container and a partition through the
//! proxy judged valid, faults through `faultline-chaos fault --platform
//! compose`, `make down` leaving no container, network or volume; and
//! `make up SCHEDULE=1` running scheduled runs in their own container, seen
//! by the stack's Prometheus, their reports kept by `make down`.

use faultline_chaos::platform::compose::{self, StackOptions, PROJECT};
use faultline_chaos::platform::local::load_template;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `compose/<system>/` for every committed stack.
fn committed_stacks() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo().join("compose"))
        .expect("compose/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("docker-compose.yml").is_file())
        .collect();
    out.sort();
    assert!(out.len() >= 2, "committed stacks: {out:?}");
    out
}

#[test]
fn committed_stacks_are_what_the_generator_writes() {
    for dir in committed_stacks() {
        let system = dir.file_name().and_then(|n| n.to_str()).expect("name");
        let template = load_template(&repo().join("clusters").join(format!("{system}.yaml")))
            .expect("the stack's cluster file");
        let opts = StackOptions::new(&dir, &template.base_dir());
        let stack = compose::example_stack(&template, &opts).expect("stack");
        for (name, text) in stack.files().expect("files") {
            if std::env::var_os("FAULTLINE_REGENERATE").is_some() {
                std::fs::write(dir.join(name), &text).expect("rewrite");
                continue;
            }
            let committed = std::fs::read_to_string(dir.join(name)).expect("committed file");
            assert!(
                committed == text,
                "{}/{name} is stale: `make up SYSTEM={system}`, or FAULTLINE_REGENERATE=1 \
                 on this test, rewrites it",
                dir.display()
            );
        }
    }
}

fn tool(program: &str, args: &[&str], install: &str) -> std::process::Output {
    match Command::new(program).args(args).output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run {program} ({e}): {install}; .ci/run installs it"),
    }
}

#[test]
fn compose_files_follow_the_compose_specification() {
    for dir in committed_stacks() {
        let file = dir.join("docker-compose.yml");
        let out = tool(
            "check-jsonschema",
            &[
                "--builtin-schema",
                "vendor.compose-spec",
                file.to_str().expect("utf-8 path"),
            ],
            "pip install check-jsonschema",
        );
        assert!(
            out.status.success(),
            "{}: {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn prometheus_configs_pass_promtool() {
    for dir in committed_stacks() {
        let file = dir.join("prometheus.yml");
        let out = tool(
            "promtool",
            &["check", "config", file.to_str().expect("utf-8 path")],
            "apt-get install prometheus",
        );
        assert!(
            out.status.success(),
            "{}: {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn docker_answers() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `make TARGET` as a person at a terminal runs it: without what `cargo
/// test` puts in the environment (build scripts that read `CARGO_PKG_*` or
/// `CARGO_MANIFEST_DIR` would run again, and the next plain `make` would
/// rebuild the static binaries once more).
fn make(target: &str) -> std::process::Output {
    make_with(target, &[])
}

/// `make TARGET VAR=VALUE...`.
fn make_with(target: &str, vars: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("make");
    cmd.arg("--no-print-directory")
        .arg(target)
        .args(vars)
        .current_dir(repo());
    for (k, _) in std::env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        let from_cargo = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_BIN_",
            "CARGO_CRATE_",
        ]
        .iter()
        .any(|p| k.starts_with(p))
            || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&k);
        if from_cargo || ["MAKEFLAGS", "MFLAGS", "MAKELEVEL"].contains(&k) {
            cmd.env_remove(k);
        }
    }
    cmd.output().expect("run make")
}

/// Names of what the project left: containers, networks, volumes.
fn leftovers() -> Vec<String> {
    let label = format!("label=com.docker.compose.project={PROJECT}");
    let mut out = Vec::new();
    for (what, args) in [
        (
            "container",
            vec!["ps", "-a", "--filter", &label, "--format", "{{.Names}}"],
        ),
        (
            "network",
            vec!["network", "ls", "--filter", &label, "--format", "{{.Name}}"],
        ),
        (
            "volume",
            vec!["volume", "ls", "--filter", &label, "--format", "{{.Name}}"],
        ),
    ] {
        let o = Command::new("docker").args(&args).output().expect("docker");
        assert!(o.status.success(), "docker {args:?}");
        for l in String::from_utf8_lossy(&o.stdout).lines() {
            out.push(format!("{what} {l}"));
        }
    }
    out
}

/// What the project left, once the daemon has had a moment (bounded) for
/// networks and volumes: compose removes containers before it returns.
fn leftovers_after_down() -> Vec<String> {
    let mut left = leftovers();
    for _ in 0..20 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        left = leftovers();
    }
    left
}

/// Takes the stack down at the end, even when an assertion fails.
struct Down;
impl Drop for Down {
    fn drop(&mut self) {
        let _ = make("down");
    }
}

fn chaos(args: &[&str]) -> std::process::Output {
    chaos_in(&repo(), args)
}

fn chaos_in(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(faultline_e2e::chaos_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run faultline-chaos")
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_compose_cluster_runs_a_scenario_and_leaves_nothing() {
    if !docker_answers() {
        eprintln!("SKIPPED: no Docker daemon answers (`docker info` failed); the compose platform is not tested here");
        return;
    }
    let _down = Down;
    let up = make("up");
    assert!(up.status.success(), "make up: {}", text(&up));
    assert!(
        text(&up).contains("the compose cluster is up"),
        "{}",
        text(&up)
    );

    // Faults from the terminal: a killed container shows as down, heal
    // brings it back.
    let kill = chaos(&["fault", "--platform", "compose", "kill", "s2"]);
    assert!(kill.status.success(), "{}", text(&kill));
    // From any directory: the stack is found by its labels.
    let status = chaos_in(&std::env::temp_dir(), &["status", "--platform", "compose"]);
    assert!(text(&status).contains("s2     down"), "{}", text(&status));
    let heal = chaos(&["fault", "--platform", "compose", "heal"]);
    assert!(heal.status.success(), "{}", text(&heal));

    // The freezer sidecar as Kubernetes runs it, in the node's process
    // namespace: the controller's image finds the node and stops it.
    freezer_pauses_the_node_beside_it("faultline-s1");

    let run_dir = repo()
        .join("target")
        .join("test-runs")
        .join(format!("compose-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run_dir);
    let run = chaos(&[
        "run",
        "scenarios/tokens-compose.yaml",
        "--platform",
        "compose",
        "--quiet",
        "--out",
        run_dir.to_str().expect("utf-8"),
    ]);
    let results: Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("results.json")).unwrap_or_default(),
    )
    .unwrap_or(Value::Null);
    assert_eq!(
        results["valid"],
        Value::Bool(true),
        "the compose run: {}\n{}",
        text(&run),
        results
    );
    let applied: Vec<(String, String)> = results["windows"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|w| (w["fault"].to_string(), w["layer"].to_string()))
                .collect()
        })
        .unwrap_or_default();
    for (fault, layer) in [("kill", "process"), ("partition", "packet")] {
        assert!(
            applied.contains(&(format!("{fault:?}"), format!("{layer:?}"))),
            "the run applied a {fault} at the {layer} layer: {applied:?}"
        );
    }
    let measured = results["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "faults-applied"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(measured["valid"], Value::Bool(true), "{measured}");
    assert!(
        run_dir.join("logs").join("s1.log").is_file(),
        "the containers' logs are kept in the run directory"
    );
    // A cluster was up before the run: it stays up, every node running and
    // no packet fault left.
    let status = chaos(&["status", "--platform", "compose"]);
    let s = text(&status);
    assert!(status.status.success(), "{s}");
    assert!(
        !s.contains(" down"),
        "every node is back after the run: {s}"
    );
    assert!(s.contains("no packet faults"), "{s}");

    let down = make("down");
    assert!(down.status.success(), "make down: {}", text(&down));
    let left = leftovers_after_down();
    assert!(left.is_empty(), "make down left: {left:?}");

    // Scheduled runs in their own container: the first starts at once, its
    // metrics reach the stack's Prometheus, and `make down` stops it (the
    // run judged, interrupted) and copies its reports out before removing
    // everything.
    let saved = repo().join("compose/tokens/schedule-results");
    let had_saved = saved.exists();
    let copies_before = copies(&saved);
    let up = make_with("up", &["SCHEDULE=1", "EVERY=1h"]);
    assert!(up.status.success(), "make up SCHEDULE=1: {}", text(&up));
    let query = "http://127.0.0.1:9090/api/v1/query?query=faultline_chaos_run_active";
    let t0 = std::time::Instant::now();
    let mut active = false;
    while !active && t0.elapsed() < Duration::from_secs(90) {
        std::thread::sleep(Duration::from_secs(1));
        let v: Value = serde_json::from_str(&faultline_e2e::http_get(query)).unwrap_or(Value::Null);
        active = v["data"]["result"][0]["value"][1] == "1";
    }
    assert!(active, "Prometheus never saw the scheduled run");
    let down = make("down");
    assert!(down.status.success(), "make down: {}", text(&down));
    // One new copy, holding the one run, stopped mid-run.
    let new: Vec<PathBuf> = copies(&saved)
        .into_iter()
        .filter(|c| !copies_before.contains(c))
        .collect();
    assert_eq!(new.len(), 1, "copies: {new:?}\n{}", text(&down));
    let runs = schedule_runs(&new[0]);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        runs[0]["verdict"], "unknown",
        "stopped mid-run: {}",
        runs[0]
    );
    let report = new[0]
        .join(runs[0]["dir"].as_str().expect("dir"))
        .join("report.html");
    assert!(report.is_file(), "{}", report.display());
    if had_saved {
        let _ = std::fs::remove_dir_all(&new[0]);
    } else {
        let _ = std::fs::remove_dir_all(&saved);
    }
    let left = leftovers_after_down();
    assert!(left.is_empty(), "make down left: {left:?}");
}

/// The copies `make down` made of a schedule's reports, one directory each.
/// Removes the freezer's container, whatever the test did.
struct Remove(&'static str);
impl Drop for Remove {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", self.0]).output();
    }
}

/// `docker ARGS` that must succeed: its stdout, trimmed.
fn docker_ok(args: &[&str]) -> String {
    let out = tool("docker", args, "a Docker daemon");
    assert!(out.status.success(), "docker {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether host pid `pid` is stopped (SIGSTOP).
fn stopped(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('T'))
        })
        .unwrap_or(false)
}

/// The host pid of the child of `parent` whose command line holds `name`.
fn child_of(parent: &str, name: &str) -> Option<String> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid = e.file_name().to_str()?.to_string();
        pid.parse::<u32>().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let ppid = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .to_string();
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        (ppid == parent && String::from_utf8_lossy(&cmdline).contains(name)).then_some(pid)
    })
}

/// Polls `cond` every 50 ms for up to `secs` seconds.
fn within(secs: u64, cond: impl Fn() -> bool) -> bool {
    let t0 = std::time::Instant::now();
    while !cond() && t0.elapsed() < std::time::Duration::from_secs(secs) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    cond()
}

/// The freezer (`faultline-chaos freezer`, the controller's FROM-scratch
/// image) in `node`'s process namespace, as the sidecar of a Kubernetes
/// pod with `shareProcessNamespace`: a freeze stops the node's process, a
/// thaw continues it, a lapsed lease and the freezer's own SIGTERM thaw it.
fn freezer_pauses_the_node_beside_it(node: &'static str) {
    const NAME: &str = "faultline-freezer-check";
    let _ = Command::new("docker").args(["rm", "-f", NAME]).output();
    let _rm = Remove(NAME);
    let cluster = repo().join("compose/tokens/cluster.yaml");
    let mount = format!("{}:/etc/faultline/cluster.yaml:ro", cluster.display());
    let image = format!("faultline-chaos:{}", env!("CARGO_PKG_VERSION"));
    docker_ok(&[
        "run",
        "-d",
        "--name",
        NAME,
        "--pid",
        &format!("container:{node}"),
        "-v",
        &mount,
        "-p",
        "127.0.0.1::9101",
        &image,
        "freezer",
        "--cluster",
        "/etc/faultline/cluster.yaml",
    ]);
    let at = docker_ok(&["port", NAME, "9101/tcp"]);
    let at = at.lines().next().expect("a published port").to_string();
    // The container's first process is docker's init; the node is its child.
    let init = docker_ok(&["inspect", "-f", "{{.State.Pid}}", node]);
    let pid = child_of(&init, "faultline-node")
        .unwrap_or_else(|| panic!("no faultline-node under {node}'s init (pid {init})"));
    let secret = faultline_chaos::platform::local::load_template(&cluster)
        .expect("the stack's cluster file")
        .secret;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let http = reqwest::Client::new();
    let post = |path: &str, body: &str| -> Option<(u16, String)> {
        rt.block_on(async {
            let r = http
                .post(format!("http://{at}{path}"))
                .bearer_auth(&secret)
                .header("content-type", "application/json")
                .body(body.to_string())
                .timeout(std::time::Duration::from_secs(3))
                .send()
                .await
                .ok()?;
            Some((r.status().as_u16(), r.text().await.unwrap_or_default()))
        })
    };
    // The container may take a moment to listen.
    let mut first = None;
    for _ in 0..100 {
        first = post("/freeze", r#"{"lease_ms": 20000}"#);
        if first.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (code, body) = first
        .unwrap_or_else(|| panic!("the freezer never answered: {}", docker_ok(&["logs", NAME])));
    assert_eq!(code, 200, "freeze: {body}");
    assert!(
        within(3, || stopped(&pid)),
        "{node} (pid {pid}) was not stopped: {body}"
    );
    let (code, body) = post("/thaw", "").expect("thaw");
    assert_eq!(code, 200, "thaw: {body}");
    assert!(
        within(3, || !stopped(&pid)),
        "{node} stayed stopped after a thaw"
    );
    // A lease nobody renews runs out.
    let (code, _) = post("/freeze", r#"{"lease_ms": 700}"#).expect("freeze");
    assert_eq!(code, 200);
    assert!(within(3, || stopped(&pid)));
    assert!(
        within(5, || !stopped(&pid)),
        "the lease ran out and {node} stayed stopped"
    );
    // The sidecar stopped while it holds a freeze: it thaws on the way out.
    let (code, _) = post("/freeze", r#"{"lease_ms": 60000}"#).expect("freeze");
    assert_eq!(code, 200);
    assert!(within(3, || stopped(&pid)));
    docker_ok(&["stop", "-t", "10", NAME]);
    assert!(
        within(3, || !stopped(&pid)),
        "the freezer stopped and left {node} stopped"
    );
}

fn copies(saved: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(saved)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// The runs in a schedule's copied-out index (none if it has none).
fn schedule_runs(results: &Path) -> Vec<Value> {
    std::fs::read_to_string(results.join("index.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["runs"].as_array().cloned())
        .unwrap_or_default()
}
