//! The control plane: the fault table every pipe reads, its leases, and
//! [`ProxyController`], the in-process API that the HTTP API also calls.
//!
//! The table is an immutable [`Snapshot`] behind one `RwLock<Arc<_>>` plus a
//! generation counter. A writer clones the snapshot, edits it and swaps it in
//! one step, so a partition touching many directions lands atomically; a pipe
//! checks the generation (one atomic load) per datagram and re-reads the Arc
//! only when it moved.
//!
//! Leases: every fault or partition set through the API expires unless renewed
//! (re-set, or `renew`), so a dead controller cannot leave the cluster broken.
//! Expiry is enforced twice: pipes ignore an expired entry at once, and a
//! reaper task removes it from the table (and from the gauges) shortly after.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::config::{Link, MAX_LEASE};
use super::error::ProxyError;
use super::faults::{DirState, FaultSpec};
use super::metrics::{DirCounters, DirMetrics, ProxyMetrics};
use super::partition::{expand, Cut, PartitionShape};

/// All directions the proxy carries: each link's `from -> to` plus its
/// reverse `to -> from` (the replies on the same 4-tuple), deduplicated.
pub(crate) struct Directions {
    pub pairs: Vec<Cut>,
    index: HashMap<Cut, usize>,
    /// Faults can only be set on a direction that is some link's forward direction.
    pub has_link: Vec<bool>,
}

impl Directions {
    pub(crate) fn build(links: &[Link]) -> Self {
        let mut d = Directions {
            pairs: Vec::new(),
            index: HashMap::new(),
            has_link: Vec::new(),
        };
        for l in links {
            let fwd = d.add(&l.from, &l.to);
            d.has_link[fwd] = true;
            d.add(&l.to, &l.from);
        }
        d
    }

    fn add(&mut self, from: &str, to: &str) -> usize {
        let key = (from.to_string(), to.to_string());
        if let Some(i) = self.index.get(&key) {
            return *i;
        }
        let i = self.pairs.len();
        self.pairs.push(key.clone());
        self.index.insert(key, i);
        self.has_link.push(false);
        i
    }

    pub(crate) fn get(&self, from: &str, to: &str) -> Option<usize> {
        self.index.get(&(from.to_string(), to.to_string())).copied()
    }
}

/// The slot of faults and partitions set without a name.
const UNNAMED: &str = "";
/// The slot of faults configured in the proxy's file (no lease).
const BASELINE: &str = "baseline";

pub(crate) struct ActiveFaults {
    pub spec: FaultSpec,
    noop: bool,
    /// None: configured baseline, no lease.
    pub expires: Option<Instant>,
}

pub(crate) struct ActivePartition {
    pub shape: PartitionShape,
    pub cuts: BTreeSet<Cut>,
    pub expires: Instant,
}

/// One immutable version of the fault table.
///
/// Faults compose: each is set under a name (the controller uses one name per
/// scheduled fault) and holds on its own directions for its own lease, whatever
/// else is set, renewed or healed meanwhile. Setting a name replaces only that
/// name's faults; the data path reads the composition ([`FaultSpec::combine`]),
/// and a direction is blocked while any live partition cuts it.
#[derive(Clone)]
pub(crate) struct Snapshot {
    /// Per direction, its faults by name.
    layers: Vec<BTreeMap<String, Arc<ActiveFaults>>>,
    /// Partitions by name.
    partitions: BTreeMap<String, Arc<ActivePartition>>,
    /// Derived from `layers` by [`Snapshot::derive`]: what the data path reads.
    faults: Vec<Option<Arc<ActiveFaults>>>,
    /// Derived from `partitions`: until when each direction is cut.
    blocked_until: Vec<Option<Instant>>,
}

impl Snapshot {
    fn empty(n: usize) -> Self {
        Snapshot {
            layers: vec![BTreeMap::new(); n],
            partitions: BTreeMap::new(),
            faults: vec![None; n],
            blocked_until: vec![None; n],
        }
    }

    /// Recomputes the data path's view after an edit. A composed entry lives as
    /// long as its longest layer, so a late reaper never stops the others
    /// early; the reaper composes again when each layer's lease ends.
    fn derive(&mut self, pairs: &[Cut]) {
        for (dir, layer) in self.layers.iter().enumerate() {
            self.faults[dir] = match layer.len() {
                0 => None,
                1 => layer.values().next().cloned(),
                _ => {
                    let spec = layer
                        .values()
                        .fold(FaultSpec::default(), |acc, f| acc.combine(&f.spec));
                    Some(Arc::new(ActiveFaults {
                        noop: spec.is_noop(),
                        spec,
                        // None (no lease) if any layer is a baseline.
                        expires: layer
                            .values()
                            .map(|f| f.expires)
                            .try_fold(None, |acc: Option<Instant>, e| {
                                e.map(|e| Some(acc.map_or(e, |a| a.max(e))))
                            })
                            .flatten(),
                    }))
                }
            };
        }
        for (dir, pair) in pairs.iter().enumerate() {
            self.blocked_until[dir] = self
                .partitions
                .values()
                .filter(|p| p.cuts.contains(pair))
                .map(|p| p.expires)
                .max();
        }
    }

    /// Is direction `dir` cut by a live partition?
    pub(crate) fn blocked(&self, dir: usize, now: Instant) -> bool {
        self.blocked_until
            .get(dir)
            .copied()
            .flatten()
            .is_some_and(|e| now < e)
    }

    /// Live, non-empty faults of direction `dir`.
    pub(crate) fn faults(&self, dir: usize, now: Instant) -> Option<&FaultSpec> {
        match self.faults.get(dir) {
            Some(Some(f)) if !f.noop && f.expires.is_none_or(|e| now < e) => Some(&f.spec),
            _ => None,
        }
    }
}

/// A link as bound: `listen` is the real address (port 0 resolved).
#[derive(Debug, Clone)]
pub(crate) struct BoundLink {
    pub link: Link,
    pub fwd: usize,
    pub rev: usize,
}

/// Everything the pipes, the reaper and the API share.
pub(crate) struct Core {
    pub dirs: Directions,
    pub nodes: Vec<String>,
    pub links: Vec<BoundLink>,
    pub metrics: ProxyMetrics,
    pub dir_metrics: Vec<DirMetrics>,
    pub dir_state: Vec<Mutex<DirState>>,
    pub default_lease: Duration,
    snapshot: RwLock<Arc<Snapshot>>,
    generation: AtomicU64,
    changed: Notify,
}

/// FNV-1a over the run seed and the direction, so each direction has its own
/// reproducible stream whatever the link order.
fn dir_seed(seed: u64, from: &str, to: &str) -> u64 {
    faultline_node::hash::fnv1a_from(
        faultline_node::hash::FNV_OFFSET,
        seed.to_le_bytes()
            .into_iter()
            .chain(from.bytes())
            .chain([0])
            .chain(to.bytes()),
    )
}

fn check_lease(lease: Duration) -> Result<Duration, ProxyError> {
    if lease.is_zero() || lease > MAX_LEASE {
        Err(ProxyError::InvalidLease(format!(
            "lease must be between 1 ms and {} ms, got {} ms",
            MAX_LEASE.as_millis(),
            lease.as_millis()
        )))
    } else {
        Ok(lease)
    }
}

impl Core {
    pub(crate) fn new(
        seed: u64,
        nodes: Vec<String>,
        dirs: Directions,
        links: Vec<BoundLink>,
        default_lease: Duration,
    ) -> Result<Self, ProxyError> {
        let metrics = ProxyMetrics::new()?;
        let dir_metrics: Vec<DirMetrics> =
            dirs.pairs.iter().map(|(a, b)| metrics.dir(a, b)).collect();
        let dir_state = dirs
            .pairs
            .iter()
            .map(|(a, b)| Mutex::new(DirState::new(dir_seed(seed, a, b))))
            .collect();
        let mut snap = Snapshot::empty(dirs.pairs.len());
        for bl in &links {
            if let Some(spec) = &bl.link.faults {
                snap.layers[bl.fwd].insert(
                    BASELINE.to_string(),
                    Arc::new(ActiveFaults {
                        noop: spec.is_noop(),
                        spec: spec.clone(),
                        expires: None,
                    }),
                );
            }
        }
        snap.derive(&dirs.pairs);
        let core = Core {
            dirs,
            nodes,
            links,
            metrics,
            dir_metrics,
            dir_state,
            default_lease,
            snapshot: RwLock::new(Arc::new(snap.clone())),
            generation: AtomicU64::new(0),
            changed: Notify::new(),
        };
        core.publish_gauges(&snap);
        Ok(core)
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn load(&self) -> Arc<Snapshot> {
        // A poisoned lock only means a writer panicked between swaps; the Arc
        // inside is still a complete snapshot.
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Clone, edit, swap. `edit` returns Err to leave the table untouched.
    fn update<R>(
        &self,
        edit: impl FnOnce(&mut Snapshot) -> Result<R, ProxyError>,
    ) -> Result<R, ProxyError> {
        let mut guard = self.snapshot.write().unwrap_or_else(|e| e.into_inner());
        let mut next = Snapshot::clone(&guard);
        let out = edit(&mut next)?;
        next.derive(&self.dirs.pairs);
        self.publish_gauges(&next);
        *guard = Arc::new(next);
        self.generation.fetch_add(1, Ordering::AcqRel);
        drop(guard);
        self.changed.notify_one();
        Ok(out)
    }

    fn publish_gauges(&self, snap: &Snapshot) {
        for (i, m) in self.dir_metrics.iter().enumerate() {
            let spec = snap.faults.get(i).and_then(|f| f.as_ref()).map(|f| &f.spec);
            let blocked = snap.blocked_until.get(i).copied().flatten().is_some();
            m.set_configured(spec, blocked);
        }
    }

    fn link_dir(&self, from: &str, to: &str) -> Result<usize, ProxyError> {
        match self.dirs.get(from, to) {
            Some(d) if self.dirs.has_link[d] => Ok(d),
            _ => Err(ProxyError::UnknownLink {
                from: from.to_string(),
                to: to.to_string(),
            }),
        }
    }

    pub(crate) fn set_faults(
        &self,
        name: &str,
        from: &str,
        to: &str,
        spec: FaultSpec,
        lease: Option<Duration>,
    ) -> Result<(), ProxyError> {
        let dir = self.link_dir(from, to)?;
        spec.validate()?;
        let lease = check_lease(lease.unwrap_or(self.default_lease))?;
        let entry = Arc::new(ActiveFaults {
            noop: spec.is_noop(),
            spec,
            expires: Some(Instant::now() + lease),
        });
        self.update(|s| {
            s.layers[dir].insert(name.to_string(), entry);
            Ok(())
        })
    }

    /// Removes the faults of `from -> to` set under `name`, or all of them.
    pub(crate) fn clear_faults(
        &self,
        name: Option<&str>,
        from: &str,
        to: &str,
    ) -> Result<bool, ProxyError> {
        let dir = self.link_dir(from, to)?;
        self.update(|s| {
            let layer = &mut s.layers[dir];
            Ok(match name {
                Some(n) => layer.remove(n).is_some(),
                None => {
                    let had = !layer.is_empty();
                    layer.clear();
                    had
                }
            })
        })
    }

    pub(crate) fn partition(
        &self,
        name: &str,
        shape: PartitionShape,
        lease: Option<Duration>,
    ) -> Result<Vec<DirectedPair>, ProxyError> {
        let cuts = expand(&shape, &self.nodes)?;
        let lease = check_lease(lease.unwrap_or(self.default_lease))?;
        let out = cuts
            .iter()
            .map(|(a, b)| DirectedPair {
                from: a.clone(),
                to: b.clone(),
            })
            .collect();
        let part = Arc::new(ActivePartition {
            shape,
            cuts,
            expires: Instant::now() + lease,
        });
        self.update(|s| {
            s.partitions.insert(name.to_string(), part);
            Ok(())
        })?;
        Ok(out)
    }

    /// Removes the partition set under `name`, or all of them; true if any was.
    pub(crate) fn heal_partition(&self, name: Option<&str>) -> bool {
        self.update(|s| {
            Ok(match name {
                Some(n) => s.partitions.remove(n).is_some(),
                None => {
                    let had = !s.partitions.is_empty();
                    s.partitions.clear();
                    had
                }
            })
        })
        .unwrap_or(false)
    }

    pub(crate) fn heal(&self) {
        let _ = self.update(|s| {
            s.layers.iter_mut().for_each(BTreeMap::clear);
            s.partitions.clear();
            Ok(())
        });
    }

    pub(crate) fn renew(&self, lease: Option<Duration>) -> Result<usize, ProxyError> {
        let lease = check_lease(lease.unwrap_or(self.default_lease))?;
        let now = Instant::now();
        let until = now + lease;
        self.update(|s| {
            let mut n = 0;
            for f in s.layers.iter_mut().flat_map(|l| l.values_mut()) {
                // Only live leased entries are renewed; baseline faults have no
                // lease and expired ones are already healed.
                // Renewing extends, never shortens, each fault's own lease.
                if let Some(e) = f.expires.filter(|e| now < *e) {
                    *f = Arc::new(ActiveFaults {
                        spec: f.spec.clone(),
                        noop: f.noop,
                        expires: Some(e.max(until)),
                    });
                    n += 1;
                }
            }
            for p in s.partitions.values_mut().filter(|p| now < p.expires) {
                *p = Arc::new(ActivePartition {
                    shape: p.shape.clone(),
                    cuts: p.cuts.clone(),
                    expires: p.expires.max(until),
                });
                n += 1;
            }
            Ok(n)
        })
    }

    /// Remove whatever expired by `now`; return the next expiry, if any.
    fn expire(&self, now: Instant) -> Option<Instant> {
        let snap = self.load();
        let expired = |e: Option<Instant>| e.is_some_and(|e| e <= now);
        let fault_expired = snap
            .layers
            .iter()
            .flat_map(|l| l.values())
            .any(|f| expired(f.expires));
        let part_expired = snap.partitions.values().any(|p| p.expires <= now);
        if fault_expired || part_expired {
            let _ = self.update(|s| {
                for layer in s.layers.iter_mut() {
                    layer.retain(|_, f| !expired(f.expires));
                }
                s.partitions.retain(|_, p| p.expires > now);
                Ok(())
            });
            tracing::info!("proxy: lease expired, faults healed");
        }
        let snap = self.load();
        snap.layers
            .iter()
            .flat_map(|l| l.values())
            .filter_map(|f| f.expires)
            .chain(snap.partitions.values().map(|p| p.expires))
            .min()
    }

    pub(crate) fn stats(&self) -> ProxyStats {
        let snap = self.load();
        let now = Instant::now();
        let remaining = |e: Instant| e.saturating_duration_since(now).as_millis() as u64;
        let links = self
            .links
            .iter()
            .map(|bl| {
                let live = snap.faults[bl.fwd]
                    .as_ref()
                    .filter(|f| f.expires.is_none_or(|e| now < e));
                LinkStats {
                    from: bl.link.from.clone(),
                    to: bl.link.to.clone(),
                    listen: bl.link.listen,
                    target: bl.link.target.clone(),
                    faults: live.map(|f| f.spec.clone()),
                    lease_remaining_ms: live.and_then(|f| f.expires).map(remaining),
                    partitioned: snap.blocked(bl.fwd, now),
                    counters: self.dir_metrics[bl.fwd].counters(),
                    reverse_counters: self.dir_metrics[bl.rev].counters(),
                }
            })
            .collect();
        let partitions: Vec<PartitionStatus> = snap
            .partitions
            .iter()
            .filter(|(_, p)| now < p.expires)
            .map(|(name, p)| PartitionStatus {
                name: name.clone(),
                shape: p.shape.clone(),
                blocked: p
                    .cuts
                    .iter()
                    .map(|(a, b)| DirectedPair {
                        from: a.clone(),
                        to: b.clone(),
                    })
                    .collect(),
                lease_remaining_ms: remaining(p.expires),
            })
            .collect();
        ProxyStats {
            links,
            partition: partitions.last().cloned(),
            partitions,
        }
    }

    /// Reaper: heal expired leases. Ends when `shutdown` fires or its sender is dropped.
    pub(crate) async fn reap(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        // Upper bound on one sleep so a missed notification costs at most this.
        const IDLE: Duration = Duration::from_secs(1);
        loop {
            let now = Instant::now();
            let wake = self.expire(now).map_or(now + IDLE, |t| t.min(now + IDLE));
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = self.changed.notified() => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

/// A directed pair of node ids.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DirectedPair {
    pub from: String,
    pub to: String,
}

/// What `GET /links` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyStats {
    pub links: Vec<LinkStats>,
    /// A live partition, if any (the last by name; see `partitions`).
    pub partition: Option<PartitionStatus>,
    /// Every live partition, by name.
    #[serde(default)]
    pub partitions: Vec<PartitionStatus>,
}

/// One link: addresses, live faults of its forward direction, counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkStats {
    pub from: String,
    pub to: String,
    pub listen: SocketAddr,
    /// As configured: `host:port`.
    pub target: String,
    /// Live faults of `from -> to` (None: none).
    pub faults: Option<FaultSpec>,
    /// Time left on the lease (None: no lease, i.e. configured baseline or no faults).
    pub lease_remaining_ms: Option<u64>,
    /// A live partition cuts `from -> to`.
    pub partitioned: bool,
    /// Direction `from -> to`, over every socket that carries it.
    pub counters: DirCounters,
    /// Direction `to -> from`, over every socket that carries it.
    pub reverse_counters: DirCounters,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionStatus {
    /// The name it was set under (empty for an unnamed API call).
    #[serde(default)]
    pub name: String,
    pub shape: PartitionShape,
    pub blocked: Vec<DirectedPair>,
    pub lease_remaining_ms: u64,
}

/// In-process control of a running proxy; cheap to clone. The HTTP API is a
/// thin layer over the same calls.
#[derive(Clone)]
pub struct ProxyController {
    pub(crate) core: Arc<Core>,
}

impl ProxyController {
    /// Set the faults of direction `from -> to` (a link in the set) for
    /// `lease` (None: the configured default lease), under the unnamed slot:
    /// replaces earlier unnamed faults of that direction and restarts their
    /// lease. Named faults ([`Self::set_named_faults`]) stay and compose.
    pub fn set_faults(
        &self,
        from: &str,
        to: &str,
        faults: FaultSpec,
        lease: Option<Duration>,
    ) -> Result<(), ProxyError> {
        self.core.set_faults(UNNAMED, from, to, faults, lease)
    }

    /// Set faults of `from -> to` under `name`; they compose with faults set
    /// under other names and heal on their own lease.
    pub fn set_named_faults(
        &self,
        name: &str,
        from: &str,
        to: &str,
        faults: FaultSpec,
        lease: Option<Duration>,
    ) -> Result<(), ProxyError> {
        self.core.set_faults(name, from, to, faults, lease)
    }

    /// Remove every fault of `from -> to`; Ok(false) if there were none.
    pub fn clear_faults(&self, from: &str, to: &str) -> Result<bool, ProxyError> {
        self.core.clear_faults(None, from, to)
    }

    /// Remove the faults of `from -> to` set under `name`; the others stay.
    pub fn clear_named_faults(&self, name: &str, from: &str, to: &str) -> Result<bool, ProxyError> {
        self.core.clear_faults(Some(name), from, to)
    }

    /// Replace the unnamed partition with `shape` for `lease`; returns the
    /// blocked directed pairs. Named partitions stay.
    pub fn partition(
        &self,
        shape: PartitionShape,
        lease: Option<Duration>,
    ) -> Result<Vec<DirectedPair>, ProxyError> {
        self.core.partition(UNNAMED, shape, lease)
    }

    /// Add a partition under `name`: a direction is cut while any partition cuts it.
    pub fn named_partition(
        &self,
        name: &str,
        shape: PartitionShape,
        lease: Option<Duration>,
    ) -> Result<Vec<DirectedPair>, ProxyError> {
        self.core.partition(name, shape, lease)
    }

    /// Remove every partition; true if there was one.
    pub fn heal_partition(&self) -> bool {
        self.core.heal_partition(None)
    }

    /// Remove the partition set under `name`; the others stay.
    pub fn heal_named_partition(&self, name: &str) -> bool {
        self.core.heal_partition(Some(name))
    }

    /// Remove every fault (configured baseline included) and the partition.
    pub fn heal(&self) {
        self.core.heal()
    }

    /// Extend every live leased fault and the partition by `lease` from now;
    /// returns how many were renewed.
    pub fn renew(&self, lease: Option<Duration>) -> Result<usize, ProxyError> {
        self.core.renew(lease)
    }

    /// Links, live faults, partition and counters.
    pub fn stats(&self) -> ProxyStats {
        self.core.stats()
    }

    /// Prometheus text of this proxy's registry.
    pub fn metrics_text(&self) -> String {
        self.core.metrics.text()
    }

    /// This proxy's registry (to merge into a controller's own /metrics).
    pub fn registry(&self) -> &prometheus::Registry {
        &self.core.metrics.registry
    }

    /// The bound listen address of link `from -> to`.
    pub fn listen_addr(&self, from: &str, to: &str) -> Option<SocketAddr> {
        self.core
            .links
            .iter()
            .find(|l| l.link.from == from && l.link.to == to)
            .map(|l| l.link.listen)
    }

    /// The links as bound (listen ports resolved).
    pub fn links(&self) -> Vec<Link> {
        self.core.links.iter().map(|l| l.link.clone()).collect()
    }

    /// Node order used by partition shapes.
    pub fn nodes(&self) -> &[String] {
        &self.core.nodes
    }
}
