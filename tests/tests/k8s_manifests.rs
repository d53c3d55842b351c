//! The Kubernetes manifests, offline (no cluster runs here): the committed
//! overlays are what `faultline-chaos k8s` writes; every overlay, rendered
//! with k8s/ by `k8s/render.py` (kustomize's subset that k8s/ uses, itself
//! tested against kustomize's documented semantics by `k8s/test_render.py`),
//! passes `kubernetes-validate --strict` (the Kubernetes API schemas, from
//! PyPI; no network); the images named are the workspace version's.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn overlays() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo().join("k8s/overlays"))
        .expect("k8s/overlays")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("kustomization.yaml").is_file())
        .collect();
    out.sort();
    assert!(out.len() >= 2, "overlays: {out:?}");
    out
}

fn run(program: &str, args: &[&str], install: &str) -> std::process::Output {
    Command::new(program)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): {install}; .ci/run installs it"))
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The overlay in `dir` rendered by k8s/render.py: its path from the
/// repository, and the YAML stream.
fn render(dir: &Path) -> (String, String) {
    let rel = dir
        .strip_prefix(repo())
        .unwrap_or(dir)
        .display()
        .to_string();
    let out = run("python3", &["k8s/render.py", &rel], "python3 with PyYAML");
    assert!(out.status.success(), "render {rel}: {}", text(&out));
    (rel, String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn committed_overlays_are_what_the_generator_writes() {
    for dir in overlays() {
        let system = dir.file_name().and_then(|n| n.to_str()).expect("name");
        let cluster = repo().join("clusters").join(format!("{system}.yaml"));
        let template = faultline_chaos::platform::local::load_template(&cluster).expect("template");
        let scenario = repo().join("scenarios").join(format!("{system}.yaml"));
        let files =
            faultline_chaos::platform::kube::overlay(&template, Some(&scenario)).expect("overlay");
        for (name, want) in files {
            if std::env::var_os("FAULTLINE_REGENERATE").is_some() {
                std::fs::write(dir.join(&name), &want).expect("rewrite");
                continue;
            }
            let have = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
            assert!(
                have == want,
                "{}/{name} is stale: `faultline-chaos k8s --cluster clusters/{system}.yaml` rewrites it",
                dir.display()
            );
        }
    }
}

#[test]
fn the_renderer_follows_kustomize() {
    let out = run(
        "python3",
        &["-m", "unittest", "k8s/test_render.py"],
        "python3 with PyYAML (pip install kubernetes-validate brings it)",
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn every_overlay_renders_and_passes_the_kubernetes_schemas() {
    let scratch = faultline_e2e::scratch("k8s-render");
    for dir in overlays() {
        let (rel, rendered) = render(&dir);
        for kind in [
            "Namespace",
            "StatefulSet",
            "Deployment",
            "CronJob",
            "Job",
            "ConfigMap",
            "Service",
            "Role",
            "RoleBinding",
        ] {
            assert!(
                rendered.contains(&format!("\nkind: {kind}\n"))
                    || rendered.starts_with(&format!("kind: {kind}\n")),
                "{rel}: no {kind}"
            );
        }
        // Each system in its own namespace: no shared claims or Secrets.
        let system = dir.file_name().and_then(|n| n.to_str()).unwrap_or("x");
        assert!(
            rendered.contains(&format!("namespace: faultline-{system}\n"))
                && !rendered.contains("namespace: faultline\n"),
            "{rel}: not in namespace faultline-{system}"
        );
        let file = scratch.join(format!(
            "{}.yaml",
            dir.file_name().and_then(|n| n.to_str()).unwrap_or("x")
        ));
        std::fs::write(&file, &rendered).expect("write");
        let v = run(
            "kubernetes-validate",
            &["--strict", "--quiet", file.to_str().expect("utf8")],
            "pip install kubernetes-validate",
        );
        assert!(v.status.success(), "{rel}: {}", text(&v));
    }
}

#[test]
fn manifests_name_this_version_s_images() {
    let version = env!("CARGO_PKG_VERSION");
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("k8s/base"))
        .expect("k8s/base")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.extend(overlays().into_iter().map(|d| d.join("nodes.yaml")));
    let mut seen = 0;
    for f in files {
        let t = std::fs::read_to_string(&f).expect("read");
        for line in t.lines().filter(|l| l.contains("image: faultline-")) {
            seen += 1;
            assert!(
                line.trim_end().ends_with(&format!(":{version}")),
                "{}: {line} (images are tagged with the workspace version, {version})",
                f.display()
            );
        }
    }
    assert!(seen >= 5, "image lines seen: {seen}");
}

/// The ConfigMaps hold everything their files name: the nodes' cluster file
/// loads from a folder holding only `faultline-cluster` (at the base
/// directory it names), and the CronJob's scenario and template from one
/// holding only `faultline-scenario`.
#[test]
fn config_maps_hold_what_their_files_need() {
    use serde::Deserialize;
    let scratch = faultline_e2e::scratch("k8s-configmaps");
    for dir in overlays() {
        let (rel, rendered) = render(&dir);
        let mut maps = std::collections::BTreeMap::new();
        for doc in serde_yaml::Deserializer::from_str(&rendered) {
            let v = serde_yaml::Value::deserialize(doc).expect("a YAML document");
            if v["kind"] == "ConfigMap" {
                let name = v["metadata"]["name"].as_str().expect("name").to_string();
                maps.insert(name, v["data"].clone());
            }
        }
        let system = dir.file_name().and_then(|n| n.to_str()).expect("name");
        let put = |name: &str| -> PathBuf {
            let d = scratch.join(format!("{system}-{name}"));
            std::fs::create_dir_all(&d).expect("dir");
            let data = maps[name].as_mapping().expect("data").clone();
            for (k, v) in data {
                let (k, v) = (k.as_str().expect("key"), v.as_str().expect("text"));
                std::fs::write(d.join(k), v).expect("write");
            }
            d
        };
        let cluster_dir = put("faultline-cluster");
        let cluster = cluster_dir.join("cluster.yaml");
        let moved = std::fs::read_to_string(&cluster)
            .expect("cluster.yaml")
            .replace(
                "base_dir: /etc/faultline\n",
                &format!("base_dir: {}\n", cluster_dir.display()),
            );
        assert!(
            moved.contains(&cluster_dir.display().to_string()),
            "{rel}: base_dir"
        );
        std::fs::write(&cluster, moved).expect("write");
        faultline_node::config::load(&cluster, faultline_node::config::Certs::NotYet)
            .unwrap_or_else(|e| panic!("{rel}: the nodes' cluster file does not load: {e}"));
        let scenario_dir = put("faultline-scenario");
        faultline_chaos::scenario::load(&scenario_dir.join("scenario.yaml"))
            .unwrap_or_else(|e| panic!("{rel}: the CronJob's scenario does not load: {e}"));
    }
}

/// Each overlay's Prometheus configuration (static targets at the
/// Services' names, the alert rules of grafana/) passes `promtool check
/// config`, and scrapes every node of the overlay's cluster file.
#[test]
fn overlay_prometheus_configs_pass_promtool() {
    for dir in overlays() {
        let file = dir.join("prometheus.yml");
        let out = run(
            "promtool",
            &["check", "config", file.to_str().expect("utf8")],
            "apt-get install prometheus",
        );
        assert!(out.status.success(), "{}: {}", file.display(), text(&out));
        let t = std::fs::read_to_string(&file).expect("read");
        let system = dir.file_name().and_then(|n| n.to_str()).expect("name");
        for job in ["faultline-nodes", "faultline-proxy", "faultline-chaos"] {
            assert!(
                t.contains(&format!("job_name: {job}")),
                "{system}: no {job}"
            );
        }
        let cluster = repo().join("clusters").join(format!("{system}.yaml"));
        let template = faultline_chaos::platform::local::load_template(&cluster).expect("template");
        for id in template.ids() {
            assert!(
                t.contains(&format!(
                    "node-{}.faultline-{system}.svc:9100",
                    id.to_ascii_lowercase()
                )),
                "{system}: {id} is not scraped"
            );
        }
    }
}

/// The Prometheus operator's monitors (k8s/monitoring) select Services and
/// pods that every overlay has, on ports those name: a monitor whose
/// selector matches nothing scrapes nothing, silently.
#[test]
fn monitors_select_what_every_overlay_serves() {
    use serde::Deserialize;
    use serde_yaml::Value;
    let docs = |text: &str| -> Vec<Value> {
        serde_yaml::Deserializer::from_str(text)
            .map(|d| Value::deserialize(d).expect("a YAML document"))
            .collect()
    };
    let (_, monitors) = render(&repo().join("k8s/monitoring"));
    let monitors = docs(&monitors);
    assert_eq!(monitors.len(), 3, "{monitors:?}");
    for dir in overlays() {
        let (rel, rendered) = render(&dir);
        let objects = docs(&rendered);
        for m in &monitors {
            let name = m["metadata"]["name"].as_str().expect("name");
            assert_eq!(m["apiVersion"], "monitoring.coreos.com/v1", "{name}");
            let want = m["spec"]["selector"]["matchLabels"]
                .as_mapping()
                .expect("matchLabels");
            let matches = |labels: &Value| want.iter().all(|(k, v)| labels.get(k) == Some(v));
            let (ports, endpoints): (Vec<String>, &Value) = match m["kind"].as_str() {
                Some("ServiceMonitor") => {
                    let svc = objects
                        .iter()
                        .find(|o| o["kind"] == "Service" && matches(&o["metadata"]["labels"]))
                        .unwrap_or_else(|| panic!("{rel}: {name} selects no Service"));
                    let ports = svc["spec"]["ports"]
                        .as_sequence()
                        .expect("ports")
                        .iter()
                        .filter_map(|p| p["name"].as_str().map(String::from))
                        .collect();
                    (ports, &m["spec"]["endpoints"])
                }
                Some("PodMonitor") => {
                    let job = objects
                        .iter()
                        .find(|o| o["kind"] == "CronJob")
                        .expect("a CronJob");
                    let pod = &job["spec"]["jobTemplate"]["spec"]["template"];
                    assert!(
                        matches(&pod["metadata"]["labels"]),
                        "{rel}: {name} does not select the CronJob's pods"
                    );
                    let ports = pod["spec"]["containers"]
                        .as_sequence()
                        .expect("containers")
                        .iter()
                        .flat_map(|c| c["ports"].as_sequence().cloned().unwrap_or_default())
                        .filter_map(|p| p["name"].as_str().map(String::from))
                        .collect();
                    (ports, &m["spec"]["podMetricsEndpoints"])
                }
                other => panic!("{name}: unexpected kind {other:?}"),
            };
            for e in endpoints.as_sequence().expect("endpoints") {
                let port = e["port"].as_str().expect("a named port");
                assert!(
                    ports.iter().any(|p| p == port),
                    "{rel}: {name} scrapes port {port}, which is not among {ports:?}"
                );
                assert_eq!(e["path"], "/metrics", "{name}");
            }
        }
    }
}

/// `kubectl apply -k k8s/` deploys the example system: the same objects as
/// its overlay.
#[test]
fn the_top_level_kustomization_is_the_example_overlay() {
    let (_, top) = render(&repo().join("k8s"));
    let (_, tokens) = render(&repo().join("k8s/overlays/tokens"));
    assert!(top.contains("kind: StatefulSet"), "{top}");
    assert_eq!(top, tokens);
}
