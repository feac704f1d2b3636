//! The data plane's control thread: reads commands from the shared-memory region, assembles
//! transactions, builds snapshots, publishes them to the workers and answers the control plane.
//!
//! It is not a worker: it polls the command ring and sleeps about a millisecond when the ring is
//! empty, beats the region's heartbeat about every 100 ms, and does all allocation, Maglev
//! building and freeing of old snapshots. `Applied(gen)` is sent only after every worker is offline
//! (between bursts: its next burst loads the new snapshot) or in a burst begun with the new
//! snapshot in force, so it means "every worker forwards by generation `gen`".
//!
//! One [`SnapshotBuilder`] serves the life of the process: listener and backend slots stay
//! stable across updates, which is what keeps established flows on their backend and counters
//! on their object.
//!
//! Also here: the `<region>.slots.json` file that names counter slots (its format is
//! [`fiberlb_shared::slots`]), and in [`counters`] the [`CounterPublisher`] through which each
//! worker thread copies its counters into the region. The offline `fiberlb-dataplane stats`
//! command, which reads them back, is [`crate::stats`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fiberlb_shared::model::ServiceSet;
use fiberlb_shared::shm::channel::RecvError;
use fiberlb_shared::shm::message::{Message, RejectCode};
use fiberlb_shared::shm::region::{Region, RegionError, RegionReceiver, RegionSender};
use fiberlb_shared::shm::transaction::{full_replay, Assembler, Outcome};
pub use fiberlb_shared::slots::{
    slots_path_for, BackendSlot, ControlCounts, ListenerSlot, SlotsFile,
};

use crate::publish::{Publisher, ReaderHandle};
use crate::snapshot::{Snapshot, SnapshotBuilder, SnapshotError};

/// Messages handled per [`ControlThread::poll_once`] before the loop beats and looks at the
/// stop flag again.
mod counters;

pub use counters::CounterPublisher;
pub(crate) use counters::HighWater;

const MAX_MESSAGES_PER_POLL: usize = 256;

/// The control thread's nice value: it sleeps almost always and works for a few hundred µs per
/// commit, but a commit waits for it; on housekeeping CPUs shared with busy processes (on a
/// 2-core machine, a packet generator at 100 %) a nice-0 thread waited milliseconds for its
/// turn (commit -> Applied p50 2.0 ms under load, 0.3 ms idle). The fallback of
/// [`CONTROL_FIFO`].
pub const CONTROL_NICE: i32 = -10;

/// The control thread's real-time priority (SCHED_FIFO, the lowest level) when it has
/// housekeeping CPUs of its own. At nice -10 it still waited up to 3.3 ms for CPU 0 behind two
/// nice-0 threads that switched every 20 µs (`perf sched timehist` of the bench's full-load
/// update: woken by its 1 ms timer, it was not picked until 3.3 ms later); the full-load
/// commit -> Applied p99 was 0.76-3.1 ms at nice -10 against 0.30-1.0 ms at SCHED_FIFO 1 over
/// four alternating runs each, idle p99 0.51-0.65 against 0.29-0.42 ms. Never on a worker's
/// core (it would preempt the busy-polling worker for a whole snapshot build). The kernel's
/// real-time throttling (`kernel.sched_rt_runtime_us`, 95 % by default) bounds what a long
/// build (a full resync of thousands of pools) takes from the housekeeping core; where that
/// matters more than update latency, `RestrictRealtime=yes` in the unit keeps it at
/// [`CONTROL_NICE`].
pub const CONTROL_FIFO: i32 = 1;

/// An apply that takes this long is logged with the time of each step.
const SLOW_APPLY: Duration = Duration::from_millis(2);

/// Settings of the control thread.
#[derive(Clone, Debug)]
pub struct ControlOptions {
    /// Number of workers (one [`ReaderHandle`] and one counters block each).
    pub workers: usize,
    /// Listener and backend slots the snapshots may use (the pipeline's counter arrays).
    pub max_listeners: usize,
    pub max_backends: usize,
    /// Longest sleep when the command ring is empty. The control plane rings the region's
    /// command doorbell after sending (a futex the thread sleeps on), so a commit is seen at
    /// once; this bounds the wait for a writer that does not ring it. (Polling every 100 µs
    /// instead woke the housekeeping core 10 000 times a second: on a 2-core machine that
    /// slowed whatever shared it — the bench's generator sent ~10 % less.)
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
        let t0 = Instant::now();
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
        let built = t0.elapsed();
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
        let quiescent = t0.elapsed();
        self.applied_set = services;
        self.applied_gen = generation;
        self.region.header().set_applied_generation(generation);
        bump(&self.stats.applied);
        if let Some(hook) = self.hook.as_mut() {
            hook(self.publisher.current());
        }
        let hooked = t0.elapsed();
        self.slots_dirty = true;
        // The map must name the new slots before anyone reads their counters; a write error
        // only costs names in `stats`, so it does not fail the transaction.
        let _ = self.write_slots();
        let total = t0.elapsed();
        if total >= SLOW_APPLY {
            eprintln!(
                "fiberlb-dataplane: generation {generation} took {} us to apply: build {} us, \
                 workers' quiescent points {} us, XDP maps {} us, slots file {} us",
                total.as_micros(),
                built.as_micros(),
                (quiescent - built).as_micros(),
                (hooked - quiescent).as_micros(),
                (total - hooked).as_micros()
            );
        }
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
            // Read before looking at the ring: a command sent after the look rings it and
            // the wait below returns at once.
            let bell = self.region.header().command_doorbell();
            let n = self.poll_once(stop);
            self.housekeeping(&mut written);
            if n == 0 {
                self.region.wait_for_commands(bell, self.opts.poll_interval);
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
                // Real time only on CPUs no worker polls (see CONTROL_FIFO).
                let mut own_cpus = false;
                if !self.opts.cpus.is_empty() {
                    match crate::cpus::allow_cpus(&self.opts.cpus) {
                        Ok(()) => own_cpus = true,
                        Err(e) => {
                            eprintln!("fiberlb-dataplane: control thread: {e}; it runs anywhere")
                        }
                    }
                }
                let prio =
                    crate::cpus::raise_priority(own_cpus.then_some(CONTROL_FIFO), CONTROL_NICE);
                if own_cpus {
                    eprintln!(
                        "fiberlb-dataplane: control thread on CPUs {:?} at {prio}",
                        self.opts.cpus
                    );
                } else {
                    eprintln!(
                        "fiberlb-dataplane: control thread on any of the process's CPUs at {prio}"
                    );
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

#[cfg(test)]
mod tests {
    use super::*;

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
        // Idle rounds sweep once per millisecond: more rounds in the same ms do nothing.
        for ms in 1..buckets / SWEEP_BUCKETS_IDLE {
            p.housekeeping(ms as u32, 0);
            p.housekeeping(ms as u32, 0);
        }
        assert_eq!(p.counters().flow_sweep.completed_passes(), 1);
        p.housekeeping((buckets / SWEEP_BUCKETS_IDLE) as u32, 0);
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
