//! VIP announcement over BGP through a local BIRD 2, and node drain.
//!
//! fiberlbd does not speak BGP itself: BIRD peers with the upstream routers (with BFD), and
//! fiberlbd decides which VIP host routes exist by rewriting an include file and running
//! `birdc configure` ([`bird`]). A VIP is announced while this node can serve it:
//!
//! - the data plane is attached and its heartbeat is younger than `dataplane_timeout_ms`, and
//!   it has been programmed with this store's configuration;
//! - the node is not drained (`fiberlbctl node drain`);
//! - one of the VIP's listeners has a pool with at least one backend that takes new flows
//!   (healthy, enabled, weight > 0, next hop resolved).
//!
//! Withdrawal without fiberlbd's help: the routes point at a TAP device fiberlbd holds open
//! (`liveness_interface`); the kernel deletes it when fiberlbd exits in any way, BIRD's static
//! protocol (`check link`) drops the routes, and BGP withdraws them. A dead data plane is seen by
//! its heartbeat (every 100 ms) and withdrawn within `dataplane_timeout_ms` plus one tick. A dead
//! node (power, kernel) is the upstream router's job: BFD on the BGP session (docs).
//!
//! The drain mark is a file beside the store (`<store>.drain`), so a node drained for an
//! upgrade stays drained across restarts until `fiberlbctl node resume`.

pub mod bird;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fiberlb_shared::model::{ServiceSet, Usability};
use serde::Deserialize;
use tokio::sync::{watch, Notify};

use crate::api::{DataplaneStatus, DataplaneView};
use crate::program::Desired;

pub use bird::Session;

/// `[bgp]` in controlplane.toml.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BgpConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The file fiberlbd writes; BIRD's configuration `include`s it.
    pub include_path: PathBuf,
    /// BIRD's control socket.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// The birdc command.
    #[serde(default = "default_birdc")]
    pub birdc: PathBuf,
    /// `"all"` or a list of VIP addresses.
    #[serde(default)]
    pub vips: VipSelection,
    /// Name of the static protocols in the include file (`<protocol>4`, `<protocol>6`).
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// TAP device whose life is fiberlbd's ("" for none: blackhole routes, which stay
    /// announced if fiberlbd is killed).
    #[serde(default = "default_liveness")]
    pub liveness_interface: String,
    /// Standard communities `"asn:value"` put on every VIP route.
    #[serde(default)]
    pub communities: Vec<String>,
    /// MULTI_EXIT_DISC on every VIP route (e.g. higher on a standby node).
    pub med: Option<u32>,
    /// Withdraw when the data plane's heartbeat is older than this.
    #[serde(default = "default_dp_timeout")]
    pub dataplane_timeout_ms: u64,
    /// A drained node reports `drained` when no listener packet arrived for this long.
    #[serde(default = "default_quiet")]
    pub drain_quiet_ms: u64,
}

fn yes() -> bool {
    true
}
fn default_socket() -> PathBuf {
    PathBuf::from("/run/bird/bird.ctl")
}
fn default_birdc() -> PathBuf {
    PathBuf::from("birdc")
}
fn default_protocol() -> String {
    "fiberlb".into()
}
fn default_liveness() -> String {
    "fiberlb0".into()
}
fn default_dp_timeout() -> u64 {
    500
}
fn default_quiet() -> u64 {
    5000
}

/// Which VIPs fiberlbd may announce.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum VipSelection {
    #[default]
    All,
    Only(BTreeSet<IpAddr>),
}

impl<'de> Deserialize<'de> for VipSelection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            List(Vec<IpAddr>),
        }
        match Raw::deserialize(d)? {
            Raw::Word(w) if w == "all" => Ok(VipSelection::All),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "vips = {w:?}: write \"all\" or a list of addresses"
            ))),
            Raw::List(l) => Ok(VipSelection::Only(l.into_iter().collect())),
        }
    }
}

impl VipSelection {
    fn admits(&self, vip: &IpAddr) -> bool {
        match self {
            VipSelection::All => true,
            VipSelection::Only(set) => set.contains(vip),
        }
    }
}

/// `"65000:100"` → (65000, 100).
pub fn parse_community(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once(':')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

impl BgpConfig {
    /// Checks what serde cannot.
    ///
    /// # Errors
    /// `field: reason`.
    pub fn validate(&self) -> Result<(), String> {
        let ident = |s: &str| {
            !s.is_empty()
                && s.len() <= 60
                && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if !ident(&self.protocol) {
            return Err(format!(
                "protocol {:?}: a BIRD protocol name (letters, digits, _; starts with a letter)",
                self.protocol
            ));
        }
        let l = &self.liveness_interface;
        if l.len() > 15 || l.chars().any(|c| c.is_whitespace() || c == '"' || c == '/') {
            return Err(format!(
                "liveness_interface {l:?}: an interface name of at most 15 characters"
            ));
        }
        for (i, c) in self.communities.iter().enumerate() {
            if parse_community(c).is_none() {
                return Err(format!(
                    "communities[{i}] {c:?}: write \"asn:value\" with both parts 0-65535"
                ));
            }
        }
        if self.include_path.as_os_str().is_empty() || self.include_path.file_name().is_none() {
            return Err("include_path: the file BIRD includes, e.g. /etc/bird/fiberlb.conf".into());
        }
        if self.dataplane_timeout_ms < 150 {
            return Err(format!(
                "dataplane_timeout_ms = {}: at least 150 (the data plane beats every 100 ms)",
                self.dataplane_timeout_ms
            ));
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn for_tests() -> BgpConfig {
        BgpConfig {
            enabled: true,
            include_path: PathBuf::from("/tmp/fiberlb.conf"),
            socket: default_socket(),
            birdc: default_birdc(),
            vips: VipSelection::All,
            protocol: default_protocol(),
            liveness_interface: default_liveness(),
            communities: Vec::new(),
            med: None,
            dataplane_timeout_ms: default_dp_timeout(),
            drain_quiet_ms: default_quiet(),
        }
    }
}

/// Whether the data plane can forward, as the announcer judges it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataplaneState {
    Alive,
    /// Why not (not attached, heartbeat stale, not yet programmed).
    Down(String),
}

impl DataplaneState {
    /// From the programmer's view of the data plane.
    pub fn judge(s: Option<&DataplaneStatus>, timeout_ms: u64) -> DataplaneState {
        match s {
            None => DataplaneState::Down("data plane not attached".into()),
            Some(s) if s.heartbeat_age_ms > timeout_ms => DataplaneState::Down(format!(
                "data plane heartbeat {} ms old (limit {timeout_ms} ms)",
                if s.heartbeat_age_ms == u64::MAX {
                    "never beat; ∞".to_string()
                } else {
                    s.heartbeat_age_ms.to_string()
                }
            )),
            Some(s) if s.synced_store_generation.is_none() => {
                DataplaneState::Down("data plane not yet programmed".into())
            }
            Some(_) => DataplaneState::Alive,
        }
    }
}

/// Which VIPs to announce and why each other one is not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub announce: BTreeSet<IpAddr>,
    pub withheld: BTreeMap<IpAddr, String>,
}

/// The announcement decision (pure: unit-tested).
pub fn plan(
    services: &ServiceSet,
    selection: &VipSelection,
    dataplane: &DataplaneState,
    draining: bool,
    unresolved: &[IpAddr],
) -> Plan {
    // Pools with a backend that takes new flows: one pass over the backends.
    let unresolved: BTreeSet<&IpAddr> = unresolved.iter().collect();
    let live_pools: BTreeSet<_> = services
        .backends
        .iter()
        .filter(|b| b.usability() == Usability::Active && !unresolved.contains(&b.address))
        .map(|b| b.pool)
        .collect();
    let mut vips: BTreeMap<IpAddr, bool> = BTreeMap::new();
    for l in &services.listeners {
        if selection.admits(&l.vip) {
            *vips.entry(l.vip).or_default() |= live_pools.contains(&l.pool);
        }
    }
    if let VipSelection::Only(list) = selection {
        for v in list {
            vips.entry(*v).or_default();
        }
    }
    let mut p = Plan::default();
    let listed: BTreeSet<IpAddr> = services.listeners.iter().map(|l| l.vip).collect();
    for (vip, usable) in vips {
        let why = if !listed.contains(&vip) {
            Some("no listener on this VIP".to_string())
        } else if let DataplaneState::Down(why) = dataplane {
            Some(why.clone())
        } else if draining {
            Some("node drained (fiberlbctl node resume)".to_string())
        } else if !usable {
            Some("no backend takes new flows (health, weight, admin state or next hop)".into())
        } else {
            None
        };
        match why {
            Some(w) => {
                p.withheld.insert(vip, w);
            }
            None => {
                p.announce.insert(vip);
            }
        }
    }
    p
}

/// Drain progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DrainState {
    #[default]
    Serving,
    /// Withdrawn; listener traffic still arrives.
    Draining,
    /// Withdrawn and no listener packet for `drain_quiet_ms`: safe to stop or upgrade.
    Drained,
}

impl DrainState {
    pub fn as_str(self) -> &'static str {
        match self {
            DrainState::Serving => "serving",
            DrainState::Draining => "draining",
            DrainState::Drained => "drained",
        }
    }
}

/// What `fiberlbctl node status` and the metrics show.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStatus {
    pub bgp_enabled: bool,
    pub include_path: String,
    pub drain: DrainState,
    /// Unix ms of `node drain` (0: not drained).
    pub drain_since_unix_ms: u64,
    /// Listener packets per second over the last second (data plane counters).
    pub listener_pps: u64,
    pub dataplane_alive: bool,
    /// What BIRD was last told to announce.
    pub announced: BTreeSet<IpAddr>,
    pub withheld: BTreeMap<IpAddr, String>,
    pub sessions: Vec<Session>,
    /// Unix ms of the last change of the announced set that BIRD took.
    pub last_change_unix_ms: u64,
    /// The last failure talking to BIRD (empty: the last call worked).
    pub last_error: String,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The node: drain mark, status, and (with `[bgp]`) the announcer.
pub struct Node {
    cfg: Option<BgpConfig>,
    drain_file: PathBuf,
    /// Unix ms of the drain, 0 when serving.
    drained_at: Mutex<u64>,
    changed: Notify,
    status: watch::Sender<NodeStatus>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("drain_file", &self.drain_file)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// The node of a fiberlbd whose store is `store_path`; reads the drain mark beside it.
    pub fn new(cfg: Option<BgpConfig>, store_path: &Path) -> Node {
        let cfg = cfg.filter(|c| c.enabled);
        let mut name = store_path.as_os_str().to_owned();
        name.push(".drain");
        let drain_file = PathBuf::from(name);
        let drained_at = std::fs::read_to_string(&drain_file)
            .ok()
            .map(|t| t.trim().parse::<u64>().unwrap_or(1).max(1))
            .unwrap_or(0);
        let status = NodeStatus {
            bgp_enabled: cfg.is_some(),
            include_path: cfg
                .as_ref()
                .map(|c| c.include_path.display().to_string())
                .unwrap_or_default(),
            drain: if drained_at > 0 {
                DrainState::Draining
            } else {
                DrainState::Serving
            },
            drain_since_unix_ms: drained_at,
            ..NodeStatus::default()
        };
        Node {
            cfg,
            drain_file,
            drained_at: Mutex::new(drained_at),
            changed: Notify::new(),
            status: watch::channel(status).0,
        }
    }

    /// The current status.
    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// Follows the status (metrics).
    pub fn subscribe(&self) -> watch::Receiver<NodeStatus> {
        self.status.subscribe()
    }

    fn drained_at(&self) -> u64 {
        *self
            .drained_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `node drain` (`true`) or `node resume` (`false`); persisted before it takes effect.
    ///
    /// # Errors
    /// BGP not enabled, or the drain mark could not be written.
    pub fn set_drain(&self, drain: bool) -> Result<(), String> {
        if self.cfg.is_none() {
            return Err(
                "BGP announcement is not enabled on this node ([bgp] in controlplane.toml): \
                 there is nothing to withdraw"
                    .into(),
            );
        }
        let mut at = self
            .drained_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if drain && *at == 0 {
            let now = unix_ms();
            bird::write_atomic(&self.drain_file, &format!("{now}\n"))?;
            *at = now;
        } else if !drain && *at != 0 {
            match std::fs::remove_file(&self.drain_file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot remove {}: {e}", self.drain_file.display())),
            }
            *at = 0;
        }
        drop(at);
        self.changed.notify_one();
        Ok(())
    }

    /// Waits until the announcer has acted on the current drain mark (or `timeout`).
    pub async fn settled(&self, timeout: Duration) -> NodeStatus {
        let want = self.drained_at();
        let mut rx = self.status.subscribe();
        let _ = tokio::time::timeout(
            timeout,
            rx.wait_for(|s| {
                s.drain_since_unix_ms == want
                    && (want == 0 || s.announced.is_empty())
                    && s.last_error.is_empty()
            }),
        )
        .await;
        self.status()
    }

    /// The announcer: runs until `stop`, then withdraws everything.
    pub async fn run(
        self: Arc<Self>,
        mut desired: watch::Receiver<Arc<Desired>>,
        dataplane: Arc<dyn DataplaneView>,
        mut stop: watch::Receiver<bool>,
    ) {
        let Some(cfg) = self.cfg.clone() else {
            // No BGP: only the drain mark, which means nothing without announcements.
            return;
        };
        // Withdraw whatever a previous run left before the liveness device exists again.
        let mut written: Option<BTreeSet<IpAddr>> = None;
        let mut last_error = self.apply(&cfg, &BTreeSet::new()).await.err();
        if last_error.is_none() {
            written = Some(BTreeSet::new());
        }
        let _tap = match open_liveness(&cfg) {
            Ok(t) => t,
            Err(e) => {
                log::error!("bgp: {e}; VIPs stay withdrawn");
                self.status.send_modify(|s| s.last_error = e);
                let _ = stop.wait_for(|s| *s).await;
                return;
            }
        };
        let sessions = Arc::new(Mutex::new((Vec::new(), String::new())));
        let poller = tokio::spawn(poll_sessions(cfg.clone(), sessions.clone(), stop.clone()));
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retry_at = Instant::now();
        let mut last_change = 0u64;
        let mut traffic = TrafficMeter::default();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.changed.notified() => {}
                r = desired.changed() => if r.is_err() { break; },
                _ = stop.wait_for(|s| *s) => break,
            }
            let drained_at = self.drained_at();
            let dp = dataplane.status();
            let dp_state = DataplaneState::judge(dp.as_ref(), cfg.dataplane_timeout_ms);
            let unresolved = dp
                .as_ref()
                .map(|s| s.unresolved_backends.clone())
                .unwrap_or_default();
            let d = desired.borrow().clone();
            let p = plan(
                &d.services,
                &cfg.vips,
                &dp_state,
                drained_at > 0,
                &unresolved,
            );
            if written.as_ref() != Some(&p.announce) && Instant::now() >= retry_at {
                match self.apply(&cfg, &p.announce).await {
                    Ok(()) => {
                        log::info!(
                            "bgp: announcing {} VIP(s){}",
                            p.announce.len(),
                            if p.withheld.is_empty() {
                                String::new()
                            } else {
                                format!(
                                    "; withheld: {}",
                                    p.withheld
                                        .iter()
                                        .map(|(v, w)| format!("{v} ({w})"))
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                )
                            }
                        );
                        written = Some(p.announce.clone());
                        last_change = unix_ms();
                        last_error = None;
                    }
                    Err(e) => {
                        if last_error.as_deref() != Some(e.as_str()) {
                            log::error!("bgp: {e}");
                        }
                        last_error = Some(e);
                        retry_at = Instant::now() + Duration::from_secs(1);
                    }
                }
            }
            let pps = traffic.sample(&*dataplane);
            let quiet = traffic.quiet_for() >= Duration::from_millis(cfg.drain_quiet_ms);
            let (sess, sess_err) = sessions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let status = NodeStatus {
                bgp_enabled: true,
                include_path: cfg.include_path.display().to_string(),
                drain: match (
                    drained_at > 0,
                    written.as_ref().is_some_and(BTreeSet::is_empty) && quiet,
                ) {
                    (false, _) => DrainState::Serving,
                    (true, false) => DrainState::Draining,
                    (true, true) => DrainState::Drained,
                },
                drain_since_unix_ms: drained_at,
                listener_pps: pps,
                dataplane_alive: dp_state == DataplaneState::Alive,
                announced: written.clone().unwrap_or_default(),
                withheld: p.withheld,
                sessions: sess,
                last_change_unix_ms: last_change,
                last_error: last_error.clone().unwrap_or(sess_err),
            };
            self.status.send_if_modified(|s| {
                let changed = *s != status;
                if changed {
                    *s = status;
                }
                changed
            });
        }
        // SIGTERM: withdraw first (the TAP device closing would do it too, a moment later).
        match self.apply(&cfg, &BTreeSet::new()).await {
            Ok(()) => log::info!("bgp: all VIPs withdrawn"),
            Err(e) => log::error!("bgp: withdrawing on exit: {e}"),
        }
        poller.abort();
    }

    async fn apply(&self, cfg: &BgpConfig, vips: &BTreeSet<IpAddr>) -> Result<(), String> {
        let list: Vec<IpAddr> = vips.iter().copied().collect();
        let text = bird::render(cfg, &list);
        let path = cfg.include_path.clone();
        tokio::task::spawn_blocking(move || bird::write_atomic(&path, &text))
            .await
            .map_err(|e| format!("writing the include file: {e}"))??;
        bird::configure(cfg).await
    }
}

/// Listener packets per second and how long none arrived.
#[derive(Debug, Default)]
struct TrafficMeter {
    last: Option<(Instant, u64)>,
    pps: u64,
    last_packet: Option<Instant>,
}

impl TrafficMeter {
    fn sample(&mut self, dp: &dyn DataplaneView) -> u64 {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|(t, _)| now.duration_since(t) < Duration::from_millis(1000))
        {
            return self.pps;
        }
        let total: u64 = dp
            .counters()
            .map(|c| c.listeners.values().map(|l| l.packets).sum())
            .unwrap_or(0);
        if let Some((t, before)) = self.last {
            let d = total.saturating_sub(before);
            let secs = now.duration_since(t).as_secs_f64().max(1e-3);
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            {
                self.pps = (d as f64 / secs) as u64;
            }
            if d > 0 {
                self.last_packet = Some(now);
            }
        } else {
            self.last_packet = Some(now);
        }
        self.last = Some((now, total));
        self.pps
    }

    fn quiet_for(&self) -> Duration {
        self.last_packet.map_or(Duration::ZERO, |t| t.elapsed())
    }
}

/// The TAP device the VIP routes point at; deleted by the kernel when the fd closes.
fn open_liveness(cfg: &BgpConfig) -> Result<Option<tun_rs::SyncDevice>, String> {
    if cfg.liveness_interface.is_empty() {
        log::warn!(
            "bgp: no liveness_interface: if fiberlbd is killed its VIPs stay announced \
             until BIRD is reconfigured"
        );
        return Ok(None);
    }
    let dev = tun_rs::DeviceBuilder::new()
        .name(&cfg.liveness_interface)
        .layer(tun_rs::Layer::L2)
        .build_sync()
        .map_err(|e| {
            format!(
                "cannot create the liveness TAP device {:?} (/dev/net/tun, CAP_NET_ADMIN): {e}",
                cfg.liveness_interface
            )
        })?;
    // No IPv6 link-local chatter queued on a device nobody reads (best effort).
    let _ = std::fs::write(
        format!(
            "/proc/sys/net/ipv6/conf/{}/disable_ipv6",
            cfg.liveness_interface
        ),
        "1",
    );
    Ok(Some(dev))
}

/// Every second: the BGP protocols of the local BIRD (or why they could not be read).
async fn poll_sessions(
    cfg: BgpConfig,
    out: Arc<Mutex<(Vec<Session>, String)>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let r = bird::birdc(&cfg, &["show", "protocols"]).await;
        let mut o = out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *o = match r {
            Ok(text) => (bird::parse_protocols(&text), String::new()),
            Err(e) => (Vec::new(), e),
        };
    }
}

#[cfg(test)]
mod tests;
