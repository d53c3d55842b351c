//! The QUIC transport: identity and mutual TLS (`tls`), framing (`codec`) and
//! the connection mesh between nodes (`mesh`).
pub mod codec;
pub mod mesh;
pub mod tls;
