//! Prometheus's scrape configuration of a cluster: one job for the nodes
//! (each target labelled with its node, role and system), one for the packet
//! proxy, one for the scheduled runs' controller, under the job names the
//! dashboards and alert rules select on. Compose and Kubernetes write the
//! same file with their own addresses.

use faultline_node::config::Cluster;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A Prometheus configuration (the part a platform writes).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PromConfig {
    pub global: PromGlobal,
    pub rule_files: Vec<String>,
    pub scrape_configs: Vec<ScrapeConfig>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PromGlobal {
    pub scrape_interval: String,
    pub scrape_timeout: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScrapeConfig {
    pub job_name: String,
    pub static_configs: Vec<StaticConfig>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StaticConfig {
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// The scrape configuration of `template`'s cluster, scraping every
/// `interval` (`1s`; the timeout is 90 % of it), with alert rules from
/// `rules` (relative to the file), each node at `node(id)`, the proxy and the
/// schedule at theirs (`host:port`). The schedule's target is down unless a
/// scheduled run is going on.
pub fn config(
    template: &Cluster,
    interval: &str,
    rules: &str,
    node: impl Fn(&str) -> String,
    proxy: String,
    schedule: String,
) -> PromConfig {
    let system = template.file.system.clone();
    let labelled = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let timeout = match interval
        .strip_suffix('s')
        .and_then(|n| n.parse::<u64>().ok())
    {
        Some(secs) => format!("{}ms", secs * 900),
        None => interval.to_string(),
    };
    PromConfig {
        global: PromGlobal {
            scrape_interval: interval.into(),
            scrape_timeout: timeout,
        },
        rule_files: vec![rules.into()],
        scrape_configs: vec![
            ScrapeConfig {
                job_name: "faultline-nodes".into(),
                static_configs: template
                    .nodes
                    .iter()
                    .map(|n| StaticConfig {
                        targets: vec![node(&n.id)],
                        labels: labelled(&[
                            ("node", &n.id),
                            ("role", &n.role),
                            ("system", &system),
                        ]),
                    })
                    .collect(),
            },
            ScrapeConfig {
                job_name: "faultline-proxy".into(),
                static_configs: vec![StaticConfig {
                    targets: vec![proxy],
                    labels: labelled(&[("system", &system)]),
                }],
            },
            ScrapeConfig {
                job_name: "faultline-chaos".into(),
                static_configs: vec![StaticConfig {
                    targets: vec![schedule],
                    labels: labelled(&[("system", &system)]),
                }],
            },
        ],
    }
}
