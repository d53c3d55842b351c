//! The proxy's control plane over its HTTP API: partitions block exactly the
//! expected directed links (checked over real UDP and in the counters), leases
//! heal by themselves, the bearer token is enforced, and bad requests are
//! refused without changing anything.

mod proxy_util;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use faultline_chaos::proxy::{Link, Proxy, ProxyConfig, ProxyHandle, ProxyStats};
use proxy_util::*;
use serde_json::{json, Value};
use tokio::net::UdpSocket;

const NODES: [&str; 4] = ["n0", "n1", "n2", "n3"];

struct Cluster {
    proxy: ProxyHandle,
    _echoes: Vec<Echo>,
    base: String,
    http: reqwest::Client,
}

/// Four nodes, every ordered pair a link, each node an echo server.
async fn cluster() -> Cluster {
    let mut echoes = Vec::new();
    for _ in NODES {
        echoes.push(echo().await);
    }
    let mut links = Vec::new();
    for a in NODES {
        for (j, b) in NODES.iter().enumerate() {
            if a != *b {
                links.push(Link::new(a, *b, localhost(), echoes[j].addr));
            }
        }
    }
    let mut cfg = ProxyConfig::new(links);
    cfg.nodes = NODES.iter().map(|s| s.to_string()).collect();
    cfg.control = Some(control());
    cfg.seed = 9;
    let proxy = Proxy::start(cfg).await.expect("proxy starts");
    let base = format!("http://{}", proxy.control_addr().expect("control api"));
    Cluster {
        proxy,
        _echoes: echoes,
        base,
        http: reqwest::Client::new(),
    }
}

impl Cluster {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = tokio::time::timeout(Duration::from_secs(10), req.send())
            .await
            .expect("http within 10 s")
            .expect("http request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn authed(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        self.call(method, path, body, Some(TOKEN)).await
    }

    async fn stats(&self) -> ProxyStats {
        let (status, v) = self.authed(reqwest::Method::GET, "/links", None).await;
        assert_eq!(status, 200, "{v}");
        serde_json::from_value(v).expect("GET /links parses as ProxyStats")
    }

    /// Send 3 datagrams on every link at once; return the links that echoed.
    async fn probe(&self) -> BTreeSet<(String, String)> {
        let mut socks = Vec::new();
        for l in self.proxy.links() {
            let s = UdpSocket::bind(localhost()).await.expect("bind");
            for i in 0..3u8 {
                let _ = s.send_to(&[i; 16], l.listen).await;
            }
            socks.push((l.from, l.to, s));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut ok = BTreeSet::new();
        let mut buf = [0u8; 64];
        for (a, b, s) in socks {
            if s.try_recv_from(&mut buf).is_ok() {
                ok.insert((a, b));
            }
        }
        ok
    }
}

fn cut(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn both(groups: &[&[&str]]) -> BTreeSet<(String, String)> {
    let mut s = BTreeSet::new();
    for (i, g) in groups.iter().enumerate() {
        for (j, h) in groups.iter().enumerate() {
            if i != j {
                for a in *g {
                    for b in *h {
                        s.insert((a.to_string(), b.to_string()));
                    }
                }
            }
        }
    }
    s
}

fn all_pairs() -> BTreeSet<(String, String)> {
    let mut s = BTreeSet::new();
    for a in NODES {
        for b in NODES {
            if a != b {
                s.insert((a.to_string(), b.to_string()));
            }
        }
    }
    s
}

/// Partition drops per direction, from `GET /links` (forward counters of each link).
fn partition_drops(s: &ProxyStats) -> BTreeMap<(String, String), u64> {
    s.links
        .iter()
        .map(|l| {
            (
                (l.from.clone(), l.to.clone()),
                l.counters.dropped["partition"],
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_block_exactly_the_expected_links() {
    let c = cluster().await;
    assert_eq!(
        c.probe().await,
        all_pairs(),
        "healthy cluster echoes on every link"
    );
    let cases: Vec<(Value, BTreeSet<(String, String)>)> = vec![
        (
            json!({"shape":"halves"}),
            both(&[&["n0", "n1"], &["n2", "n3"]]),
        ),
        (
            json!({"shape":"isolate","node":"n2"}),
            both(&[&["n2"], &["n0", "n1", "n3"]]),
        ),
        (
            json!({"shape":"majority_minority"}),
            both(&[&["n0", "n1", "n2"], &["n3"]]),
        ),
        // Bridge n2 (the middle of 4); the others split into [n0] and [n1, n3].
        (json!({"shape":"bridge"}), both(&[&["n0"], &["n1", "n3"]])),
        // Ring n0-n1-n2-n3-n0: the diagonals are cut.
        (
            json!({"shape":"ring"}),
            both(&[&["n0"], &["n2"]])
                .union(&both(&[&["n1"], &["n3"]]))
                .cloned()
                .collect(),
        ),
        (
            json!({"shape":"one_way","from":["n0"],"to":["n1"]}),
            cut(&[("n0", "n1")]),
        ),
        (
            json!({"shape":"groups","groups":[["n0"],["n1","n2"]]}),
            both(&[&["n0"], &["n1", "n2"]]),
        ),
    ];
    for (shape, expected) in cases {
        let mut body = shape.clone();
        body["lease_ms"] = json!(20_000);
        let before = partition_drops(&c.stats().await);
        let (status, v) = c
            .authed(reqwest::Method::POST, "/partition", Some(&body.to_string()))
            .await;
        assert_eq!(status, 200, "{shape}: {v}");
        let blocked: BTreeSet<(String, String)> = v["blocked"]
            .as_array()
            .expect("blocked list")
            .iter()
            .map(|p| {
                (
                    p["from"].as_str().expect("from").to_string(),
                    p["to"].as_str().expect("to").to_string(),
                )
            })
            .collect();
        assert_eq!(blocked, expected, "{shape}: API's blocked set");
        let stats = c.stats().await;
        for l in &stats.links {
            let key = (l.from.clone(), l.to.clone());
            assert_eq!(
                l.partitioned,
                expected.contains(&key),
                "{shape}: {key:?} flag"
            );
        }
        // An echo needs both directions: a link answers iff neither is cut.
        let answered = c.probe().await;
        for p in all_pairs() {
            let back = (p.1.clone(), p.0.clone());
            let open = !expected.contains(&p) && !expected.contains(&back);
            assert_eq!(answered.contains(&p), open, "{shape}: link {p:?}");
        }
        // The counters tell one-way from two-way: only cut directions drop.
        let after = partition_drops(&c.stats().await);
        for (k, n) in &after {
            let grew = *n > before.get(k).copied().unwrap_or(0);
            assert_eq!(
                grew,
                expected.contains(k),
                "{shape}: partition drops on {k:?}"
            );
        }
    }
    let (status, v) = c.authed(reqwest::Method::DELETE, "/partition", None).await;
    assert_eq!((status, v["healed"].clone()), (200, json!(true)));
    assert_eq!(
        c.probe().await,
        all_pairs(),
        "healed cluster echoes on every link"
    );
    c.proxy.heal();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_cut_still_forwards_the_open_direction() {
    let c = cluster().await;
    let blocked = c
        .proxy
        .partition(
            serde_json::from_value(json!({"shape":"one_way","from":["n0"],"to":["n1"]}))
                .expect("shape"),
            Some(Duration::from_secs(20)),
        )
        .expect("partition");
    assert_eq!(blocked.len(), 1);
    c.probe().await;
    let s = c.stats().await;
    let l10 = s
        .links
        .iter()
        .find(|l| l.from == "n1" && l.to == "n0")
        .expect("n1->n0");
    // n1 -> n0 datagrams went through; n0's echoes back to n1 were cut.
    assert!(l10.counters.forwarded_packets >= 3, "{:?}", l10.counters);
    assert!(
        l10.reverse_counters.dropped["partition"] >= 3,
        "{:?}",
        l10.reverse_counters
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_expire_and_heal() {
    let c = cluster().await;
    let (s, v) = c
        .authed(
            reqwest::Method::PUT,
            "/links/n0/n1/faults",
            Some(r#"{"blackhole":true,"lease_ms":300}"#),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["faults"]["blackhole"], json!(true));
    let (s, v) = c
        .authed(
            reqwest::Method::POST,
            "/partition",
            Some(r#"{"shape":"isolate","node":"n3","lease_ms":300}"#),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let answered = c.probe().await;
    assert!(!answered.contains(&("n0".into(), "n1".into())));
    // Poll until healed: bounded to 25 rounds (several seconds).
    let mut healed = false;
    for _ in 0..25 {
        let st = c.stats().await;
        if st.partition.is_none()
            && st
                .links
                .iter()
                .all(|l| l.faults.is_none() && !l.partitioned)
        {
            healed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(healed, "leases did not expire");
    assert_eq!(c.probe().await, all_pairs(), "traffic flows after expiry");
    let metrics = c.proxy.metrics_text();
    assert!(
        metrics.contains(r#"faultline_proxy_configured_blackhole{from="n0",to="n1"} 0"#),
        "gauge cleared after expiry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_extends_leases() {
    let c = cluster().await;
    let (s, _) = c
        .authed(
            reqwest::Method::PUT,
            "/links/n0/n1/faults",
            Some(r#"{"drop":0.5,"lease_ms":400}"#),
        )
        .await;
    assert_eq!(s, 200);
    let (s, v) = c
        .authed(
            reqwest::Method::POST,
            "/lease/renew",
            Some(r#"{"lease_ms":20000}"#),
        )
        .await;
    assert_eq!((s, v["renewed"].clone()), (200, json!(1)), "{v}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let st = c.stats().await;
    let l = st
        .links
        .iter()
        .find(|l| l.from == "n0" && l.to == "n1")
        .expect("link");
    assert!(l.faults.is_some(), "renewed fault still there");
    assert!(
        l.lease_remaining_ms.is_some_and(|ms| ms > 10_000),
        "{:?}",
        l.lease_remaining_ms
    );
    // Re-PUT also renews; an empty renew body uses the default lease.
    let (s, v) = c.authed(reqwest::Method::POST, "/lease/renew", None).await;
    assert_eq!((s, v["renewed"].clone()), (200, json!(1)), "{v}");
    let (s, _) = c.authed(reqwest::Method::DELETE, "/faults", None).await;
    assert_eq!(s, 200);
    assert!(c.stats().await.links.iter().all(|l| l.faults.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_requires_the_token_except_metrics() {
    let c = cluster().await;
    let get = reqwest::Method::GET;
    assert_eq!(c.call(get.clone(), "/links", None, None).await.0, 401);
    assert_eq!(
        c.call(get.clone(), "/links", None, Some("wrong")).await.0,
        401
    );
    assert_eq!(
        c.call(get.clone(), "/links", None, Some(TOKEN)).await.0,
        200
    );
    let (s, v) = c
        .call(
            reqwest::Method::PUT,
            "/links/n0/n1/faults",
            Some(r#"{"blackhole":true}"#),
            None,
        )
        .await;
    assert_eq!(s, 401, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("Bearer"), "{v}");
    assert_eq!(
        c.call(reqwest::Method::DELETE, "/faults", None, None)
            .await
            .0,
        401
    );
    assert_eq!(
        c.call(
            reqwest::Method::POST,
            "/partition",
            Some(r#"{"shape":"halves"}"#),
            None
        )
        .await
        .0,
        401
    );
    assert!(c.stats().await.links.iter().all(|l| l.faults.is_none()));
    assert!(c.stats().await.partition.is_none());
    // Metrics are open to the scraper.
    c.probe().await;
    let (s, v) = c.call(get, "/metrics", None, None).await;
    assert_eq!(s, 200);
    let text = v.as_str().expect("metrics are text");
    for name in [
        r#"faultline_proxy_forwarded_packets_total{from="n0",to="n1"}"#,
        r#"faultline_proxy_forwarded_bytes_total{from="n0",to="n1"}"#,
        r#"faultline_proxy_dropped_packets_total{from="n0",reason="partition",to="n1"}"#,
        r#"faultline_proxy_added_delay_seconds_bucket{from="n0",to="n1",le="0.001"}"#,
        "faultline_proxy_duplicated_packets_total",
        "faultline_proxy_delayed_packets_total",
        "faultline_proxy_reordered_packets_total",
        "faultline_proxy_configured_delay_seconds",
    ] {
        assert!(text.contains(name), "missing {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_change_nothing() {
    let c = cluster().await;
    // A live fault and partition that must survive every bad request below.
    let (s, _) = c
        .authed(
            reqwest::Method::PUT,
            "/links/n0/n1/faults",
            Some(r#"{"drop":0.25,"lease_ms":20000}"#),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = c
        .authed(
            reqwest::Method::POST,
            "/partition",
            Some(r#"{"shape":"isolate","node":"n3","lease_ms":20000}"#),
        )
        .await;
    assert_eq!(s, 200);
    let snapshot = |st: &ProxyStats| {
        (
            st.links
                .iter()
                .map(|l| (l.faults.clone(), l.partitioned))
                .collect::<Vec<_>>(),
            st.partition
                .as_ref()
                .map(|p| (p.shape.clone(), p.blocked.clone())),
        )
    };
    let before = snapshot(&c.stats().await);
    let put = reqwest::Method::PUT;
    let post = reqwest::Method::POST;
    let cases: Vec<(reqwest::Method, &str, Option<&str>, u16, &str)> = vec![
        (
            put.clone(),
            "/links/n0/n1/faults",
            Some("{not json"),
            400,
            "not valid JSON",
        ),
        (put.clone(), "/links/n0/n1/faults", Some(""), 400, "empty"),
        (
            put.clone(),
            "/links/n0/n1/faults",
            Some("[1,2]"),
            400,
            "JSON object",
        ),
        (
            put.clone(),
            "/links/n0/n1/faults",
            Some(r#"{"drop":1.5}"#),
            400,
            "drop",
        ),
        (
            put.clone(),
            "/links/n0/n1/faults",
            Some(r#"{"dorp":0.1}"#),
            400,
            "unknown field",
        ),
        (
            put.clone(),
            "/links/n0/n1/faults",
            Some(r#"{"delay":{"ms":5,"distribution":"cauchy"}}"#),
            400,
            "unknown variant",
        ),
        (
            put.clone(),
            "/links/n0/n1/faults",
            Some(r#"{"drop":0.1,"lease_ms":-5}"#),
            400,
            "lease_ms",
        ),
        (
            put.clone(),
            "/links/n0/n1/faults",
            Some(r#"{"drop":0.1,"lease_ms":999999999999}"#),
            400,
            "lease",
        ),
        (
            put.clone(),
            "/links/n0/n9/faults",
            Some(r#"{"drop":0.1}"#),
            404,
            "unknown link n0 -> n9",
        ),
        (
            put.clone(),
            "/links/n0/n0/faults",
            Some(r#"{"drop":0.1}"#),
            404,
            "unknown link",
        ),
        (
            reqwest::Method::DELETE,
            "/links/x/y/faults",
            None,
            404,
            "unknown link",
        ),
        (
            post.clone(),
            "/partition",
            Some(r#"{"shape":"isolate","node":"n9"}"#),
            400,
            "unknown node",
        ),
        (
            post.clone(),
            "/partition",
            Some(r#"{"shape":"moon"}"#),
            400,
            "unknown variant",
        ),
        (
            post.clone(),
            "/partition",
            Some(r#"{"node":"n1"}"#),
            400,
            "shape",
        ),
        (
            post.clone(),
            "/partition",
            Some(r#"{"shape":"halves","extra":1}"#),
            400,
            "unknown field",
        ),
        (
            post.clone(),
            "/lease/renew",
            Some(r#"{"lease":5}"#),
            400,
            "unknown field",
        ),
        (reqwest::Method::GET, "/nope", None, 404, "no such endpoint"),
    ];
    for (method, path, body, want, msg) in cases {
        let (s, v) = c.authed(method.clone(), path, body).await;
        assert_eq!(s, want, "{method} {path} {body:?}: {v}");
        let err = v["error"].as_str().unwrap_or_default();
        assert!(
            err.contains(msg),
            "{method} {path} {body:?}: {err:?} lacks {msg:?}"
        );
    }
    assert_eq!(
        snapshot(&c.stats().await),
        before,
        "bad requests changed the table"
    );
}
