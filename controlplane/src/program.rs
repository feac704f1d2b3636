//! Programs the data plane through the shared-memory region: the control plane's end of the
//! protocol in `fiberlb_shared::shm`.
//!
//! [`Programmer`] attaches to the region, sends the desired [`ServiceSet`] as one transaction
//! (a diff from what the data plane is known to have, or a full replay), waits for `Applied` or
//! `Rejected`, and follows the restart rules (docs/architecture.md, "Heartbeats and restarts"):
//!
//! - **Data plane restart**: a new region file at the path ([`Region::is_replaced`]) or a new
//!   instance id → drop the old mapping, attach the new one, replay everything.
//! - **Control plane restart**: the last `(instance id, data-plane generation, store
//!   generation)` that was applied is persisted through [`AppliedStateStore`]; when the
//!   attached data plane still has exactly that, nothing is sent; otherwise a full replay.
//!
//! **Generations.** The data plane only takes a transaction whose generation is above the one
//! it applied. The transaction carries the store's generation when that is above the data
//! plane's, else the data plane's plus one (a data plane started from a services file, or a MAC
//! refresh without a store change). So the data plane's generation usually equals the store's,
//! and the persisted record maps one to the other when it does not.
//!
//! **MACs.** A backend without a MAC gets one from the kernel's neighbour table (netlink
//! `RTM_GETNEIGH` in fiberlbd's network namespace, optionally one interface) when
//! [`ProgrammerOptions::resolve_macs`] is set. An address with no usable entry is resolved
//! proactively: fiberlbd sends it one empty UDP datagram (to the discard port, 9), which makes
//! the kernel resolve it (ARP or neighbour discovery) on the right interface by its own routes,
//! then reads the table again a few times over ~100 ms. One that stays unresolved is sent as
//! `None`: a data plane with a backend gateway MAC uses it; one without keeps the backend out of
//! its Maglev tables (no new flows into a blackhole) until the MAC arrives. The table is read
//! again every [`ProgrammerOptions::mac_refresh`] (1 s), so a backend that moves (a new MAC,
//! announced by gratuitous ARP or learnt on the kernel's next probe) is followed within about a
//! second. Unresolved addresses are in [`ProgramStatus::unresolved`] (status, backend list,
//! metrics).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fiberlb_shared::model::{Mac, ServiceSet};
use fiberlb_shared::shm::channel::{RecvError, SendError};
use fiberlb_shared::shm::message::{Message, RejectCode};
use fiberlb_shared::shm::region::{Region, RegionError, RegionReceiver, RegionSender};
use fiberlb_shared::shm::ring::RingError;
use fiberlb_shared::shm::transaction::{canonical, diff_to_messages, full_replay};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

mod applied;
mod neighbours;

pub use applied::*;
use neighbours::unresolved_addresses;
pub use neighbours::*;

/// What went wrong programming the data plane.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error("cannot attach to the data plane's region: {0} (is fiberlb-dataplane running with the same shm path?)")]
    Attach(#[source] RegionError),
    #[error("sending to the data plane: {0}")]
    Send(#[from] SendError),
    #[error("reading the data plane's replies: {0}; the region will be re-attached")]
    Recv(#[from] RecvError),
    #[error("the data plane did not answer transaction {generation} within {waited:?}; is it alive? (the next sync replays in full)")]
    Timeout { generation: u64, waited: Duration },
    #[error("the data plane rejected generation {generation} ({code:?}): {reason}")]
    Rejected {
        generation: u64,
        code: RejectCode,
        reason: String,
    },
    #[error(
        "the data plane restarted during transaction {generation}; it will be replayed in full"
    )]
    Restarted { generation: u64 },
    #[error("applied-state file {path}: {reason}")]
    State { path: PathBuf, reason: String },
    #[error("reading the kernel neighbour table: {0}")]
    Neighbours(String),
}

/// Settings of the [`Programmer`].
#[derive(Clone, Debug)]
pub struct ProgrammerOptions {
    /// The data plane's region.
    pub shm_path: PathBuf,
    /// How long to wait for `Applied`/`Rejected` (including time the command ring is full).
    pub reply_timeout: Duration,
    /// Sleep between looks at the reply ring while waiting.
    pub poll_interval: Duration,
    /// How often [`Programmer::run`] beats the control plane's heartbeat and looks for a
    /// restarted data plane.
    pub heartbeat_interval: Duration,
    /// Resolve missing backend MACs from the neighbour table (`None`: never).
    pub resolve_macs: Option<NeighbourResolver>,
    /// How often [`Programmer::run`] re-reads the neighbour table for backends without a MAC
    /// (and probes the unresolved ones again).
    pub mac_refresh: Duration,
    /// Wait after a failed sync before [`Programmer::run`] tries again.
    pub retry_backoff: Duration,
}

impl ProgrammerOptions {
    /// Defaults for the region at `shm_path`: 5 s reply timeout, 1 ms polling, 100 ms
    /// heartbeat, MACs resolved on any interface and refreshed every second (one netlink dump:
    /// cheap, and a moved backend is followed quickly), 1 s retry backoff.
    pub fn new(shm_path: impl Into<PathBuf>) -> Self {
        ProgrammerOptions {
            shm_path: shm_path.into(),
            reply_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(1),
            heartbeat_interval: Duration::from_millis(100),
            resolve_macs: Some(NeighbourResolver::default()),
            mac_refresh: Duration::from_secs(1),
            retry_backoff: Duration::from_secs(1),
        }
    }
}

/// How a [`Programmer::sync`] brought the data plane up to date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncKind {
    /// Nothing sent: the data plane already had it.
    UpToDate,
    /// Nothing sent: a restarted control plane found the persisted record matching the data
    /// plane's instance and generation.
    Resumed,
    /// A diff transaction of `messages` messages (including Begin and Commit).
    Diff { messages: usize },
    /// A full replay of `messages` messages.
    Full { messages: usize },
}

/// Result of a successful [`Programmer::sync`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncOutcome {
    pub kind: SyncKind,
    /// The data plane's generation afterwards.
    pub generation: u64,
    /// From the first message sent to the reply (zero when nothing was sent).
    pub elapsed: Duration,
}

/// What the programmer is doing, for metrics and the API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgramStatus {
    pub attached: bool,
    pub instance_id: Option<u128>,
    /// Store generation last asked for.
    pub desired_generation: u64,
    /// Store generation the data plane has (as far as this programmer knows).
    pub synced_store_generation: Option<u64>,
    /// The data plane's applied generation after the last sync.
    pub applied_generation: u64,
    pub transactions_applied: u64,
    pub transactions_rejected: u64,
    pub timeouts: u64,
    pub full_resyncs: u64,
    pub attaches: u64,
    /// Time from first message to reply of the last applied transaction.
    pub last_apply: Option<Duration>,
    pub last_error: Option<String>,
    /// Backend addresses without a configured MAC that the neighbour table could not resolve
    /// at the last look (sorted).
    pub unresolved: Vec<IpAddr>,
}

/// The desired configuration: the store generation it belongs to and the service set (with
/// health already folded into `Backend::healthy`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub store_generation: u64,
    pub services: ServiceSet,
}

struct Attached {
    region: Arc<Region>,
    tx: RegionSender,
    rx: RegionReceiver,
    instance_id: u128,
}

/// What the attached data plane is known to have.
#[derive(Clone, Debug)]
struct Known {
    instance_id: u128,
    generation: u64,
    store_generation: u64,
    services: ServiceSet,
}

/// The control plane's side of the region.
pub struct Programmer {
    opts: ProgrammerOptions,
    state: Arc<dyn AppliedStateStore>,
    attached: Option<Attached>,
    known: Option<Known>,
    /// Set once per attach: the persisted record may only vouch for the data plane found at
    /// attach time.
    may_resume: bool,
    region_tx: watch::Sender<Option<Arc<Region>>>,
    status_tx: watch::Sender<ProgramStatus>,
    macs: HashMap<IpAddr, Mac>,
    macs_read: Option<Instant>,
    /// Addresses already probed once: a new backend's first probe is waited for (it gets its MAC
    /// in the same sync); an address that stays unresolved is probed again at each refresh
    /// without holding the sync up (that wait put ~100 ms into a write's latency every second).
    probed: std::collections::HashSet<IpAddr>,
}

impl std::fmt::Debug for Programmer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Programmer")
            .field("shm_path", &self.opts.shm_path)
            .field("status", &*self.status_tx.borrow())
            .finish_non_exhaustive()
    }
}

/// Reject codes after which the same content sent as a full replay may well succeed (the
/// protocol state was off, not the configuration).
fn retryable(code: RejectCode) -> bool {
    !matches!(
        code,
        RejectCode::Invalid | RejectCode::TooManyObjects | RejectCode::WrongDirection
    )
}

impl Programmer {
    /// A programmer for `opts.shm_path`; attaches lazily.
    pub fn new(opts: ProgrammerOptions, state: Arc<dyn AppliedStateStore>) -> Self {
        Programmer {
            opts,
            state,
            attached: None,
            known: None,
            may_resume: false,
            region_tx: watch::channel(None).0,
            status_tx: watch::channel(ProgramStatus::default()).0,
            macs: HashMap::new(),
            macs_read: None,
            probed: std::collections::HashSet::new(),
        }
    }

    /// The region currently attached (`None` while detached), for readers of counters (the
    /// region allows one control plane, so they must share this mapping). Do not hold the
    /// `Arc` long: a re-attach cannot happen while an old handle pins the old file's lock.
    pub fn region(&self) -> watch::Receiver<Option<Arc<Region>>> {
        self.region_tx.subscribe()
    }

    /// Status updates.
    pub fn status(&self) -> watch::Receiver<ProgramStatus> {
        self.status_tx.subscribe()
    }

    fn update_status(&self, f: impl FnOnce(&mut ProgramStatus)) {
        self.status_tx.send_modify(f);
    }

    /// Stores the control plane's heartbeat (the data plane discards a half-sent transaction
    /// of a control plane whose heartbeat stopped).
    pub fn beat(&self) {
        if let Some(a) = &self.attached {
            a.region.beat();
        }
    }

    fn detach(&mut self) {
        if self.attached.take().is_some() {
            self.region_tx.send_replace(None);
            self.update_status(|s| {
                s.attached = false;
                s.instance_id = None;
            });
        }
        self.known = None;
    }

    /// Attaches when detached; detaches and re-attaches when the data plane restarted (region
    /// replaced or new instance id). Returns true when a (re)attach happened.
    ///
    /// # Errors
    /// [`ProgramError::Attach`] when there is no usable region (the programmer stays
    /// detached).
    pub fn ensure_attached(&mut self) -> Result<bool, ProgramError> {
        if let Some(a) = &self.attached {
            if !a.region.is_replaced() && a.region.header().instance_id() == a.instance_id {
                return Ok(false);
            }
            log::info!(
                "data plane at {} restarted; re-attaching and replaying",
                self.opts.shm_path.display()
            );
            self.detach();
        }
        let mut region = Region::attach(&self.opts.shm_path).map_err(ProgramError::Attach)?;
        let (tx, mut rx) = region.endpoints().map_err(ProgramError::Attach)?;
        // Replies left from a previous control plane belong to transactions we never sent.
        let mut stale = 0;
        while let Ok(Some(_)) | Err(RecvError::Malformed { .. } | RecvError::OutOfOrder { .. }) =
            rx.try_recv()
        {
            stale += 1;
            if stale > 1 << 17 {
                break;
            }
        }
        let region = Arc::new(region);
        region.beat();
        let instance_id = region.header().instance_id();
        log::info!(
            "attached to data plane {instance_id:032x} (pid {}, generation {}) at {}",
            region.header().data_plane_pid(),
            region.header().applied_generation(),
            self.opts.shm_path.display()
        );
        self.attached = Some(Attached {
            region: region.clone(),
            tx,
            rx,
            instance_id,
        });
        self.known = None;
        self.may_resume = true;
        self.region_tx.send_replace(Some(region));
        self.update_status(|s| {
            s.attached = true;
            s.instance_id = Some(instance_id);
            s.attaches += 1;
        });
        Ok(true)
    }

    /// True when the data plane may not have what was last synced (a restart, or nothing synced
    /// yet): call [`sync`](Self::sync).
    pub fn needs_sync(&self, store_generation: u64) -> bool {
        let Some(a) = &self.attached else {
            return true;
        };
        match &self.known {
            Some(k) => {
                k.instance_id != a.instance_id
                    || k.generation != a.region.header().applied_generation()
                    || k.store_generation != store_generation
                    || a.region.is_replaced()
            }
            None => true,
        }
    }

    /// Fills in missing backend MACs from the neighbour table read at most every
    /// `mac_refresh` (or now when `force`).
    async fn fill_macs(&mut self, set: &mut ServiceSet, force: bool) {
        let Some(resolver) = self.opts.resolve_macs.clone() else {
            return;
        };
        if !set.backends.iter().any(|b| b.mac.is_none()) {
            if !self.status_tx.borrow().unresolved.is_empty() {
                self.update_status(|s| s.unresolved.clear());
            }
            return;
        }
        let due = self
            .macs_read
            .is_none_or(|t| t.elapsed() >= self.opts.mac_refresh);
        // A backend address never looked up (just added) is looked up now, not at the next
        // refresh: it gets its MAC in this very sync when the kernel knows or learns it.
        let new_address = unresolved_addresses(set, &self.macs)
            .iter()
            .any(|a| !self.probed.contains(a));
        if force || due || new_address {
            match resolver.table().await {
                Ok(t) => self.macs = t,
                Err(e) => log::warn!("{e}; backends without a MAC use the gateway MAC"),
            }
            self.macs_read = Some(Instant::now());
            // Ask the kernel to resolve what it does not know, and give it a moment.
            let missing = unresolved_addresses(set, &self.macs);
            let fresh = missing.iter().any(|a| !self.probed.contains(a));
            self.probed.retain(|a| missing.contains(a));
            self.probed.extend(missing.iter().copied());
            if !missing.is_empty() {
                probe_neighbours(&missing);
            }
            if fresh {
                for _ in 0..5 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if let Ok(t) = resolver.table().await {
                        self.macs = t;
                    }
                    if unresolved_addresses(set, &self.macs).is_empty() {
                        break;
                    }
                }
            }
        }
        let mut unresolved = fill_macs(set, &self.macs);
        unresolved.sort_unstable();
        unresolved.dedup();
        if self.status_tx.borrow().unresolved != unresolved {
            let u = unresolved.clone();
            self.update_status(|s| s.unresolved = u);
        }
        if !unresolved.is_empty() && (force || due) {
            log::info!(
                "no neighbour entry for {} backend address(es) ({}): the data plane uses its backend gateway MAC for them, or, without one, sends them no new flows",
                unresolved.len(),
                unresolved
                    .iter()
                    .take(8)
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }

    /// Brings the data plane to `desired` (belonging to store generation `store_generation`),
    /// attaching first if needed. Sends nothing when it already has it.
    ///
    /// # Errors
    /// Attach failures, timeouts, and rejections ([`ProgramError::Rejected`] carries the data
    /// plane's reason). Protocol-level rejections are retried once as a full replay first.
    pub async fn sync(
        &mut self,
        desired: &ServiceSet,
        store_generation: u64,
    ) -> Result<SyncOutcome, ProgramError> {
        self.sync_inner(desired, store_generation, false).await
    }

    async fn sync_inner(
        &mut self,
        desired: &ServiceSet,
        store_generation: u64,
        refresh_macs: bool,
    ) -> Result<SyncOutcome, ProgramError> {
        self.update_status(|s| s.desired_generation = store_generation);
        let result = self
            .sync_attempts(desired, store_generation, refresh_macs)
            .await;
        let (applied, synced) = match &self.known {
            Some(k) => (k.generation, Some(k.store_generation)),
            None => (0, None),
        };
        self.update_status(|s| {
            s.applied_generation = applied;
            s.synced_store_generation = synced;
            match &result {
                Ok(_) => s.last_error = None,
                Err(e) => s.last_error = Some(e.to_string()),
            }
        });
        result
    }

    async fn sync_attempts(
        &mut self,
        desired: &ServiceSet,
        store_generation: u64,
        refresh_macs: bool,
    ) -> Result<SyncOutcome, ProgramError> {
        self.ensure_attached()?;
        let mut set = canonical(desired);
        self.fill_macs(&mut set, refresh_macs).await;
        let mut retried = false;
        loop {
            match self.sync_once(&set, store_generation).await {
                Err(ProgramError::Rejected { code, .. }) if !retried && retryable(code) => {
                    log::warn!(
                        "data plane rejected a transaction ({code:?}); retrying as a full replay"
                    );
                    self.known = None;
                    self.may_resume = false;
                    retried = true;
                }
                Err(e @ (ProgramError::Restarted { .. } | ProgramError::Recv(_))) => {
                    self.detach();
                    return Err(e);
                }
                other => return other,
            }
        }
    }

    async fn sync_once(
        &mut self,
        set: &ServiceSet,
        store_generation: u64,
    ) -> Result<SyncOutcome, ProgramError> {
        let Some(a) = &self.attached else {
            return Err(ProgramError::Attach(RegionError::Config(
                "not attached".into(),
            )));
        };
        let header = a.region.header();
        let instance_id = a.instance_id;
        let applied = header.applied_generation();
        // What does the data plane have?
        let base = match &self.known {
            Some(k) if k.instance_id == instance_id && k.generation == applied => {
                if k.services == *set && k.store_generation == store_generation {
                    return Ok(SyncOutcome {
                        kind: SyncKind::UpToDate,
                        generation: applied,
                        elapsed: Duration::ZERO,
                    });
                }
                Some(k.services.clone())
            }
            _ => None,
        };
        if base.is_none() && self.may_resume {
            self.may_resume = false;
            let record = self.state.load()?;
            if record
                == Some(AppliedRecord {
                    instance_id,
                    generation: applied,
                    store_generation,
                    services_digest: services_digest(set),
                })
            {
                log::info!(
                    "data plane {instance_id:032x} already has store generation {store_generation} (its generation {applied}): no resync"
                );
                self.known = Some(Known {
                    instance_id,
                    generation: applied,
                    store_generation,
                    services: set.clone(),
                });
                return Ok(SyncOutcome {
                    kind: SyncKind::Resumed,
                    generation: applied,
                    elapsed: Duration::ZERO,
                });
            }
        }
        let (messages, full) = match &base {
            Some(old) => (diff_to_messages(old, set), false),
            None => (full_replay(set), true),
        };
        let generation = store_generation.max(applied.saturating_add(1));
        let count = messages.len();
        let started = Instant::now();
        let prev_known = self.known.take().filter(|_| base.is_some());
        let result = self.transact(generation, messages).await;
        match result {
            Ok(()) => {
                let elapsed = started.elapsed();
                self.known = Some(Known {
                    instance_id,
                    generation,
                    store_generation,
                    services: set.clone(),
                });
                // Applied is what the API reports from here on: said before the record below
                // is saved (a file write and rename), which only spares a restarted fiberlbd a
                // resync and need not delay the answer.
                self.update_status(|s| {
                    s.transactions_applied += 1;
                    s.full_resyncs += u64::from(full);
                    s.last_apply = Some(elapsed);
                    s.applied_generation = generation;
                    s.synced_store_generation = Some(store_generation);
                });
                let record = AppliedRecord {
                    instance_id,
                    generation,
                    store_generation,
                    services_digest: services_digest(set),
                };
                if let Err(e) = self.state.save(&record) {
                    // Costs one unneeded full resync after a restart, nothing more.
                    log::warn!("{e}");
                }
                Ok(SyncOutcome {
                    kind: if full {
                        SyncKind::Full { messages: count }
                    } else {
                        SyncKind::Diff { messages: count }
                    },
                    generation,
                    elapsed,
                })
            }
            Err(e) => {
                // A rejected transaction changed nothing: what the data plane had, it still has.
                if matches!(e, ProgramError::Rejected { .. }) {
                    self.known = prev_known;
                    self.update_status(|s| s.transactions_rejected += 1);
                }
                if matches!(e, ProgramError::Timeout { .. }) {
                    self.update_status(|s| s.timeouts += 1);
                }
                Err(e)
            }
        }
    }

    /// Sends one transaction and waits for its reply.
    async fn transact(
        &mut self,
        generation: u64,
        messages: Vec<Message>,
    ) -> Result<(), ProgramError> {
        let deadline = Instant::now() + self.opts.reply_timeout;
        let poll = self.opts.poll_interval;
        let mut last_beat = Instant::now();
        for m in messages {
            loop {
                let a = self
                    .attached
                    .as_mut()
                    .ok_or(ProgramError::Restarted { generation })?;
                match a.tx.send(generation, m.clone()) {
                    Ok(_) => break,
                    Err(SendError::Ring(RingError::Full { .. })) => {
                        a.region.ring_command_doorbell();
                        self.wait_step(generation, deadline, &mut last_beat).await?;
                        tokio::time::sleep(poll).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        // Wake the data plane's control thread, which sleeps on the doorbell between commands.
        if let Some(a) = self.attached.as_ref() {
            a.region.ring_command_doorbell();
        }
        let sent = Instant::now();
        loop {
            let a = self
                .attached
                .as_mut()
                .ok_or(ProgramError::Restarted { generation })?;
            while let Some(frame) = a.rx.try_recv()? {
                if frame.generation != generation {
                    log::debug!(
                        "ignoring a reply for generation {} while waiting for {generation}",
                        frame.generation
                    );
                    continue;
                }
                return match frame.message {
                    Message::Applied => Ok(()),
                    Message::Rejected { code, reason } => Err(ProgramError::Rejected {
                        generation,
                        code,
                        reason,
                    }),
                    other => {
                        log::warn!("unexpected {other:?} from the data plane; ignored");
                        continue;
                    }
                };
            }
            self.wait_step(generation, deadline, &mut last_beat).await?;
            reply_pause(sent, poll).await;
        }
    }

    /// While waiting: beat, notice a data plane restart, give up at the deadline.
    async fn wait_step(
        &mut self,
        generation: u64,
        deadline: Instant,
        last_beat: &mut Instant,
    ) -> Result<(), ProgramError> {
        let a = self
            .attached
            .as_ref()
            .ok_or(ProgramError::Restarted { generation })?;
        if last_beat.elapsed() >= self.opts.heartbeat_interval {
            a.region.beat();
            *last_beat = Instant::now();
            if a.region.is_replaced() || a.region.header().instance_id() != a.instance_id {
                return Err(ProgramError::Restarted { generation });
            }
        }
        if Instant::now() >= deadline {
            return Err(ProgramError::Timeout {
                generation,
                waited: self.opts.reply_timeout,
            });
        }
        Ok(())
    }

    /// Drives the data plane for the life of fiberlbd: beats every `heartbeat_interval`,
    /// (re)attaches and replays after a data plane restart, syncs whenever `desired` changes,
    /// refreshes MACs every `mac_refresh`, retries failures after `retry_backoff`. Returns when
    /// `shutdown` becomes true (or its sender is dropped).
    pub async fn run(
        mut self,
        mut desired: watch::Receiver<Arc<Desired>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(self.opts.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retry_at: Option<Instant> = None;
        let mut last_attach_error: Option<String> = None;
        let mut last_mac_refresh = Instant::now();
        let mut dirty = true;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                r = desired.changed() => {
                    if r.is_err() {
                        return;
                    }
                    dirty = true;
                    retry_at = None;
                }
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
            }
            if *shutdown.borrow() {
                return;
            }
            match self.ensure_attached() {
                Ok(true) => {
                    dirty = true;
                    retry_at = None;
                    last_attach_error = None;
                }
                Ok(false) => {}
                Err(e) => {
                    let msg = e.to_string();
                    if last_attach_error.as_ref() != Some(&msg) {
                        log::warn!("{msg}");
                        last_attach_error = Some(msg.clone());
                    }
                    self.update_status(|s| s.last_error = Some(msg));
                    continue;
                }
            }
            self.beat();
            let want = desired.borrow().clone();
            let refresh = self.opts.resolve_macs.is_some()
                && last_mac_refresh.elapsed() >= self.opts.mac_refresh
                && want.services.backends.iter().any(|b| b.mac.is_none());
            if refresh {
                last_mac_refresh = Instant::now();
            }
            let due = retry_at.is_none_or(|t| Instant::now() >= t);
            if (dirty || refresh || self.needs_sync(want.store_generation)) && due {
                match self
                    .sync_inner(&want.services, want.store_generation, refresh)
                    .await
                {
                    Ok(o) => {
                        dirty = false;
                        retry_at = None;
                        if o.kind != SyncKind::UpToDate {
                            log::info!(
                                "data plane at generation {} ({:?}, {:?})",
                                o.generation,
                                o.kind,
                                o.elapsed
                            );
                        }
                    }
                    Err(e) => {
                        log::warn!("{e}");
                        retry_at = Some(Instant::now() + self.opts.retry_backoff);
                    }
                }
            }
        }
    }
}

/// How long after a transaction's last message the reply ring is watched closely: a reply
/// usually comes within a few ms (the data plane wakes on the doorbell, builds, and waits for
/// its workers' quiescent points).
const CLOSE_WATCH: Duration = Duration::from_millis(20);

/// The pause between two looks at the reply ring. tokio's timer has a 1 ms resolution, which
/// alone added ~1 ms to every write's latency; during [`CLOSE_WATCH`] the pause is a 50 µs
/// sleep on the blocking pool instead (a few µs of hand-off), then `poll`.
async fn reply_pause(sent: Instant, poll: Duration) {
    if sent.elapsed() < CLOSE_WATCH {
        let pause = Duration::from_micros(50);
        if tokio::task::spawn_blocking(move || std::thread::sleep(pause))
            .await
            .is_ok()
        {
            return;
        }
    }
    tokio::time::sleep(poll).await;
}
