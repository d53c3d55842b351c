//! Proxy configuration: the directed links, the control API, the run seed.
//!
//! Loadable from YAML or JSON (serde) and constructible in code. Validation
//! happens once here, before any socket is bound, so a bad file fails with one
//! message naming the link and the field.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::ProxyError;
use super::faults::FaultSpec;

/// Longest lease a request may ask for; also keeps `Instant + lease` far from overflow.
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 3600);

/// One directed link. Node `from` sends to `listen` instead of to node `to`;
/// the proxy forwards to `target` (node `to`'s real address) and carries the
/// replies back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub from: String,
    pub to: String,
    /// Where the proxy listens for `from`'s datagrams (port 0: any free port).
    pub listen: SocketAddr,
    /// Node `to`'s real address, `host:port`: an IP address, or a DNS name
    /// (a Kubernetes Service) looked up when the proxy starts.
    pub target: String,
    /// Where the link's upstream socket binds (default: any free port). A
    /// controller that hands out ports in one batch sets it, so the proxy
    /// never takes a port promised to a node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<SocketAddr>,
    /// Faults of the `from -> to` direction from start-up. They hold without a
    /// lease (they are the configured baseline) until cleared through the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<FaultSpec>,
}

impl Link {
    pub fn new(
        from: impl Into<String>,
        to: impl Into<String>,
        listen: SocketAddr,
        target: impl std::fmt::Display,
    ) -> Self {
        Link {
            from: from.into(),
            to: to.into(),
            listen,
            target: target.to_string(),
            upstream: None,
            faults: None,
        }
    }

    /// The same link with its upstream socket bound to `addr`.
    pub fn with_upstream(mut self, addr: SocketAddr) -> Self {
        self.upstream = Some(addr);
        self
    }

    /// The same link with baseline faults.
    pub fn with_faults(mut self, faults: FaultSpec) -> Self {
        self.faults = Some(faults);
        self
    }
}

/// The HTTP control API. Everything but `GET /metrics` needs
/// `Authorization: Bearer <token>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    pub listen: SocketAddr,
    pub token: String,
}

/// Whole proxy configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Run seed: every direction's RNG is derived from it and the direction's
    /// node ids, so a run replays given the same datagram order.
    #[serde(default)]
    pub seed: u64,
    /// Node order used by partition shapes (halves, ring, ...). Empty: the
    /// order in which nodes first appear in `links`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// Lease given to API fault sets that do not name one.
    #[serde(default = "default_lease_ms")]
    pub default_lease_ms: u64,
    /// HTTP control API; without it the proxy is steered in-process only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<ControlConfig>,
    pub links: Vec<Link>,
}

/// Whether `s` is `host:port` with a non-empty host (a name or an IP
/// address, IPv6 in brackets) and a port from 1 to 65535.
fn check_host_port(s: &str) -> Result<(), &'static str> {
    if s.parse::<SocketAddr>().is_ok_and(|a| a.port() != 0) {
        return Ok(());
    }
    let (host, port) = s.rsplit_once(':').ok_or("is not host:port")?;
    match port.parse::<u16>() {
        Ok(0) => return Err("has port 0"),
        Ok(_) => {}
        Err(_) => return Err("has no port from 1 to 65535"),
    }
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if name_ok {
        Ok(())
    } else {
        Err("does not name a host (a DNS name or an IP address)")
    }
}

fn default_lease_ms() -> u64 {
    30_000
}

impl ProxyConfig {
    /// A config with these links, seed 0, no control API, default lease.
    pub fn new(links: Vec<Link>) -> Self {
        ProxyConfig {
            seed: 0,
            nodes: Vec::new(),
            default_lease_ms: default_lease_ms(),
            control: None,
            links,
        }
    }

    /// Parse YAML (JSON is YAML too, but use [`ProxyConfig::from_json_str`]
    /// for JSON-specific error positions).
    pub fn from_yaml_str(text: &str) -> Result<Self, ProxyError> {
        let cfg: ProxyConfig = serde_yaml::from_str(text).map_err(|e| ProxyError::ParseConfig {
            origin: "YAML".into(),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn from_json_str(text: &str) -> Result<Self, ProxyError> {
        let cfg: ProxyConfig = serde_json::from_str(text).map_err(|e| ProxyError::ParseConfig {
            origin: "JSON".into(),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Load a file: `.json` as JSON, anything else as YAML.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ProxyError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ProxyError::ReadConfig {
            path: shown.clone(),
            source,
        })?;
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let parsed = if is_json {
            Self::from_json_str(&text)
        } else {
            Self::from_yaml_str(&text)
        };
        parsed.map_err(|e| match e {
            ProxyError::ParseConfig { message, .. } => ProxyError::ParseConfig {
                origin: shown,
                message,
            },
            ProxyError::InvalidConfig(m) => ProxyError::InvalidConfig(format!("{shown}: {m}")),
            other => other,
        })
    }

    pub fn default_lease(&self) -> Duration {
        Duration::from_millis(self.default_lease_ms)
    }

    /// Node order for partitions: `nodes` if given, else first appearance in links.
    pub fn node_order(&self) -> Vec<String> {
        if !self.nodes.is_empty() {
            return self.nodes.clone();
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for l in &self.links {
            for id in [&l.from, &l.to] {
                if seen.insert(id.as_str()) {
                    out.push(id.clone());
                }
            }
        }
        out
    }

    /// Check everything that can be checked without binding sockets.
    pub fn validate(&self) -> Result<(), ProxyError> {
        let bad = |m: String| Err(ProxyError::InvalidConfig(m));
        if self.links.is_empty() {
            return bad("links is empty: list at least one directed link".into());
        }
        if self.default_lease_ms == 0 || Duration::from_millis(self.default_lease_ms) > MAX_LEASE {
            return bad(format!(
                "default_lease_ms must be between 1 and {} ms, got {}",
                MAX_LEASE.as_millis(),
                self.default_lease_ms
            ));
        }
        let mut pairs = HashSet::new();
        let mut listens = HashSet::new();
        for (i, l) in self.links.iter().enumerate() {
            for (field, id) in [("from", &l.from), ("to", &l.to)] {
                if id.is_empty() || id.contains('/') || id.chars().any(char::is_whitespace) {
                    return bad(format!(
                        "links[{i}].{field} {id:?}: node ids must be non-empty, without '/' or spaces"
                    ));
                }
            }
            if l.from == l.to {
                return bad(format!("links[{i}]: from and to are both {:?}", l.from));
            }
            if !pairs.insert((l.from.as_str(), l.to.as_str())) {
                return bad(format!(
                    "links[{i}]: link {} -> {} is listed twice",
                    l.from, l.to
                ));
            }
            if l.listen.port() != 0 && !listens.insert(l.listen) {
                return bad(format!(
                    "links[{i}]: listen address {} is used by another link",
                    l.listen
                ));
            }
            if let Err(why) = check_host_port(&l.target) {
                return bad(format!("links[{i}]: target {:?} {why}", l.target));
            }
            if let Some(f) = &l.faults {
                f.validate().map_err(|e| {
                    ProxyError::InvalidConfig(format!("links[{i}] ({} -> {}): {e}", l.from, l.to))
                })?;
            }
        }
        if !self.nodes.is_empty() {
            let listed: HashSet<&str> = self.nodes.iter().map(String::as_str).collect();
            if listed.len() != self.nodes.len() {
                return bad("nodes lists a node twice".into());
            }
            for l in &self.links {
                for id in [&l.from, &l.to] {
                    if !listed.contains(id.as_str()) {
                        return bad(format!(
                            "node {id:?} is used by a link but missing from nodes"
                        ));
                    }
                }
            }
        }
        if let Some(c) = &self.control {
            if c.token.trim().is_empty() {
                return bad(
                    "control.token is empty: set a bearer token for the control API".into(),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
seed: 42
default_lease_ms: 10000
control:
  listen: 127.0.0.1:0
  token: secret
links:
  - { from: a, to: b, listen: "127.0.0.1:7001", target: "127.0.0.1:9001" }
  - from: b
    to: a
    listen: 127.0.0.1:7002
    target: 127.0.0.1:9000
    faults:
      drop: 0.1
      delay: { ms: 20, jitter_ms: 5, distribution: normal }
"#;

    #[test]
    fn yaml_example_loads() {
        let cfg = ProxyConfig::from_yaml_str(YAML).expect("loads");
        assert_eq!(cfg.seed, 42);
        assert_eq!(cfg.links.len(), 2);
        assert_eq!(cfg.node_order(), vec!["a".to_string(), "b".to_string()]);
        let f = cfg.links[1].faults.as_ref().expect("faults");
        assert_eq!(f.drop, 0.1);
        // JSON round trip gives the same config.
        let json = serde_json::to_string(&cfg).expect("serializes");
        assert_eq!(ProxyConfig::from_json_str(&json).expect("json loads"), cfg);
    }

    /// The example in the `proxy` module docs, kept in step by this test.
    const DOC_EXAMPLE: &str = r#"
seed: 42
nodes: [s1, s2, s3]          # optional: order used by partition shapes
default_lease_ms: 30000
control: { listen: "127.0.0.1:7400", token: "change-me" }
links:
  - { from: s1, to: s2, listen: "127.0.0.1:7012", target: "127.0.0.1:7102" }
  - from: s2
    to: s1
    listen: "127.0.0.1:7021"
    target: "127.0.0.1:7101"
    faults: { delay: { ms: 20, jitter_ms: 5, distribution: normal }, drop: 0.01 }
"#;

    #[test]
    fn doc_example_loads() {
        let cfg = ProxyConfig::from_yaml_str(DOC_EXAMPLE).expect("doc example loads");
        assert_eq!(cfg.node_order().len(), 3);
        assert_eq!(
            cfg.control.as_ref().map(|c| c.token.as_str()),
            Some("change-me")
        );
    }

    #[test]
    fn targets_are_ip_addresses_or_dns_names_with_a_port() {
        let a: SocketAddr = "127.0.0.1:7001".parse().expect("addr");
        for good in [
            "127.0.0.1:7101",
            "[::1]:7101",
            "n-s1.faultline.svc:7101",
            "localhost:1",
        ] {
            let cfg = ProxyConfig::new(vec![Link::new("a", "b", a, good)]);
            assert!(cfg.validate().is_ok(), "{good}: {:?}", cfg.validate());
        }
        for (bad, why) in [
            ("n-s1:0", "port 0"),
            ("n-s1", "not host:port"),
            ("n-s1:http", "no port"),
            (":7101", "does not name a host"),
            ("bad_name:7101", "does not name a host"),
            ("a..b:7101", "does not name a host"),
        ] {
            let cfg = ProxyConfig::new(vec![Link::new("a", "b", a, bad)]);
            let e = cfg.validate().expect_err(bad).to_string();
            assert!(
                e.contains("links[0]: target") && e.contains(why),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn invalid_configs_say_what_to_fix() {
        let a: SocketAddr = "127.0.0.1:7001".parse().expect("addr");
        let t: SocketAddr = "127.0.0.1:9001".parse().expect("addr");
        let cases: Vec<(ProxyConfig, &str)> = vec![
            (ProxyConfig::new(vec![]), "links is empty"),
            (ProxyConfig::new(vec![Link::new("a", "a", a, t)]), "both"),
            (
                ProxyConfig::new(vec![Link::new("a", "b", a, t), Link::new("a", "b", a, t)]),
                "listed twice",
            ),
            (
                ProxyConfig::new(vec![Link::new("a", "b", a, t), Link::new("b", "a", a, t)]),
                "used by another link",
            ),
            (
                ProxyConfig::new(vec![Link::new("a/x", "b", a, t)]),
                "node ids",
            ),
            (
                ProxyConfig::new(vec![Link::new("a", "b", a, t).with_faults(FaultSpec {
                    drop: 2.0,
                    ..Default::default()
                })]),
                "links[0] (a -> b): invalid faults: drop",
            ),
        ];
        for (cfg, want) in cases {
            let err = cfg.validate().expect_err(want).to_string();
            assert!(err.contains(want), "want {want:?} in {err}");
        }
        let err = ProxyConfig::from_yaml_str("links: [ {from: a} ]").expect_err("missing fields");
        assert!(err.to_string().contains("missing field"), "{err}");
        let err = ProxyConfig::from_yaml_str("linx: []").expect_err("unknown field");
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
