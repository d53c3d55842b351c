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

/// What the closed-loop load generators of several client nodes did
/// together: successes per second summed, the median of the clients' p50
/// latencies and the worst client's p99, in ms.
pub struct LoadSummary {
    pub ok_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

pub fn summarize(stats: &[faultline_node::api::LoadStats]) -> LoadSummary {
    let mut p50s: Vec<f64> = stats.iter().map(|s| s.p50_ms).collect();
    p50s.sort_by(f64::total_cmp);
    LoadSummary {
        ok_per_second: stats.iter().map(|s| s.ok_per_second).sum(),
        p50_ms: percentile(&p50s, 0.5),
        p99_ms: stats.iter().map(|s| s.p99_ms).fold(0.0, f64::max),
    }
}
