//! Active health checks of backends: TCP connect, HTTP(S) GET, UDP request/reply.
//!
//! Every target runs in its own tokio task on a jittered schedule; a semaphore bounds how many
//! probes are in flight at once across all targets. Results go out through a `watch` channel of
//! the whole [`HealthMap`], which is notified when a backend's `up` flips or a target is added
//! or removed (not on every probe, so a subscriber such as the programmer wakes only for
//! changes that matter to forwarding).
//!
//! **Initial state: up.** A newly added target is assumed up (HAProxy's choice), and needs
//! `fall` consecutive failures to go down. Starting down (Katran/IPVS style: wait for `rise`
//! successes) would pull every backend out of its Maglev table for `rise × interval` each time
//! fiberlbd restarts, dropping traffic that the data plane was forwarding fine. A caller that
//! knows better (a persisted state) passes it with [`HealthChecker::set_targets_with_state`].
//!
//! **Reconfiguration** ([`HealthChecker::set_targets`]) reconciles: an unchanged target keeps
//! its task, schedule and counters; a changed one restarts its task but keeps its `up` state;
//! a removed one stops and leaves the map.

mod checks;
mod state;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

pub use fiberlb_shared::model::BackendId;
pub use state::RiseFall;

/// What to probe and how to judge the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckKind {
    /// Healthy when a TCP connection is established within the timeout.
    Tcp,
    /// Plain-text HTTP/1.1 `GET`.
    Http(HttpCheck),
    /// HTTP/1.1 `GET` over TLS. The server certificate is **not verified** by default (health
    /// checks go to backends by address, which rarely carry a certificate for it; the check is
    /// about liveness, not identity). Pass a verifying `rustls::ClientConfig` in
    /// [`CheckerOptions::tls_client_config`] to change that.
    Https(HttpCheck),
    /// A UDP datagram sent, a reply expected.
    Udp(UdpCheck),
}

/// An HTTP(S) check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCheck {
    /// Path (and query) requested, starting with `/`.
    pub path: String,
    /// `Host` header (and TLS SNI when a DNS name); the backend's address when `None`.
    pub host: Option<String>,
    /// Accepted status codes, inclusive.
    pub expected_status: (u16, u16),
}

impl Default for HttpCheck {
    fn default() -> Self {
        HttpCheck {
            path: "/".into(),
            host: None,
            expected_status: (200, 399),
        }
    }
}

/// A UDP check.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UdpCheck {
    /// The datagram sent.
    pub payload: Vec<u8>,
    /// The reply must start with these bytes (an exact byte prefix, no patterns); empty: any
    /// reply will do.
    pub expected_reply: Vec<u8>,
}

/// One backend to probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub backend: BackendId,
    pub address: IpAddr,
    pub port: u16,
    pub kind: CheckKind,
    /// Time between the starts of two probes (a little less with jitter, never more unless a
    /// probe itself takes longer).
    pub interval: Duration,
    /// A probe that has not succeeded by then failed.
    pub timeout: Duration,
    /// Consecutive successes that bring a down backend up (at least 1).
    pub rise: u32,
    /// Consecutive failures that take an up backend down (at least 1).
    pub fall: u32,
}

/// Current health of one backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    pub up: bool,
    /// When `up` last changed (or the target was added).
    pub since: SystemTime,
    /// The last failure's description; cleared by the next success.
    pub last_error: Option<String>,
}

/// Health of every checked backend.
pub type HealthMap = HashMap<BackendId, Health>;

/// `backend → up`, the shape `model::compile` takes.
pub fn up_map(map: &HealthMap) -> HashMap<BackendId, bool> {
    map.iter().map(|(id, h)| (*id, h.up)).collect()
}

/// Settings shared by all targets.
#[derive(Clone, Debug)]
pub struct CheckerOptions {
    /// Most probes in flight at once.
    pub max_concurrency: usize,
    /// Each interval is shortened by a random fraction in `[0, jitter)` so that probes of many
    /// targets spread out; the first probe starts at a random point of the first interval.
    /// Clamped to `0.0..=0.5`.
    pub jitter: f64,
    /// TLS client configuration for HTTPS checks; `None`: accept any server certificate.
    pub tls_client_config: Option<Arc<rustls::ClientConfig>>,
}

impl Default for CheckerOptions {
    fn default() -> Self {
        CheckerOptions {
            max_concurrency: 64,
            jitter: 0.1,
            tls_client_config: None,
        }
    }
}

struct Running {
    target: Target,
    task: JoinHandle<()>,
}

struct Shared {
    map: watch::Sender<Arc<HealthMap>>,
    permits: Arc<Semaphore>,
    tls: Result<Arc<rustls::ClientConfig>, String>,
    jitter: f64,
}

/// The health checker. Dropping it stops every probe.
pub struct HealthChecker {
    shared: Arc<Shared>,
    running: Mutex<HashMap<BackendId, Running>>,
}

impl std::fmt::Debug for HealthChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.running.lock().map(|r| r.len()).unwrap_or(0);
        f.debug_struct("HealthChecker")
            .field("targets", &n)
            .finish_non_exhaustive()
    }
}

impl HealthChecker {
    /// A checker with no targets. Must be called inside a tokio runtime when targets are added.
    pub fn new(opts: CheckerOptions) -> Self {
        let tls = match &opts.tls_client_config {
            Some(c) => Ok(c.clone()),
            None => checks::insecure_client_config(),
        };
        let (map, _) = watch::channel(Arc::new(HealthMap::new()));
        HealthChecker {
            shared: Arc::new(Shared {
                map,
                permits: Arc::new(Semaphore::new(opts.max_concurrency.max(1))),
                tls,
                jitter: opts.jitter.clamp(0.0, 0.5),
            }),
            running: Mutex::new(HashMap::new()),
        }
    }

    /// A receiver of the health map, notified on every `up` change and target addition or
    /// removal.
    pub fn subscribe(&self) -> watch::Receiver<Arc<HealthMap>> {
        self.shared.map.subscribe()
    }

    /// The health map now.
    pub fn snapshot(&self) -> Arc<HealthMap> {
        self.shared.map.borrow().clone()
    }

    /// Replaces the set of targets (one per backend; a later duplicate wins). New targets start
    /// up.
    pub fn set_targets(&self, targets: Vec<Target>) {
        self.set_targets_with_state(targets, &HashMap::new());
    }

    /// As [`set_targets`](Self::set_targets), with the initial `up` state of new targets taken
    /// from `initial` when present there (e.g. a persisted state).
    pub fn set_targets_with_state(&self, targets: Vec<Target>, initial: &HashMap<BackendId, bool>) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let wanted: HashMap<BackendId, Target> =
            targets.into_iter().map(|t| (t.backend, t)).collect();
        let mut removed = Vec::new();
        running.retain(|id, r| {
            let keep = wanted.get(id) == Some(&r.target);
            if !keep {
                r.task.abort();
                if !wanted.contains_key(id) {
                    removed.push(*id);
                }
            }
            keep
        });
        let mut added = Vec::new();
        for (id, target) in wanted {
            if running.contains_key(&id) {
                continue;
            }
            let task = tokio::spawn(probe_loop(self.shared.clone(), target.clone()));
            running.insert(id, Running { target, task });
            added.push(id);
        }
        self.shared.map.send_if_modified(|map| {
            if removed.is_empty() && added.iter().all(|id| map.contains_key(id)) {
                return false;
            }
            let m = Arc::make_mut(map);
            for id in &removed {
                m.remove(id);
            }
            for id in &added {
                m.entry(*id).or_insert_with(|| Health {
                    up: initial.get(id).copied().unwrap_or(true),
                    since: SystemTime::now(),
                    last_error: None,
                });
            }
            true
        });
    }

    /// The targets being checked.
    pub fn targets(&self) -> Vec<Target> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.values().map(|r| r.target.clone()).collect()
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        let running = self.running.get_mut().unwrap_or_else(|e| e.into_inner());
        for r in running.values() {
            r.task.abort();
        }
    }
}

/// A small PRNG for jitter (splitmix64): no dependency, no need for quality.
struct Jitter(u64);

impl Jitter {
    fn new(seed: u64) -> Self {
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Jitter(t ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// Uniform in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

async fn probe_loop(shared: Arc<Shared>, target: Target) {
    let mut rng = Jitter::new(u64::from(target.backend.0));
    let initial_up = shared
        .map
        .borrow()
        .get(&target.backend)
        .is_none_or(|h| h.up);
    let mut counter = RiseFall::new(initial_up, target.rise, target.fall);
    // Spread first probes over the first interval (but start soon: at most a tenth of it, so a
    // newly added backend is judged quickly).
    let first = target.interval.mul_f64(rng.next_f64() * shared.jitter);
    let mut next = tokio::time::Instant::now() + first;
    loop {
        tokio::time::sleep_until(next).await;
        let started = Instant::now();
        let result = {
            let Ok(_permit) = shared.permits.acquire().await else {
                return;
            };
            checks::probe(&target, &shared.tls).await
        };
        let ok = result.is_ok();
        let flipped = counter.record(ok);
        let backend = target.backend;
        shared.map.send_if_modified(|map| {
            let error = result.err();
            // Touch the map only when something changed: `make_mut` copies it while a
            // subscriber holds the previous version.
            match map.get(&backend) {
                Some(h) if flipped.is_none() && h.last_error == error => return false,
                None => return false,
                Some(_) => {}
            }
            let m = Arc::make_mut(map);
            let Some(h) = m.get_mut(&backend) else {
                return false;
            };
            h.last_error = error;
            if let Some(up) = flipped {
                h.up = up;
                h.since = SystemTime::now();
                match &h.last_error {
                    Some(e) => log::warn!(
                        "backend {} {}:{} is down: {e}",
                        backend.0,
                        target.address,
                        target.port
                    ),
                    None => log::info!(
                        "backend {} {}:{} is up",
                        backend.0,
                        target.address,
                        target.port
                    ),
                }
                true
            } else {
                false
            }
        });
        let period = target
            .interval
            .mul_f64(1.0 - rng.next_f64() * shared.jitter);
        let after = tokio::time::Instant::from_std(started + period);
        // A probe that took longer than the period starts the next one right away.
        next = after.max(tokio::time::Instant::now());
    }
}

impl crate::api::HealthSource for HealthChecker {
    fn health(&self) -> HashMap<BackendId, bool> {
        up_map(&self.snapshot())
    }
}
