//! What every `make bench` binary shares: settings from the environment,
//! percentiles of measured samples, and the line that says which machine
//! and load the figures were measured on (figures are printed, never
//! asserted: these machines are shared and noisy).

/// The value of environment variable `k` parsed, or `d` when it is unset
/// or does not parse.
pub fn env<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// The `p` quantile (0..=1, nearest rank) of `sorted` (ascending); NaN
/// when there is no sample.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// "N cores, load A B C": the cores this process may use and the load
/// averages over 1, 5 and 15 minutes ("unknown" where /proc has none).
pub fn machine() -> String {
    format!(
        "{} cores, load {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".into())
    )
}
