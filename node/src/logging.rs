//! Log setup shared by the faultline binaries: `tracing` to stderr, filtered
//! by `RUST_LOG` or the `--log` flag, colours only on a terminal.

/// Installs the global subscriber; `filter` uses tracing's EnvFilter syntax.
pub fn init(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
