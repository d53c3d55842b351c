//! Mutual TLS: a peer with no certificate, one signed by another CA, and one
//! naming an id the cluster does not have are refused; a legitimate peer that
//! sends garbage is cut off. None of it changes state, and the node keeps
//! serving.

use faultline_e2e::TestCluster;
use faultline_node::config::{self, Certs, TransportFile};
use faultline_node::transport::tls::{self, Identity};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn endpoint() -> quinn::Endpoint {
    quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client endpoint")
}

/// Connects as `identity` (or with no certificate) and tries to talk.
/// Returns true if the server let the connection live and carry a stream.
async fn attempt(
    server: SocketAddr,
    ca: &Path,
    identity: Option<&Identity>,
    payload: &[u8],
) -> bool {
    let t = TransportFile::default();
    let cfg = match identity {
        Some(id) => id.client_config(&t).expect("client config"),
        None => {
            let mut roots = rustls::RootCertStore::empty();
            use rustls::pki_types::pem::PemObject;
            let ca_der = rustls::pki_types::CertificateDer::from_pem_file(ca).expect("read ca");
            roots.add(ca_der).expect("root");
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("tls13")
                .with_root_certificates(roots)
                .with_no_client_auth();
            tls.alpn_protocols = vec![tls::ALPN.to_vec()];
            let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic tls");
            quinn::ClientConfig::new(Arc::new(crypto))
        }
    };
    let ep = endpoint();
    let Ok(connecting) = ep.connect_with(cfg, server, "s1") else {
        return false;
    };
    let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(5), connecting).await else {
        return false;
    };
    if let Ok(mut s) = conn.open_uni().await {
        let _ = s.write_all(payload).await;
        let _ = s.finish();
    }
    // A refused peer is closed by the server promptly.
    tokio::time::timeout(Duration::from_secs(3), conn.closed())
        .await
        .is_err()
}

async fn metric(c: &TestCluster, id: &str, prefix: &str) -> f64 {
    let text = c.get_text(id, "/metrics").await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_are_refused_and_garbage_is_cut_off() {
    let mut c = TestCluster::tokens("mtls", 3, 1, "");
    for s in ["s1", "s2", "s3"] {
        c.start(s);
    }
    c.wait_ready(Duration::from_secs(20)).await;
    let cluster = config::load(&c.file, Certs::Required).expect("cluster");
    let s1: SocketAddr = format!("127.0.0.1:{}", c.nodes[0].listen)
        .parse()
        .expect("addr");
    let before = c.state("s1").await.expect("state");

    // No client certificate.
    assert!(!attempt(s1, &cluster.ca_path(), None, b"hello").await);
    // A certificate from another CA, even one that names a real node.
    let other = c.dir.join("other-ca");
    tls::generate_for(&["c1".to_string()], &other).expect("other CA");
    let foreign = Identity::from_files(
        "c1",
        &other.join("c1.pem"),
        &other.join("c1.key"),
        &cluster.ca_path(),
    )
    .expect("foreign identity");
    assert!(!attempt(s1, &cluster.ca_path(), Some(&foreign), b"hello").await);
    // The cluster's CA, but an id the cluster file does not have.
    let same_ca = c.dir.join("same-ca");
    std::fs::create_dir_all(&same_ca).expect("dir");
    for f in ["ca.pem", "ca.key"] {
        std::fs::copy(cluster.tls_dir.join(f), same_ca.join(f)).expect("copy CA");
    }
    tls::generate_for(&["intruder".to_string()], &same_ca).expect("intruder cert");
    let intruder = Identity::from_files(
        "intruder",
        &same_ca.join("intruder.pem"),
        &same_ca.join("intruder.key"),
        &cluster.ca_path(),
    )
    .expect("intruder identity");
    assert!(!attempt(s1, &cluster.ca_path(), Some(&intruder), b"hello").await);
    assert!(metric(&c, "s1", "faultline_peers_refused_total").await >= 2.0);

    // A real node's identity that sends a frame that does not decode.
    let c1 = Identity::load(&cluster, "c1").expect("c1 identity");
    let garbage = [0u8, 0, 0, 5, 0xff, 0xfe, 0xfd, 0xfc, 0xfb];
    assert!(!attempt(s1, &cluster.ca_path(), Some(&c1), &garbage).await);
    assert!(metric(&c, "s1", "faultline_frame_errors_total").await >= 1.0);

    // Nothing changed, and the servers still serve the real client.
    let after = c.state("s1").await.expect("state");
    assert_eq!(before.state.tokens, after.state.tokens);
    assert_eq!(before.state.epoch, after.state.epoch);
    c.start("c1");
    c.wait_ready(Duration::from_secs(20)).await;
    let t0 = std::time::Instant::now();
    loop {
        let v = c
            .op(
                "c1",
                &faultline_node::protocol::tokens::Request::Pay {
                    token: 0,
                    to: "c1".into(),
                },
            )
            .await;
        if v.outcome == faultline_node::api::Outcome::Ok {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "no progress after the attacks: {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(c.alive("s1"));
}
