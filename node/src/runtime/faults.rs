//! The node's message fault layer as the runtime and the admin API share it:
//! the rule engine, its lease, and the counting of every injected fault.
//!
//! Rules set through the admin API hold for a lease and then expire, so the
//! faults heal by themselves if the controller dies. Rules from the cluster
//! file have no lease.

pub use crate::api::FaultStatus;
use crate::faults::{Decision, FaultEngine, FaultRule, Side};
use crate::metrics::Metrics;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

struct Inner {
    engine: FaultEngine,
    lease_until: Option<Instant>,
}

pub struct FaultControl {
    node: String,
    inner: Mutex<Inner>,
    /// Lets the hot path skip the lock when no rule is installed.
    active: AtomicBool,
    metrics: Arc<Metrics>,
}

impl FaultControl {
    /// The rules even if a thread panicked while holding them: a poisoned
    /// lock must not silently switch the fault layer off (or on).
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn new(node: &str, seed: u64, metrics: Arc<Metrics>) -> Self {
        FaultControl {
            node: node.to_string(),
            inner: Mutex::new(Inner {
                engine: FaultEngine::new(node, seed),
                lease_until: None,
            }),
            active: AtomicBool::new(false),
            metrics,
        }
    }

    /// Replaces the rule set; `lease` bounds how long it holds.
    pub fn set(&self, rules: Vec<FaultRule>, lease: Option<Duration>, seed: Option<u64>) {
        let mut g = self.lock();
        let n = rules.len();
        g.engine.set_rules(rules, seed);
        g.lease_until = lease.map(|l| Instant::now() + l);
        self.active.store(n > 0, Ordering::Release);
        self.metrics.fault_rules.set(n as i64);
        tracing::info!(node = %self.node, rules = n, lease_ms = lease.map(|l| l.as_millis() as u64), "message fault rules set");
    }

    pub fn clear(&self) {
        self.set(Vec::new(), None, None);
    }

    /// Drops the rules once their lease has run out.
    pub fn expire(&self) {
        let expired = self.lock().lease_until.is_some_and(|t| Instant::now() >= t);
        if expired {
            tracing::warn!(node = %self.node, "fault lease expired; healing");
            self.clear();
        }
    }

    pub fn status(&self) -> FaultStatus {
        let (rules, lease) = {
            let g = self.lock();
            (g.engine.rules(), g.lease_until)
        };
        FaultStatus {
            node: self.node.clone(),
            rules,
            lease_remaining_ms: lease
                .map(|t| t.saturating_duration_since(Instant::now()).as_millis() as u64),
        }
    }

    /// Whether any rule is installed; without one the hot path skips the layer.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Decides one message's fate and counts what was injected.
    pub fn decide(&self, from: &str, to: &str, kind: &str, at: Side) -> Option<Decision> {
        if !self.active.load(Ordering::Acquire) {
            return None;
        }
        let d = self.lock().engine.decide(from, to, kind, at);
        for (rule, action) in &d.injected {
            self.metrics
                .faults_injected
                .with_label_values(&[rule.as_str(), action])
                .inc();
            tracing::debug!(node = %self.node, from, to, kind, side = at.as_str(), rule, action, "fault injected");
        }
        Some(d)
    }

    pub fn shuffle<T>(&self, peer: &str, at: Side, items: &mut [T]) {
        self.lock().engine.shuffle(peer, at, items);
    }
}
