//! Errors of the packet proxy.
//!
//! One enum for everything a caller can get back, so the CLI, the control API
//! and in-process callers all map failures the same way (the control API turns
//! [`ProxyError::UnknownLink`] into 404 and the validation variants into 400).

use std::net::SocketAddr;

/// What went wrong while loading, starting or steering the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The configuration file could not be read.
    #[error("cannot read proxy config {path}: {source}")]
    ReadConfig {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The configuration text did not parse (serde's message carries line and column).
    #[error("cannot parse proxy config {origin}: {message}")]
    ParseConfig { origin: String, message: String },
    /// The configuration parsed but is not usable; `message` says what to fix.
    #[error("invalid proxy config: {0}")]
    InvalidConfig(String),
    /// A fault description is out of range (probability above 1, zero bandwidth, ...).
    #[error("invalid faults: {0}")]
    InvalidFaults(String),
    /// A partition request names unknown nodes or cannot be laid out on this cluster.
    #[error("invalid partition: {0}")]
    InvalidPartition(String),
    /// A lease outside the accepted range.
    #[error("invalid lease: {0}")]
    InvalidLease(String),
    /// A request for a directed link that is not in the proxy's link set.
    #[error("unknown link {from} -> {to}: the proxy carries no such directed link")]
    UnknownLink { from: String, to: String },
    /// A socket could not be bound.
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A link's target names a host that does not resolve.
    #[error(
        "link {link}: cannot look up its target {target:?}: {why} (a DNS name that does not resolve yet?)"
    )]
    Resolve {
        link: String,
        target: String,
        why: String,
    },
    /// Any other socket error during start-up.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A metric could not be registered (a name clash inside our own registry).
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl ProxyError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ProxyError::Io {
            context: context.into(),
            source,
        }
    }
}
