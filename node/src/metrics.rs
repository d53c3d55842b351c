//! One Prometheus registry per process, and the metrics every node exports
//! whatever its system (a system registers its own gauges on the same
//! registry through the system seam).
//! Names follow Prometheus conventions (`faultline_` prefix, `_total` for
//! counters, seconds for durations); each is documented in README.md.

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub messages_sent: IntCounterVec,
    pub messages_received: IntCounterVec,
    pub messages_dropped: IntCounterVec,
    pub frame_errors: IntCounterVec,
    pub connections: IntGaugeVec,
    pub connection_events: IntCounterVec,
    pub peers_refused: IntCounterVec,
    pub faults_injected: IntCounterVec,
    pub fault_rules: IntGauge,
    pub ops: IntCounterVec,
    pub op_duration: HistogramVec,
    pub role: IntGaugeVec,
    pub wal_bytes: IntCounterVec,
    pub start_time: Gauge,
    pub build_info: GaugeVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    r.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric definition");
    r.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

impl Metrics {
    /// Builds the registry; `node` becomes a constant label on every series.
    pub fn new(node: &str, system: &str) -> Self {
        let mut labels = std::collections::HashMap::new();
        labels.insert("node".to_string(), node.to_string());
        let r = Registry::new_custom(None, Some(labels)).expect("valid registry");
        let op_duration = HistogramVec::new(
            HistogramOpts::new(
                "faultline_op_duration_seconds",
                "Client operation latency from invocation to reply, by kind and outcome.",
            )
            .buckets(vec![
                0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
            ]),
            &["kind", "outcome"],
        )
        .expect("valid metric definition");
        r.register(Box::new(op_duration.clone()))
            .expect("metric registered once");
        let start_time = Gauge::new(
            "faultline_process_start_time_seconds",
            "Unix time the node process started; a change means a restart.",
        )
        .expect("valid metric definition");
        r.register(Box::new(start_time.clone()))
            .expect("metric registered once");
        start_time.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        );
        let build_info = GaugeVec::new(
            Opts::new(
                "faultline_build_info",
                "Always 1; labels name the build and system.",
            ),
            &["version", "system"],
        )
        .expect("valid metric definition");
        r.register(Box::new(build_info.clone()))
            .expect("metric registered once");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), system])
            .set(1.0);
        Metrics {
            messages_sent: counter(&r, "faultline_messages_sent_total", "Protocol messages handed to the transport, by peer and kind.", &["peer", "kind"]),
            messages_received: counter(&r, "faultline_messages_received_total", "Protocol messages received and decoded, by peer and kind.", &["peer", "kind"]),
            messages_dropped: counter(&r, "faultline_messages_dropped_total", "Messages dropped before the wire, by peer and reason (queue_full, connection_lost, encode, delay_full).", &["peer", "reason"]),
            frame_errors: counter(&r, "faultline_frame_errors_total", "Frames that did not decode or were too large; the connection is closed.", &["peer"]),
            connections: gauge_vec(&r, "faultline_connections", "1 while a QUIC connection to the peer is up.", &["peer"]),
            connection_events: counter(&r, "faultline_connection_events_total", "Connection lifecycle events by peer and event (connected, closed, dial_failed).", &["peer", "event"]),
            peers_refused: counter(&r, "faultline_peers_refused_total", "Incoming connections refused, by reason (handshake, unknown_id).", &["reason"]),
            faults_injected: counter(&r, "faultline_faults_injected_total", "Message faults injected by the fault layer, by rule and action.", &["rule", "action"]),
            fault_rules: gauge(&r, "faultline_fault_rules", "Message fault rules currently installed."),
            ops: counter(&r, "faultline_ops_total", "Client operations completed, by kind and outcome (ok, failed, unknown).", &["kind", "outcome"]),
            op_duration,
            role: gauge_vec(&r, "faultline_role", "1 for the node's current role.", &["role"]),
            wal_bytes: counter(&r, "faultline_wal_bytes_total", "Bytes appended to the durable log, by operation (append, compact).", &["op"]),
            start_time,
            build_info,
            registry: r,
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let enc = TextEncoder::new();
        if enc.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
