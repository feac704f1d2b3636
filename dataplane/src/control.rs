//! The data plane's control thread: reads commands from the shared-memory region, assembles
//! transactions, builds snapshots, publishes them to the workers and answers the control plane.
//!
//! It is not a worker: it polls the command ring and sleeps about a millisecond when the ring is
//! empty, beats the region's heartbeat about every 100 ms, and does all allocation, Maglev
//! building and freeing of old snapshots. `Applied(gen)` is sent only after every online worker
//! has passed a quiescent point with the new snapshot in force, so it means "every worker
//! forwards by generation `gen`".
//!
//! One [`SnapshotBuilder`] serves the life of the process: listener and backend slots stay
//! stable across updates, which is what keeps established flows on their backend and counters
//! on their object.
//!
//! Also here: [`CounterPublisher`] (a worker copies its counters into the region), the
//! `<region>.slots.json` file that names counter slots, and [`read_stats`] / [`render_table`]
//! for `fiberlb-dataplane stats` (which also shows the ports of `<region>.ports.json`, see
//! [`crate::port_stats`]).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fiberlb_shared::model::ServiceSet;
use fiberlb_shared::port_stats::{ports_path_for, PortCounters, STALE_AFTER_MS};
use fiberlb_shared::shm::channel::RecvError;
use fiberlb_shared::shm::counters::{
    drop_reason_label, CountersReader, ObjectCounters as ShmObject, Totals, DROP_REASONS,
};
use fiberlb_shared::shm::message::{Message, RejectCode};
use fiberlb_shared::shm::region::{
    monotonic_ns, Region, RegionError, RegionReceiver, RegionSender,
};
use fiberlb_shared::shm::transaction::{full_replay, Assembler, Outcome};
pub use fiberlb_shared::slots::{
    slots_path_for, BackendSlot, ControlCounts, ListenerSlot, SlotsFile,
};
use serde::Serialize;

use crate::pipeline::{DropReason, ObjectCounters, WorkerCounters};
use crate::publish::{Publisher, ReaderHandle};
use crate::snapshot::{Snapshot, SnapshotBuilder, SnapshotError};

/// Messages handled per [`ControlThread::poll_once`] before the loop beats and looks at the
/// stop flag again.
const MAX_MESSAGES_PER_POLL: usize = 256;

/// Settings of the control thread.
#[derive(Clone, Debug)]
pub struct ControlOptions {
    /// Number of workers (one [`ReaderHandle`] and one counters block each).
    pub workers: usize,
    /// Listener and backend slots the snapshots may use (the pipeline's counter arrays).
    pub max_listeners: usize,
    pub max_backends: usize,
    /// Sleep when the command ring is empty.
    pub poll_interval: Duration,
    /// How often the data plane's heartbeat is stored.
    pub heartbeat_interval: Duration,
    /// A transaction left open this long with no message, while the control plane's heartbeat
    /// is at least as old, belongs to a dead control plane: it is discarded so the next one can
    /// begin.
    pub stale_transaction: Duration,
    /// Where the slot → object map goes; default `<region path>.slots.json`.
    pub slots_path: Option<PathBuf>,
    /// Whether backends without a MAC have a next hop (a backend gateway MAC); see
    /// [`SnapshotBuilder::with_gateway_fallback`].
    pub gateway_fallback: bool,
    /// CPUs the control thread may run on (empty: the process's). The data plane gives it the
    /// CPUs no worker is pinned to, so that building a snapshot (Maglev tables: milliseconds)
    /// never takes a worker's core from it — on a busy core the scheduler would split the
    /// time, the worker would stop polling, and its receive ring would overflow mid-update.
    pub cpus: Vec<usize>,
}

impl Default for ControlOptions {
    fn default() -> Self {
        ControlOptions {
            workers: 1,
            max_listeners: 4096,
            max_backends: 65536,
            poll_interval: Duration::from_millis(1),
            heartbeat_interval: Duration::from_millis(100),
            stale_transaction: Duration::from_secs(3),
            slots_path: None,
            gateway_fallback: true,
            cpus: Vec::new(),
        }
    }
}

/// Why the control thread could not start or apply a start-up configuration.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Region(#[from] RegionError),
    #[error("the region must be the data plane's (created with Region::create), not attached")]
    NotDataPlane,
    #[error(
        "worker {worker} does not exist or its handles were already taken (workers: {workers})"
    )]
    NoSuchWorker { worker: usize, workers: usize },
    #[error("the region's counters area has room for {region} workers, {wanted} were asked for; create the region with more")]
    TooManyWorkers { wanted: usize, region: u32 },
    #[error("configuration refused ({code:?}): {reason}")]
    Rejected { code: RejectCode, reason: String },
    #[error("configuration refused: {0}")]
    Build(#[from] SnapshotError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("region {path}: {source}")]
    Stats { path: PathBuf, source: RegionError },
    #[error("{path}: {reason}")]
    SlotsFile { path: PathBuf, reason: String },
}

/// What the control thread counted. Readable from any thread; also written to the slots file.
#[derive(Debug, Default)]
pub struct ControlStats {
    /// Transactions applied (including the start-up one).
    pub applied: AtomicU64,
    /// Frames that failed to decode (torn, garbage, bad checksum).
    pub rejected_corrupt: AtomicU64,
    /// Frames with an unexpected sequence number (replayed, stale or lost).
    pub rejected_out_of_order: AtomicU64,
    /// Well-formed messages that broke the transaction protocol (stale generation, no
    /// transaction, count mismatch, ...).
    pub rejected_protocol: AtomicU64,
    /// Transactions whose result could not be forwarded by (validation or build failed).
    pub rejected_invalid: AtomicU64,
    /// Transactions the control plane aborted.
    pub aborted: AtomicU64,
    /// Open transactions discarded because their control plane went away.
    pub stale_discarded: AtomicU64,
    /// Replies dropped because the reply ring was full (nobody reading).
    pub replies_dropped: AtomicU64,
    /// The command ring's indices were inconsistent.
    pub ring_errors: AtomicU64,
}

impl ControlStats {
    /// A snapshot of the counters.
    pub fn counts(&self) -> ControlCounts {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ControlCounts {
            applied: l(&self.applied),
            rejected_corrupt: l(&self.rejected_corrupt),
            rejected_out_of_order: l(&self.rejected_out_of_order),
            rejected_protocol: l(&self.rejected_protocol),
            rejected_invalid: l(&self.rejected_invalid),
            aborted: l(&self.aborted),
            stale_discarded: l(&self.stale_discarded),
            replies_dropped: l(&self.replies_dropped),
            ring_errors: l(&self.ring_errors),
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// Highest listener / backend slot count any snapshot has used: the counters a worker copies.
#[derive(Debug, Default)]
struct HighWater {
    listeners: AtomicUsize,
    backends: AtomicUsize,
}

/// Called on the control thread after every applied snapshot, before `Applied` is sent (e.g.
/// to keep the XDP program's VIP maps in step).
pub type ApplyHook = Box<dyn FnMut(&Snapshot) + Send>;

/// The data plane's control thread, before and while it runs.
pub struct ControlThread {
    region: Arc<Region>,
    tx: RegionSender,
    rx: RegionReceiver,
    assembler: Assembler,
    builder: SnapshotBuilder,
    publisher: Publisher<Snapshot>,
    readers: Vec<Option<ReaderHandle<Snapshot>>>,
    counters_taken: Vec<bool>,
    /// The configuration in force and its generation (the assembler is reset to it when a
    /// build fails after the assembler accepted a transaction).
    applied_set: ServiceSet,
    applied_gen: u64,
    stats: Arc<ControlStats>,
    high_water: Arc<HighWater>,
    hook: Option<ApplyHook>,
    opts: ControlOptions,
    slots_path: PathBuf,
    /// The slots file needs rewriting (counters changed since the last write).
    slots_dirty: bool,
    last_beat: Instant,
    /// When the open transaction last received a message.
    open_since: Option<Instant>,
}

impl std::fmt::Debug for ControlThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlThread")
            .field("region", &self.region.path())
            .field("applied_gen", &self.applied_gen)
            .field("stats", &self.stats.counts())
            .finish_non_exhaustive()
    }
}

impl ControlThread {
    /// Takes the data plane's region (created with [`Region::create`]) and prepares an empty
    /// configuration (generation 0) with `opts.workers` reader handles.
    ///
    /// # Errors
    /// The region is not the data plane's, its endpoints were taken, or its counters area has
    /// fewer worker blocks than `opts.workers`.
    pub fn new(mut region: Region, opts: ControlOptions) -> Result<Self, ControlError> {
        if region.role() != fiberlb_shared::shm::region::Role::DataPlane {
            return Err(ControlError::NotDataPlane);
        }
        let layout = region.counters_layout();
        if opts.workers > layout.workers as usize {
            return Err(ControlError::TooManyWorkers {
                wanted: opts.workers,
                region: layout.workers,
            });
        }
        let (tx, rx) = region.endpoints()?;
        let slots_path = opts
            .slots_path
            .clone()
            .unwrap_or_else(|| slots_path_for(region.path()));
        region.header().set_applied_generation(0);
        region.beat();
        let (publisher, readers) = Publisher::new(Box::new(Snapshot::default()), opts.workers);
        let builder = SnapshotBuilder::new(
            opts.max_listeners.min(layout.listeners as usize),
            opts.max_backends.min(layout.backends as usize),
        )
        .with_gateway_fallback(opts.gateway_fallback);
        Ok(ControlThread {
            region: Arc::new(region),
            tx,
            rx,
            assembler: Assembler::new(ServiceSet::default(), 0),
            builder,
            publisher,
            readers: readers.into_iter().map(Some).collect(),
            counters_taken: vec![false; opts.workers],
            applied_set: ServiceSet::default(),
            applied_gen: 0,
            stats: Arc::new(ControlStats::default()),
            high_water: Arc::new(HighWater::default()),
            hook: None,
            slots_path,
            slots_dirty: true,
            last_beat: Instant::now(),
            open_since: None,
            opts,
        })
    }

    /// The region, shared with the workers' [`CounterPublisher`]s.
    pub fn region(&self) -> Arc<Region> {
        self.region.clone()
    }

    /// What the control thread counted.
    pub fn stats(&self) -> Arc<ControlStats> {
        self.stats.clone()
    }

    /// Generation of the configuration in force.
    pub fn applied_generation(&self) -> u64 {
        self.applied_gen
    }

    /// The configuration in force.
    pub fn applied_set(&self) -> &ServiceSet {
        &self.applied_set
    }

    /// The snapshot in force (control side).
    pub fn snapshot(&self) -> &Snapshot {
        self.publisher.current()
    }

    /// Where the slot → object map is written.
    pub fn slots_path(&self) -> &Path {
        &self.slots_path
    }

    /// Runs `hook` after every applied snapshot, before `Applied` is sent.
    pub fn set_apply_hook(&mut self, hook: ApplyHook) {
        self.hook = Some(hook);
    }

    /// Worker `worker`'s snapshot reader (once per worker).
    pub fn take_reader(&mut self, worker: usize) -> Option<ReaderHandle<Snapshot>> {
        self.readers.get_mut(worker).and_then(Option::take)
    }

    /// Worker `worker`'s counter publisher (once per worker: two publishers on one block would
    /// overwrite each other's totals).
    pub fn counter_publisher(&mut self, worker: usize) -> Option<CounterPublisher> {
        let taken = self.counters_taken.get_mut(worker)?;
        if *taken {
            return None;
        }
        *taken = true;
        Some(CounterPublisher {
            region: self.region.clone(),
            worker: worker as u32,
            high_water: self.high_water.clone(),
        })
    }

    /// Both of worker `worker`'s handles.
    ///
    /// # Errors
    /// [`ControlError::NoSuchWorker`] when out of range or already taken.
    pub fn worker_handles(
        &mut self,
        worker: usize,
    ) -> Result<(ReaderHandle<Snapshot>, CounterPublisher), ControlError> {
        let err = ControlError::NoSuchWorker {
            worker,
            workers: self.readers.len(),
        };
        let taken = self.readers.get(worker).is_none_or(Option::is_none)
            || self.counters_taken.get(worker).is_none_or(|t| *t);
        if taken {
            return Err(err);
        }
        match (self.take_reader(worker), self.counter_publisher(worker)) {
            (Some(r), Some(c)) => Ok((r, c)),
            _ => Err(err),
        }
    }

    /// Applies a start-up configuration (a services file) through the same path as a control
    /// plane's transaction: its full replay is fed to the assembler as if received, as
    /// generation `applied + 1`. Call before the workers start. Returns the generation.
    ///
    /// # Errors
    /// [`ControlError::Rejected`] / [`ControlError::Build`]: the configuration cannot be
    /// forwarded by; nothing changed.
    pub fn apply_initial(&mut self, set: ServiceSet) -> Result<u64, ControlError> {
        let generation = self.applied_gen + 1;
        let mut outcome = Outcome::Pending;
        for m in full_replay(&set) {
            outcome = self.assembler.accept(generation, m);
            if let Outcome::Rejected { code, reason, .. } = outcome {
                self.assembler = Assembler::new(self.applied_set.clone(), self.applied_gen);
                return Err(ControlError::Rejected { code, reason });
            }
        }
        let Outcome::Applied {
            generation,
            services,
        } = outcome
        else {
            return Err(ControlError::Rejected {
                code: RejectCode::NoTransaction,
                reason: "the replay did not complete a transaction".into(),
            });
        };
        self.apply(generation, services, &AtomicBool::new(false))
            .map_err(|e| {
                bump(&self.stats.rejected_invalid);
                ControlError::Build(e)
            })?;
        Ok(generation)
    }

    /// Builds, publishes and waits for the workers; on a build error the assembler is put back
    /// to the configuration in force. Does not reply.
    fn apply(
        &mut self,
        generation: u64,
        services: ServiceSet,
        stop: &AtomicBool,
    ) -> Result<(), SnapshotError> {
        let snap = match self.builder.build(&services, generation) {
            Ok(s) => s,
            Err(e) => {
                self.assembler = Assembler::new(self.applied_set.clone(), self.applied_gen);
                return Err(e);
            }
        };
        // Counters of new slots must be copied from the first packet on.
        self.high_water
            .listeners
            .fetch_max(snap.listener_slots(), Ordering::Relaxed);
        self.high_water
            .backends
            .fetch_max(snap.backends.len(), Ordering::Relaxed);
        self.publisher.publish(Box::new(snap));
        // Wait for every online worker, beating meanwhile: a worker stuck for long stalls
        // configuration, never liveness reporting.
        while !self.publisher.wait_quiescent(self.opts.heartbeat_interval) {
            self.region.beat();
            self.last_beat = Instant::now();
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
        self.applied_set = services;
        self.applied_gen = generation;
        self.region.header().set_applied_generation(generation);
        bump(&self.stats.applied);
        if let Some(hook) = self.hook.as_mut() {
            hook(self.publisher.current());
        }
        self.slots_dirty = true;
        // The map must name the new slots before anyone reads their counters; a write error
        // only costs names in `stats`, so it does not fail the transaction.
        let _ = self.write_slots();
        Ok(())
    }

    fn reply(&mut self, generation: u64, message: Message) {
        if self.tx.send(generation, message).is_err() {
            bump(&self.stats.replies_dropped);
        }
    }

    fn count_rejection(&self, code: RejectCode) {
        let s = &self.stats;
        match code {
            RejectCode::Malformed => bump(&s.rejected_corrupt),
            RejectCode::OutOfOrder => bump(&s.rejected_out_of_order),
            RejectCode::Invalid | RejectCode::TooManyObjects => bump(&s.rejected_invalid),
            RejectCode::Aborted => bump(&s.aborted),
            _ => bump(&s.rejected_protocol),
        }
    }

    fn handle_outcome(&mut self, outcome: Outcome, stop: &AtomicBool) {
        match outcome {
            Outcome::Pending => {}
            Outcome::Rejected {
                generation,
                code,
                reason,
            } => {
                self.count_rejection(code);
                self.reply(generation, Message::rejected(code, &reason));
            }
            Outcome::Applied {
                generation,
                services,
            } => match self.apply(generation, services, stop) {
                Ok(()) => self.reply(generation, Message::Applied),
                Err(e) => {
                    bump(&self.stats.rejected_invalid);
                    self.reply(
                        generation,
                        Message::rejected(RejectCode::Invalid, &e.to_string()),
                    );
                }
            },
        }
    }

    /// Handles up to 256 waiting commands; returns how many slots were consumed.
    pub fn poll_once(&mut self, stop: &AtomicBool) -> usize {
        let mut n = 0;
        while n < MAX_MESSAGES_PER_POLL {
            let outcome = match self.rx.try_recv() {
                Ok(None) => break,
                Ok(Some(frame)) => self.assembler.accept(frame.generation, frame.message),
                Err(RecvError::Malformed { seq, error }) => self.assembler.protocol_error(
                    RejectCode::Malformed,
                    &format!("message #{seq} is malformed: {error}"),
                ),
                Err(e @ RecvError::OutOfOrder { .. }) => self
                    .assembler
                    .protocol_error(RejectCode::OutOfOrder, &e.to_string()),
                Err(RecvError::Ring(_)) => {
                    // Nothing can be read from a ring whose indices are impossible; count it
                    // and keep forwarding with what we have.
                    bump(&self.stats.ring_errors);
                    break;
                }
            };
            n += 1;
            self.handle_outcome(outcome, stop);
            self.open_since = self.assembler.open_generation().map(|_| Instant::now());
        }
        n
    }

    /// Discards a transaction whose control plane died mid-way (see
    /// [`ControlOptions::stale_transaction`]).
    fn check_stale_transaction(&mut self) {
        let Some(since) = self.open_since else {
            return;
        };
        let limit = self.opts.stale_transaction;
        if since.elapsed() < limit || self.region.peer_alive(limit) {
            return;
        }
        self.open_since = None;
        let outcome = self.assembler.protocol_error(
            RejectCode::Aborted,
            "transaction discarded: no message and no control-plane heartbeat for too long",
        );
        if let Some((generation, message)) = outcome.reply() {
            bump(&self.stats.stale_discarded);
            self.reply(generation, message);
        }
    }

    /// Beats, checks for a stale transaction and rewrites the slots file when counters moved.
    fn housekeeping(&mut self, written: &mut ControlCounts) {
        if self.last_beat.elapsed() >= self.opts.heartbeat_interval {
            self.region.beat();
            self.last_beat = Instant::now();
            self.check_stale_transaction();
            let now = self.stats.counts();
            if (self.slots_dirty || now != *written) && self.write_slots().is_ok() {
                *written = now;
            }
        }
    }

    /// The loop: poll, apply, reply, beat, until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) {
        let mut written = ControlCounts {
            applied: u64::MAX,
            ..ControlCounts::default()
        };
        while !stop.load(Ordering::Relaxed) {
            let n = self.poll_once(stop);
            self.housekeeping(&mut written);
            if n == 0 {
                std::thread::sleep(self.opts.poll_interval);
            }
        }
        self.region.beat();
        let _ = self.write_slots();
    }

    /// Runs [`run`](Self::run) on a thread named `fiberlb-control`; the thread gives the
    /// control thread back when `stop` is set.
    ///
    /// # Errors
    /// The thread could not be created.
    pub fn spawn(
        mut self,
        stop: Arc<AtomicBool>,
    ) -> Result<JoinHandle<ControlThread>, ControlError> {
        std::thread::Builder::new()
            .name("fiberlb-control".into())
            .spawn(move || {
                if !self.opts.cpus.is_empty() {
                    if let Err(e) = crate::cpus::allow_cpus(&self.opts.cpus) {
                        eprintln!("fiberlb-dataplane: control thread: {e}; it runs anywhere");
                    }
                }
                self.run(&stop);
                self
            })
            .map_err(|source| ControlError::Io {
                op: "spawn control thread",
                path: PathBuf::new(),
                source,
            })
    }

    /// Writes the slot → object map atomically (temporary file, then rename).
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write_slots(&mut self) -> Result<(), ControlError> {
        let snap = self.publisher.current();
        let file = SlotsFile {
            instance_id: format!("{:032x}", self.region.header().instance_id()),
            generation: snap.generation,
            control: self.stats.counts(),
            workers: Some(self.opts.workers as u32),
            listeners: snap
                .listeners
                .iter()
                .map(|l| ListenerSlot {
                    slot: l.slot,
                    id: l.id.0,
                    name: l.name.clone(),
                    vip: l.vip,
                    port: l.port,
                    protocol: l.protocol.to_string(),
                    mode: l.mode.to_string(),
                })
                .collect(),
            backends: snap
                .backends
                .iter()
                .enumerate()
                .filter_map(|(slot, b)| {
                    let b = b.as_ref()?;
                    Some(BackendSlot {
                        slot: slot as u32,
                        id: b.id.0,
                        pool: snap
                            .pools
                            .get(b.pool as usize)
                            .map(|p| p.name.clone())
                            .unwrap_or_default(),
                        address: b.address,
                        port: b.port,
                    })
                })
                .collect(),
        };
        file.write(&self.slots_path)
            .map_err(|reason| ControlError::SlotsFile {
                path: self.slots_path.clone(),
                reason,
            })?;
        self.slots_dirty = false;
        Ok(())
    }
}

/// A worker's way to its counters block in the region. Cheap: it copies only the listener and
/// backend slots any snapshot has used so far, with plain stores.
#[derive(Debug)]
pub struct CounterPublisher {
    region: Arc<Region>,
    worker: u32,
    high_water: Arc<HighWater>,
}

fn shm_object(c: &ObjectCounters, active_flows: u64) -> ShmObject {
    ShmObject {
        packets: c.packets,
        bytes: c.bytes,
        new_flows: c.new_flows,
        active_flows,
    }
}

impl CounterPublisher {
    /// The worker this publisher writes for.
    pub fn worker(&self) -> u32 {
        self.worker
    }

    /// Copies the worker's running totals into its block. `tx_packets` is what the pipeline
    /// forwarded; `tx_bytes` the bytes sent to backends (nat replies are not in it). Active
    /// flows are the flow sweep's counts of its last complete pass (zero before the first).
    pub fn publish(&self, c: &WorkerCounters) {
        let Some(block) = self.region.worker_counters(self.worker) else {
            return;
        };
        for (reason, v) in c.drops.iter().enumerate() {
            block.set_drops(reason, *v);
        }
        let nl = self.high_water.listeners.load(Ordering::Relaxed);
        let sweep = &c.flow_sweep;
        for (slot, l) in c.listeners.iter().take(nl).enumerate() {
            block.set_listener(slot as u32, shm_object(l, sweep.listener_active(slot)));
        }
        let nb = self.high_water.backends.load(Ordering::Relaxed);
        let mut tx_bytes = 0u64;
        for (slot, b) in c.backends.iter().take(nb).enumerate() {
            tx_bytes = tx_bytes.wrapping_add(b.bytes);
            block.set_backend(slot as u32, shm_object(b, sweep.backend_active(slot)));
        }
        block.set_totals(Totals {
            rx_packets: c.rx_packets,
            rx_bytes: c.rx_bytes,
            tx_packets: c.forwarded,
            tx_bytes,
            to_host: c.to_host,
        });
    }
}

// ---- stats ----

/// Counters of one listener, with its name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ListenerStats {
    pub slot: u32,
    pub id: u32,
    pub name: String,
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: String,
    pub mode: String,
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    /// Live flows, summed over workers (each worker's count as of its last flow-table sweep).
    pub active_flows: u64,
}

/// Counters of one backend, with its identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackendStats {
    pub slot: u32,
    pub id: u32,
    pub pool: String,
    pub address: IpAddr,
    pub port: u16,
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    /// Live flows, summed over workers.
    pub active_flows: u64,
}

/// Packet and byte totals over all workers, or of one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TotalsReport {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Packets handed to the kernel through the exception path (DPDK's TAP).
    pub to_host: u64,
}

impl From<Totals> for TotalsReport {
    fn from(t: Totals) -> Self {
        TotalsReport {
            rx_packets: t.rx_packets,
            rx_bytes: t.rx_bytes,
            tx_packets: t.tx_packets,
            tx_bytes: t.tx_bytes,
            to_host: t.to_host,
        }
    }
}

/// One worker's counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkerStats {
    pub worker: u32,
    #[serde(flatten)]
    pub totals: TotalsReport,
    /// Sum of `drops`.
    pub dropped: u64,
    /// Drops by reason name (every reason, zeros included).
    pub drops: BTreeMap<String, u64>,
}

/// What `fiberlb-dataplane stats` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatsReport {
    pub region: PathBuf,
    pub instance_id: String,
    pub data_plane_pid: u32,
    pub applied_generation: u64,
    /// Milliseconds since the data plane's last heartbeat (`None`: never beat).
    pub data_plane_heartbeat_age_ms: Option<u64>,
    /// Milliseconds since the control plane's last heartbeat (`None`: never beat).
    pub control_plane_heartbeat_age_ms: Option<u64>,
    pub totals: TotalsReport,
    /// Drops by reason name (every reason, zeros included).
    pub drops: BTreeMap<String, u64>,
    /// Per worker: the data plane's workers when the slots file says how many, else every
    /// counter block that counted anything.
    pub workers: Vec<WorkerStats>,
    pub listeners: Vec<ListenerStats>,
    pub backends: Vec<BackendStats>,
    /// The control thread's counters, from the slots file (`None` when it is missing or
    /// belongs to another instance).
    pub control: Option<ControlCounts>,
    /// Generation the slot names belong to (`None`: no usable slots file, no per-object rows).
    pub slots_generation: Option<u64>,
    /// The NIC ports' link state and counters from `<region>.ports.json`, which the data
    /// plane rewrites every second. Empty unless that file is this instance's and fresh.
    pub ports: Vec<PortCounters>,
    /// Milliseconds since the ports file was written (`None`: no ports file of this instance).
    pub ports_age_ms: Option<u64>,
    /// The ports file is older than 5 s: the data plane stopped publishing (dead or stuck), so
    /// its numbers are not shown (`ports` is empty).
    pub ports_stale: bool,
}

/// The ports of this instance's `<region>.ports.json`: `(ports, age, stale)`.
fn read_ports(shm_path: &Path, instance_id: &str) -> (Vec<PortCounters>, Option<u64>, bool) {
    let Ok(f) = crate::port_stats::read_ports_file(&ports_path_for(shm_path)) else {
        return (Vec::new(), None, false);
    };
    if f.instance_id != instance_id {
        return (Vec::new(), None, false);
    }
    let now = monotonic_ns();
    let age = f.age_ms(now);
    if f.is_stale(now) {
        (Vec::new(), Some(age), true)
    } else {
        (f.ports, Some(age), false)
    }
}

fn age_ms(beat: u64) -> Option<u64> {
    (beat != 0).then(|| monotonic_ns().saturating_sub(beat) / 1_000_000)
}

/// Reads the counters of the data plane at `shm_path`, named through its slots file.
///
/// It maps the region as the control plane does, so it fails while a control plane is
/// attached (the region allows one); the error says so.
///
/// # Errors
/// The region is missing, invalid, or a control plane holds it.
pub fn read_stats(shm_path: &Path) -> Result<StatsReport, ControlError> {
    let region = Region::observe(shm_path).map_err(|source| ControlError::Stats {
        path: shm_path.to_path_buf(),
        source,
    })?;
    let h = region.header();
    let instance_id = format!("{:032x}", h.instance_id());
    let slots = SlotsFile::read_if_instance(&slots_path_for(shm_path), &instance_id);
    let (ports, ports_age_ms, ports_stale) = read_ports(shm_path, &instance_id);
    let c = region.counters();
    let t = c.totals();
    let drops = drops_by_name(|i| c.drops(i));
    let workers = worker_stats(&c, slots.as_ref().and_then(|s| s.workers));
    let (listeners, backends) = match &slots {
        Some(s) => (
            s.listeners
                .iter()
                .map(|l| {
                    let o = c.listener(l.slot);
                    ListenerStats {
                        slot: l.slot,
                        id: l.id,
                        name: l.name.clone(),
                        vip: l.vip,
                        port: l.port,
                        protocol: l.protocol.clone(),
                        mode: l.mode.clone(),
                        packets: o.packets,
                        bytes: o.bytes,
                        new_flows: o.new_flows,
                        active_flows: o.active_flows,
                    }
                })
                .collect(),
            s.backends
                .iter()
                .map(|b| {
                    let o = c.backend(b.slot);
                    BackendStats {
                        slot: b.slot,
                        id: b.id,
                        pool: b.pool.clone(),
                        address: b.address,
                        port: b.port,
                        packets: o.packets,
                        bytes: o.bytes,
                        new_flows: o.new_flows,
                        active_flows: o.active_flows,
                    }
                })
                .collect(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    Ok(StatsReport {
        region: shm_path.to_path_buf(),
        instance_id,
        data_plane_pid: h.data_plane_pid(),
        applied_generation: h.applied_generation(),
        data_plane_heartbeat_age_ms: age_ms(h.data_plane_heartbeat()),
        control_plane_heartbeat_age_ms: age_ms(h.control_plane_heartbeat()),
        totals: t.into(),
        drops,
        workers,
        listeners,
        backends,
        control: slots.as_ref().map(|s| s.control),
        slots_generation: slots.as_ref().map(|s| s.generation),
        ports,
        ports_age_ms,
        ports_stale,
    })
}

/// Every drop reason this build names (zeros included), plus any unnamed slot a newer data
/// plane counted in.
fn drops_by_name(read: impl Fn(usize) -> u64) -> BTreeMap<String, u64> {
    (0..DROP_REASONS)
        .filter_map(|i| {
            let v = read(i);
            (i < DropReason::COUNT || v > 0).then(|| (drop_reason_label(i), v))
        })
        .collect()
}

/// Per-worker rows: `running` workers when the slots file says, else the blocks that counted
/// anything ([`CountersReader::workers_in_use`]).
fn worker_stats(c: &CountersReader<'_>, running: Option<u32>) -> Vec<WorkerStats> {
    let n = running
        .unwrap_or_else(|| c.workers_in_use())
        .min(c.workers());
    (0..n)
        .filter_map(|w| c.worker(w).map(|r| (w, r)))
        .map(|(w, r)| {
            let drops = drops_by_name(|i| r.drops(i));
            WorkerStats {
                worker: w,
                totals: r.totals().into(),
                dropped: drops.values().fold(0u64, |a, v| a.wrapping_add(*v)),
                drops,
            }
        })
        .collect()
}

/// The report as a human-readable table.
pub fn render_table(r: &StatsReport) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let age = |a: Option<u64>| a.map_or("never".to_string(), |ms| format!("{ms} ms ago"));
    let _ = writeln!(o, "region      {}", r.region.display());
    let _ = writeln!(
        o,
        "instance    {} (pid {})",
        r.instance_id, r.data_plane_pid
    );
    let _ = writeln!(o, "generation  {}", r.applied_generation);
    let _ = writeln!(
        o,
        "heartbeats  data plane {}, control plane {}",
        age(r.data_plane_heartbeat_age_ms),
        age(r.control_plane_heartbeat_age_ms)
    );
    let t = &r.totals;
    let _ = writeln!(
        o,
        "rx          {} packets, {} bytes\ntx          {} packets, {} bytes\nto host     {} packets",
        t.rx_packets, t.rx_bytes, t.tx_packets, t.tx_bytes, t.to_host
    );
    let drops: Vec<_> = r.drops.iter().filter(|(_, v)| **v > 0).collect();
    if drops.is_empty() {
        let _ = writeln!(o, "drops       none");
    } else {
        let _ = writeln!(o, "drops");
        for (name, v) in drops {
            let _ = writeln!(o, "  {name:<24} {v:>14}");
        }
    }
    if !r.workers.is_empty() {
        let _ = writeln!(
            o,
            "\n{:<7} {:>14} {:>16} {:>14} {:>16} {:>12} {:>12}  TOP DROP REASON",
            "WORKER", "RX PACKETS", "RX BYTES", "TX PACKETS", "TX BYTES", "TO HOST", "DROPPED"
        );
        for w in &r.workers {
            let top = w
                .drops
                .iter()
                .filter(|(_, v)| **v > 0)
                .max_by_key(|(_, v)| **v)
                .map_or("-".to_string(), |(k, v)| format!("{k} ({v})"));
            let t = &w.totals;
            let _ = writeln!(
                o,
                "{:<7} {:>14} {:>16} {:>14} {:>16} {:>12} {:>12}  {top}",
                w.worker, t.rx_packets, t.rx_bytes, t.tx_packets, t.tx_bytes, t.to_host, w.dropped
            );
        }
        let _ = writeln!(o);
    }
    render_ports(&mut o, r);
    if let Some(c) = &r.control {
        let _ = writeln!(
            o,
            "control     applied {}, rejected: corrupt {}, out-of-order {}, protocol {}, invalid {}; aborted {}, stale {}",
            c.applied,
            c.rejected_corrupt,
            c.rejected_out_of_order,
            c.rejected_protocol,
            c.rejected_invalid,
            c.aborted,
            c.stale_discarded
        );
    }
    if r.slots_generation.is_none() {
        let _ = writeln!(
            o,
            "(no slots file for this instance: per-listener and per-backend counters unnamed)"
        );
        return o;
    }
    let _ = writeln!(
        o,
        "\n{:<5} {:<32} {:<28} {:<5} {:>14} {:>16} {:>10} {:>12}",
        "SLOT",
        "LISTENER",
        "VIP:PORT/PROTO",
        "MODE",
        "PACKETS",
        "BYTES",
        "NEW FLOWS",
        "ACTIVE FLOWS"
    );
    for l in &r.listeners {
        let _ = writeln!(
            o,
            "{:<5} {:<32} {:<28} {:<5} {:>14} {:>16} {:>10} {:>12}",
            l.slot,
            l.name,
            format!("{}/{}", sock(l.vip, l.port), l.protocol),
            l.mode,
            l.packets,
            l.bytes,
            l.new_flows,
            l.active_flows
        );
    }
    let _ = writeln!(
        o,
        "\n{:<5} {:<8} {:<20} {:<28} {:>14} {:>16} {:>10} {:>12}",
        "SLOT", "ID", "POOL", "BACKEND", "PACKETS", "BYTES", "NEW FLOWS", "ACTIVE FLOWS"
    );
    for b in &r.backends {
        let _ = writeln!(
            o,
            "{:<5} {:<8} {:<20} {:<28} {:>14} {:>16} {:>10} {:>12}",
            b.slot,
            b.id,
            b.pool,
            sock(b.address, b.port),
            b.packets,
            b.bytes,
            b.new_flows,
            b.active_flows
        );
    }
    o
}

/// The ports table (or why there is none).
fn render_ports(o: &mut String, r: &StatsReport) {
    use std::fmt::Write as _;
    match (r.ports_age_ms, r.ports_stale) {
        (None, _) => {
            let _ = writeln!(
                o,
                "ports       none published by this data plane (stopped, or just starting)\n"
            );
            return;
        }
        (Some(age), true) => {
            let _ = writeln!(
                o,
                "ports       stale: last published {:.1} s ago (more than {} s): the data plane \
                 is not publishing, its numbers are not shown\n",
                age as f64 / 1000.0,
                STALE_AFTER_MS / 1000
            );
            return;
        }
        (Some(age), false) => {
            let _ = writeln!(o, "ports       published {age} ms ago");
        }
    }
    let _ = writeln!(
        o,
        "{:<14} {:<6} {:<16} {:<10} {:>14} {:>16} {:>14} {:>16} {:>10} {:>9} {:>9} {:>9}",
        "PORT",
        "DRIVER",
        "DEVICE",
        "LINK",
        "RX PACKETS",
        "RX BYTES",
        "TX PACKETS",
        "TX BYTES",
        "RX MISSED",
        "RX ERRS",
        "TX ERRS",
        "RX NOMBUF"
    );
    for p in &r.ports {
        let link = match (p.link_up, p.speed_mbps) {
            (false, _) => "down".to_string(),
            (true, Some(s)) if s >= 1000 && s % 1000 == 0 => format!("up {}G", s / 1000),
            (true, Some(s)) => format!("up {s}M"),
            (true, None) => "up".to_string(),
        };
        let _ = writeln!(
            o,
            "{:<14} {:<6} {:<16} {:<10} {:>14} {:>16} {:>14} {:>16} {:>10} {:>9} {:>9} {:>9}",
            p.name,
            p.driver,
            p.device,
            link,
            p.rx_packets,
            p.rx_bytes,
            p.tx_packets,
            p.tx_bytes,
            p.rx_missed,
            p.rx_errors,
            p.tx_errors,
            p.rx_nombuf.map_or("-".to_string(), |v| v.to_string())
        );
    }
    for p in &r.ports {
        if let Some(x) = &p.xsk {
            let _ = write!(
                o,
                "  {}: {} AF_XDP socket(s): rx_ring_full {}, fill_ring_empty {}, rx_dropped {}, \
                 invalid descs rx {} tx {}",
                p.name,
                x.sockets,
                x.rx_ring_full,
                x.rx_fill_ring_empty,
                x.rx_dropped,
                x.rx_invalid_descs,
                x.tx_invalid_descs
            );
            if let Some(d) = &p.xdp {
                let _ = write!(
                    o,
                    "; XDP redirected {}, passed {} (parse errors {}, no socket {})",
                    d.redirected, d.passed, d.parse_errors, d.no_socket
                );
            }
            let _ = writeln!(o);
        }
        if let Some(e) = &p.error {
            let _ = writeln!(o, "  {}: not all counters could be read: {e}", p.name);
        }
    }
    let _ = writeln!(o);
}

fn sock(a: IpAddr, port: u16) -> String {
    match a {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// `fiberlb-dataplane stats [--json]`: reads and prints.
///
/// # Errors
/// See [`read_stats`].
pub fn print_stats(shm_path: &Path, json: bool) -> Result<(), ControlError> {
    let r = read_stats(shm_path)?;
    if json {
        let s = serde_json::to_string_pretty(&r).map_err(|e| ControlError::SlotsFile {
            path: shm_path.to_path_buf(),
            reason: e.to_string(),
        })?;
        println!("{s}");
    } else {
        print!("{}", render_table(&r));
    }
    Ok(())
}

/// The workers' counter sink: their copy into the shared-memory counters area.
impl crate::worker::CounterSink for CounterPublisher {
    fn publish(&mut self, counters: &WorkerCounters) {
        CounterPublisher::publish(self, counters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow_table::{FlowKey, FlowState, FlowTable, Timeouts};
    use fiberlb_shared::shm::counters::CountersLayout;
    use fiberlb_shared::shm::region::RegionConfig;

    fn temp_region(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fiberlb-unit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("region")
    }

    /// A worker's counters with `flows` live flows of listener slot 0 on backend slot 1,
    /// counted by a complete sweep.
    fn counters_with_flows(flows: u32, rx: u64, to_host: u64) -> WorkerCounters {
        let mut c = WorkerCounters::new(4, 4);
        let mut t = FlowTable::new(256, Timeouts::default()).unwrap();
        for i in 0..flows {
            let mut client = [0u8; 16];
            client[..4].copy_from_slice(&i.to_be_bytes());
            let k = FlowKey {
                client,
                listener: 0,
                port: 1000,
            };
            // Backend handle: slot 1, incarnation 3.
            t.insert(u64::from(i), &k, (3 << 24) | 1, FlowState::TcpOpen, 0);
        }
        while !t.sweep(&mut c.flow_sweep, 1, 1000) {}
        c.rx_packets = rx;
        c.rx_bytes = rx * 64;
        c.forwarded = rx - 1;
        c.to_host = to_host;
        c.drop(DropReason::NoListener);
        c.tx_failed(0);
        c.listeners[0].packets = rx;
        c.backends[1].packets = rx - 1;
        c.backends[1].bytes = (rx - 1) * 64;
        c
    }

    #[test]
    fn publish_then_stats_show_active_flows_to_host_and_workers() {
        let path = temp_region("stats");
        let region = Arc::new(
            Region::create(
                &path,
                &RegionConfig {
                    ring_capacity: 8,
                    counters: CountersLayout {
                        workers: 4,
                        listeners: 4,
                        backends: 4,
                    },
                },
            )
            .unwrap(),
        );
        let high_water = Arc::new(HighWater::default());
        high_water.listeners.store(1, Ordering::Relaxed);
        high_water.backends.store(2, Ordering::Relaxed);
        for (w, flows, rx, to_host) in [(0u32, 5u32, 10u64, 1u64), (1, 7, 20, 2)] {
            let p = CounterPublisher {
                region: region.clone(),
                worker: w,
                high_water: high_water.clone(),
            };
            let mut c = counters_with_flows(flows, rx, to_host);
            c.tx_failed(u64::from(w)); // worker 1: one packet the TX ring refused
            p.publish(&c);
        }
        // Without a slots file: totals, drops and the workers that counted anything.
        let r = read_stats(&path).unwrap();
        assert_eq!(r.totals.rx_packets, 30);
        assert_eq!(r.totals.to_host, 3);
        assert_eq!(r.totals.tx_packets, 9 + 18);
        assert_eq!(r.drops["tx_ring_full"], 1);
        assert_eq!(r.drops.len(), DropReason::COUNT);
        assert_eq!(r.workers.len(), 2, "blocks 2 and 3 never counted");
        assert_eq!(r.workers[1].totals.rx_packets, 20);
        assert_eq!(r.workers[1].totals.to_host, 2);
        assert_eq!(r.workers[1].drops["tx_ring_full"], 1);
        assert_eq!(r.workers[1].drops["no_listener"], 1);
        assert_eq!(r.workers[1].dropped, 2);
        assert_eq!(r.workers[0].dropped, 1);
        assert!(r.listeners.is_empty());

        // With the slots file: named rows with active flows, and as many workers as it says.
        let slots = SlotsFile {
            instance_id: format!("{:032x}", region.header().instance_id()),
            generation: 1,
            control: ControlCounts::default(),
            workers: Some(3),
            listeners: vec![ListenerSlot {
                slot: 0,
                id: 9,
                name: "web/80/tcp".into(),
                vip: "192.0.2.1".parse().unwrap(),
                port: 80,
                protocol: "tcp".into(),
                mode: "dsr".into(),
            }],
            backends: vec![BackendSlot {
                slot: 1,
                id: 4,
                pool: "web".into(),
                address: "10.0.0.4".parse().unwrap(),
                port: 80,
            }],
        };
        slots.write(&slots_path_for(&path)).unwrap();
        let r = read_stats(&path).unwrap();
        assert_eq!(r.workers.len(), 3);
        assert_eq!(r.workers[2].totals, TotalsReport::default());
        assert_eq!(r.listeners[0].active_flows, 12);
        assert_eq!(r.listeners[0].packets, 30);
        assert_eq!(r.backends[0].active_flows, 12);
        assert_eq!(r.backends[0].new_flows, 0);
        let table = render_table(&r);
        assert!(table.contains("ACTIVE FLOWS"), "{table}");
        assert!(table.contains("to host     3 packets"), "{table}");
        assert!(table.contains("TOP DROP REASON"), "{table}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["workers"][1]["to_host"], 2);
        assert_eq!(json["workers"][1]["drops"]["tx_ring_full"], 1);
        assert_eq!(json["listeners"][0]["active_flows"], 12);
        assert_eq!(json["totals"]["to_host"], 3);
        drop(region);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn stats_show_live_ports_and_hide_stale_or_foreign_ones() {
        use crate::port_stats::{write_ports_file, PortStatsPublisher};
        use fiberlb_shared::port_stats::PortsFile;
        let path = temp_region("ports");
        let region = Region::create(
            &path,
            &RegionConfig {
                ring_capacity: 8,
                counters: CountersLayout {
                    workers: 1,
                    listeners: 1,
                    backends: 1,
                },
            },
        )
        .unwrap();
        let r = read_stats(&path).unwrap();
        assert_eq!(
            (r.ports.len(), r.ports_age_ms, r.ports_stale),
            (0, None, false)
        );
        assert!(render_table(&r).contains("none published"));

        let port = PortCounters {
            name: "client".into(),
            driver: "dpdk".into(),
            device: "net_af_packet0".into(),
            link_up: true,
            speed_mbps: Some(10_000),
            rx_packets: 42,
            rx_missed: 7,
            rx_nombuf: Some(1),
            ..PortCounters::default()
        };
        let mut p = PortStatsPublisher::new(&path, region.header().instance_id());
        p.publish(vec![port.clone()]);
        let r = read_stats(&path).unwrap();
        assert_eq!(r.ports, vec![port.clone()]);
        assert!(!r.ports_stale);
        assert!(r.ports_age_ms.unwrap() < STALE_AFTER_MS);
        let table = render_table(&r);
        assert!(table.contains("RX MISSED"), "{table}");
        assert!(table.contains("up 10G"), "{table}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["ports"][0]["rx_packets"], 42);
        assert_eq!(json["ports"][0]["link_up"], true);

        // The same file 6 s old: stale, numbers withheld.
        let mut f = crate::port_stats::read_ports_file(p.path()).unwrap();
        f.written_monotonic_ns = monotonic_ns().saturating_sub((STALE_AFTER_MS + 1000) * 1_000_000);
        write_ports_file(p.path(), &f).unwrap();
        let r = read_stats(&path).unwrap();
        assert!(r.ports_stale);
        assert!(r.ports.is_empty());
        assert!(r.ports_age_ms.unwrap() > STALE_AFTER_MS);
        assert!(render_table(&r).contains("stale"), "{}", render_table(&r));

        // Fresh but written by another instance (a previous data plane on this path): ignored.
        write_ports_file(
            p.path(),
            &PortsFile {
                instance_id: "someone else".into(),
                written_monotonic_ns: monotonic_ns(),
                ports: vec![port],
                ..PortsFile::default()
            },
        )
        .unwrap();
        let r = read_stats(&path).unwrap();
        assert_eq!((r.ports.len(), r.ports_age_ms), (0, None));
        drop(region);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn housekeeping_completes_sweeps_busy_slowly_idle_quickly() {
        use crate::flow_table::{SWEEP_BUCKETS_BUSY, SWEEP_BUCKETS_IDLE, WAYS};
        use crate::pipeline::{Pipeline, PipelineConfig};
        let mut p = Pipeline::new(PipelineConfig {
            flow_capacity: 4 * SWEEP_BUCKETS_IDLE * WAYS,
            max_listeners: 4,
            max_backends: 4,
            ..PipelineConfig::default()
        })
        .unwrap();
        let buckets = p.flow_table().capacity() / WAYS;
        let busy_calls = buckets / SWEEP_BUCKETS_BUSY;
        for _ in 0..busy_calls - 1 {
            p.housekeeping(0, 32);
        }
        assert_eq!(p.counters().flow_sweep.completed_passes(), 0);
        p.housekeeping(0, 32);
        assert_eq!(p.counters().flow_sweep.completed_passes(), 1);
        for _ in 0..buckets / SWEEP_BUCKETS_IDLE {
            p.housekeeping(0, 0);
        }
        assert_eq!(p.counters().flow_sweep.completed_passes(), 2);
    }

    #[test]
    fn slots_file_of_an_older_data_plane_still_reads() {
        let old = r#"{"instance_id":"00","generation":1,"control":{"applied":1,
            "rejected_corrupt":0,"rejected_out_of_order":0,"rejected_protocol":0,
            "rejected_invalid":0,"aborted":0,"stale_discarded":0,"replies_dropped":0,
            "ring_errors":0},"listeners":[],"backends":[]}"#;
        let s: SlotsFile = serde_json::from_str(old).unwrap();
        assert_eq!(s.workers, None);
    }
}
