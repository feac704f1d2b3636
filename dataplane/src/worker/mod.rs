//! Poll-mode workers: one thread per configured core, pinned to it, forwarding between the
//! ports of one backend.
//!
//! - this module: what every backend's worker shares — what it needs from the control thread
//!   ([`SnapshotReader`], [`CounterSink`]), its core ([`WorkerCore`]: pipeline, reader, sink,
//!   settings, statistics), the loop ([`run_loop`]) and the one verdict routine ([`dispatch`],
//!   [`count_unsent`]) that sends each packet where the pipeline's verdict says.
//! - [`afxdp`]: the AF_XDP poll round ([`afxdp::Worker`]) and the XDP program's map keys.
//! - `dpdk` (cargo feature `dpdk`): the DPDK poll round, with the exception path to the host.
//! - [`replay`]: a pcap capture run through the pipeline on the calling thread (the `replay`
//!   subcommand, tests).
//!
//! Threads: a worker is built on the main thread (so every setup error surfaces before any
//! packet is touched), then moved to its pinned worker thread ([`crate::cpus::pin_to_core`]),
//! which runs [`run_loop`] until the stop flag is set. One round, per port: reap TX
//! completions, receive up to a burst, run the pipeline over it, send `ToBackend` packets on
//! the backend-facing port and `ToClient` packets on the client-facing port (the same port
//! when one port has role `both`), free dropped ones. The worker holds the snapshot in force
//! only while the pipeline runs over a burst and is offline for reclamation the rest of the
//! time (so a commit never waits for a worker descheduled in a syscall); about every 100 ms
//! it publishes its counters.
//!
//! Nothing in the loop allocates or locks. The only syscalls are the wake-ups a backend's
//! driver asks for (AF_XDP `sendto` in copy mode) and, with idle back-off, the sleep.
//!
//! The worker is generic over [`SnapshotReader`] and [`CounterSink`] so it depends only on
//! what it needs from the control thread's publication scheme: the control thread implements
//! them (this module imports nothing from `control`).

// The per-packet path never panics, as in the pipeline (see `crate::pipeline`): no `[]`
// indexing or slicing that can fail, no `unwrap`/`expect`/`panic!`/`unreachable!`. Only the
// `#[cfg(test)]` modules allow them.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented
)]

pub mod afxdp;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod replay;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::pipeline::{DropReason, Pipeline, Verdict, WorkerCounters, BURST};
use crate::snapshot::Snapshot;

/// Empty rounds before an idle worker starts sleeping.
pub const IDLE_ROUNDS: u32 = 256;
/// Longest idle sleep.
pub const MAX_IDLE_SLEEP: Duration = Duration::from_millis(1);
/// How often counters are published.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// What a worker needs from the snapshot publication: the snapshot in force for a burst, and
/// an offline report when it holds none any more, so old snapshots can be freed and commits
/// need not wait for it.
pub trait SnapshotReader {
    /// The snapshot to use for this burst (back online first if offline); stays valid until
    /// [`Self::offline`].
    fn current(&mut self) -> &Snapshot;
    /// The worker holds no reference into any snapshot until its next [`Self::current`]:
    /// writers need not wait for it.
    fn offline(&mut self);
}

/// Where a worker's counters go (shared memory, every [`PUBLISH_EVERY`]).
pub trait CounterSink {
    fn publish(&mut self, counters: &WorkerCounters);
}

/// The control thread's QSBR publication ([`crate::publish`]).
impl SnapshotReader for crate::publish::ReaderHandle<Snapshot> {
    #[inline]
    fn current(&mut self) -> &Snapshot {
        crate::publish::ReaderHandle::current(self)
    }
    #[inline]
    fn offline(&mut self) {
        crate::publish::ReaderHandle::offline(self)
    }
}

/// A fixed snapshot with nothing to reclaim (tests, offline tools).
#[derive(Debug)]
pub struct FixedSnapshot(pub std::sync::Arc<Snapshot>);

impl SnapshotReader for FixedSnapshot {
    fn current(&mut self) -> &Snapshot {
        &self.0
    }
    fn offline(&mut self) {}
}

/// Discards counters.
#[derive(Debug, Default)]
pub struct NoCounters;

impl CounterSink for NoCounters {
    fn publish(&mut self, _: &WorkerCounters) {}
}

/// The worker's own statistics, besides the pipeline's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    pub rounds: u64,
    pub rx_bursts: u64,
    /// Forwarded packets the TX ring had no room for (freed).
    pub tx_full_drops: u64,
    /// Times the worker slept idle.
    pub idle_sleeps: u64,
}

/// Loop settings.
#[derive(Clone, Copy, Debug)]
pub struct WorkerSettings {
    /// Packets per receive burst (1..=32).
    pub burst: usize,
    /// Sleep with exponential back-off after [`IDLE_ROUNDS`] empty rounds.
    pub idle_backoff: bool,
}

/// What every worker has besides its packet I/O: the pipeline, the snapshot reader, the
/// counter sink, the loop settings and statistics — the state [`run_loop`] drives.
pub(crate) struct WorkerCore<R, C> {
    pub(crate) pipeline: Pipeline,
    pub(crate) reader: R,
    pub(crate) sink: C,
    pub(crate) settings: WorkerSettings,
    pub(crate) stats: WorkerStats,
}

impl<R, C> WorkerCore<R, C> {
    /// The core of worker `index` over `ports` ports (`client_port` faces clients,
    /// `backend_port` backends).
    ///
    /// # Errors
    /// When a port index is out of range or `burst` is not 1..=32 (the message, for the
    /// backend's `InvalidConfig`).
    pub(crate) fn new(
        index: usize,
        ports: usize,
        (client_port, backend_port): (usize, usize),
        pipeline: Pipeline,
        reader: R,
        sink: C,
        settings: WorkerSettings,
    ) -> Result<Self, String> {
        if client_port >= ports || backend_port >= ports {
            return Err(format!(
                "worker {index}: client port {client_port} / backend port {backend_port} out of \
                 range for {ports} ports"
            ));
        }
        if settings.burst == 0 || settings.burst > BURST {
            return Err(format!("burst {} must be 1-{BURST}", settings.burst));
        }
        Ok(WorkerCore {
            pipeline,
            reader,
            sink,
            settings,
            stats: WorkerStats::default(),
        })
    }
}

impl<R: SnapshotReader, C> WorkerCore<R, C> {
    /// Runs the pipeline over one received burst with the snapshot in force, then takes the
    /// worker out of reclamation until its next burst.
    ///
    /// The worker holds a snapshot only while the pipeline runs: the TX kicks, fill-ring
    /// wake-ups and completion reaping around it are syscalls (copy-mode AF_XDP sends the
    /// packet inside `sendto`, most of a loaded worker's time) during which the scheduler may
    /// run something else on the worker's core. A worker offline there is not waited for, so
    /// a commit counts as applied as soon as every worker is between bursts or has finished
    /// the burst it was in: its next burst loads the new snapshot ([`SnapshotReader::current`]
    /// brings it back online first). Costs one store and, on the way back, one load, one
    /// store and one full fence per burst, never per packet.
    #[inline]
    pub(crate) fn process_burst<B: crate::packet::Burst + ?Sized>(
        &mut self,
        pkts: &mut B,
        verdicts: &mut [Verdict],
        now_ms: u32,
    ) -> usize {
        let snap = self.reader.current();
        let done = self.pipeline.process_burst(snap, pkts, verdicts, now_ms);
        self.reader.offline();
        done
    }
}

/// A backend's worker as [`run_loop`] sees it: one poll round over its ports, and its core.
pub(crate) trait PollRound {
    type Reader: SnapshotReader;
    type Sink: CounterSink;
    /// One round over every port; returns the packets received.
    fn poll_once(&mut self, now_ms: u32) -> usize;
    fn core(&mut self) -> &mut WorkerCore<Self::Reader, Self::Sink>;
}

/// The worker loop of every backend, until `stop` is set: polls, runs the pipeline's
/// housekeeping, stays offline for reclamation outside its bursts
/// ([`WorkerCore::process_burst`]), publishes counters every [`PUBLISH_EVERY`], backs off
/// when idle (if configured). Publishes the counters once more
/// before returning. Generic, so each backend's round is inlined into its own loop.
pub(crate) fn run_loop<W: PollRound>(w: &mut W, stop: &AtomicBool) {
    let start = Instant::now();
    let mut last_publish = start;
    let mut empty_rounds = 0u32;
    let mut sleep = Duration::from_micros(1);
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        // Wraps after ~49 days; the flow table compares times with wrapping arithmetic.
        let now_ms = now.duration_since(start).as_millis() as u32;
        let got = w.poll_once(now_ms);
        let c = w.core();
        c.pipeline.housekeeping(now_ms, got);
        // Between rounds the worker holds no snapshot (`process_burst` already went offline
        // after each burst; this covers a round without one).
        c.reader.offline();
        c.stats.rounds += 1;
        if now.duration_since(last_publish) >= PUBLISH_EVERY {
            c.sink.publish(c.pipeline.counters());
            last_publish = now;
        }
        if got > 0 {
            empty_rounds = 0;
            sleep = Duration::from_micros(1);
        } else if c.settings.idle_backoff {
            empty_rounds = empty_rounds.saturating_add(1);
            if empty_rounds >= IDLE_ROUNDS {
                // Offline already: the sleep holds no commit up.
                std::thread::sleep(sleep);
                c.stats.idle_sleeps += 1;
                sleep = (sleep * 2).min(MAX_IDLE_SLEEP);
            }
        }
    }
    let c = w.core();
    c.sink.publish(c.pipeline.counters());
}

/// Where the packets of one received burst go: a backend's side of [`dispatch`].
pub(crate) trait Outputs {
    /// A backend's handle of one packet (a UMEM descriptor, an mbuf pointer).
    type Pkt: Copy;
    /// Queue for the backend-facing port.
    fn to_backend(&mut self, p: Self::Pkt);
    /// Queue for the client-facing port.
    fn to_client(&mut self, p: Self::Pkt);
    /// Queue for the host (exception path); a backend without one frees it like a drop.
    fn to_host(&mut self, p: Self::Pkt);
    /// Free it.
    fn drop_pkt(&mut self, p: Self::Pkt);
}

/// The verdict routine of every worker: packet `i` of `pkts` goes where `verdicts[i]` says;
/// packets the pipeline did not reach (`i >= done`) are dropped as malformed.
#[inline]
pub(crate) fn dispatch<O: Outputs>(
    pkts: &[O::Pkt],
    verdicts: &[Verdict],
    done: usize,
    out: &mut O,
) {
    for (i, &p) in pkts.iter().enumerate() {
        let v = match verdicts.get(i) {
            Some(&v) if i < done => v,
            _ => Verdict::Drop(DropReason::Malformed),
        };
        match v {
            Verdict::ToBackend => out.to_backend(p),
            Verdict::ToClient => out.to_client(p),
            Verdict::ToHost => out.to_host(p),
            Verdict::Drop(_) => out.drop_pkt(p),
        }
    }
}

/// Accounts `unsent` forwarded packets a TX queue had no room for even after one retry (they
/// were freed): the worker's `tx_full_drops` and the pipeline's `tx_ring_full` drop reason.
#[inline]
pub(crate) fn count_unsent(stats: &mut WorkerStats, pipeline: &mut Pipeline, unsent: usize) {
    stats.tx_full_drops += unsent as u64;
    if unsent > 0 {
        pipeline.counters_mut().tx_failed(unsent as u64);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::snapshot::SnapshotBuilder;
    use fiberlb_shared::services::parse_services;

    const SERVICES: &str = r#"
loadbalancers:
  - name: web
    vip: 10.0.0.10
    listeners:
      - {port: 80, protocol: tcp, mode: nat, pool: web}
      - {port: 53, protocol: udp, mode: dsr, pool: dns}
pools:
  - name: web
    backends:
      - {address: 10.1.0.1, port: 8080}
      - {address: 10.1.0.2, port: 8080}
  - name: dns
    backends:
      - {address: 10.1.0.3, port: 53, mac: "02:00:00:00:00:03"}
"#;

    /// A backend whose rounds receive `script[round]` packets (0 once it runs out) and which
    /// sets `stop` after `rounds` rounds.
    struct Scripted<'a> {
        core: WorkerCore<FixedSnapshot, CountPublishes>,
        script: &'a [usize],
        round: usize,
        rounds: usize,
        stop: &'a AtomicBool,
    }

    #[derive(Default)]
    struct CountPublishes(u32);

    impl CounterSink for CountPublishes {
        fn publish(&mut self, _: &WorkerCounters) {
            self.0 += 1;
        }
    }

    impl PollRound for Scripted<'_> {
        type Reader = FixedSnapshot;
        type Sink = CountPublishes;
        fn poll_once(&mut self, _now_ms: u32) -> usize {
            let got = self.script.get(self.round).copied().unwrap_or(0);
            self.round += 1;
            if self.round >= self.rounds {
                self.stop.store(true, Ordering::Relaxed);
            }
            got
        }
        fn core(&mut self) -> &mut WorkerCore<FixedSnapshot, CountPublishes> {
            &mut self.core
        }
    }

    fn core(idle_backoff: bool) -> WorkerCore<FixedSnapshot, CountPublishes> {
        let set = parse_services(SERVICES).unwrap();
        let snap = SnapshotBuilder::new(16, 16).build(&set, 1).unwrap();
        core_with(FixedSnapshot(std::sync::Arc::new(snap)), idle_backoff)
    }

    /// A worker core of two ports over `reader`, with a 1024-flow pipeline.
    fn core_with<R>(reader: R, idle_backoff: bool) -> WorkerCore<R, CountPublishes> {
        let pipeline = Pipeline::new(crate::pipeline::PipelineConfig {
            flow_capacity: 1024,
            ..Default::default()
        })
        .unwrap();
        let settings = WorkerSettings {
            burst: BURST,
            idle_backoff,
        };
        WorkerCore::new(0, 2, (0, 1), pipeline, reader, CountPublishes(0), settings).unwrap()
    }

    #[test]
    fn run_loop_counts_rounds_backs_off_when_idle_and_publishes_at_the_end() {
        let stop = AtomicBool::new(false);
        let rounds = IDLE_ROUNDS as usize + 3;
        let mut w = Scripted {
            core: core(true),
            script: &[5, 0, 7],
            round: 0,
            rounds,
            stop: &stop,
        };
        run_loop(&mut w, &stop);
        assert_eq!(w.core.stats.rounds, rounds as u64);
        // Empty rounds from the fourth on: IDLE_ROUNDS of them before the first sleep.
        assert_eq!(
            w.core.stats.idle_sleeps,
            (rounds - 3 - IDLE_ROUNDS as usize + 1) as u64
        );
        assert!(w.core.sink.0 >= 1, "no final publish");

        let stop = AtomicBool::new(false);
        let mut busy = Scripted {
            core: core(false),
            script: &[],
            round: 0,
            rounds,
            stop: &stop,
        };
        run_loop(&mut busy, &stop);
        assert_eq!(busy.core.stats.idle_sleeps, 0, "idle back-off is off");
        // A stop already set: no round, still the final publish.
        let mut none = Scripted {
            core: core(true),
            script: &[],
            round: 0,
            rounds: 0,
            stop: &stop,
        };
        run_loop(&mut none, &stop);
        assert_eq!((none.core.stats.rounds, none.core.sink.0), (0, 1));
    }

    /// A round that runs the pipeline over one (empty) burst and records the generation it
    /// forwarded by, then — once, in round `block_in` — blocks where `poll_once` would kick the
    /// TX ring (a syscall: the scheduler may run something else on the worker's core there)
    /// until the test lets it go.
    struct BlocksInSyscall {
        core: WorkerCore<crate::publish::ReaderHandle<Snapshot>, CountPublishes>,
        seen: Vec<u64>,
        block_in: usize,
        blocked: std::sync::mpsc::Sender<()>,
        resume: std::sync::mpsc::Receiver<()>,
        rounds: usize,
        stop: std::sync::Arc<AtomicBool>,
    }

    impl PollRound for BlocksInSyscall {
        type Reader = crate::publish::ReaderHandle<Snapshot>;
        type Sink = CountPublishes;
        fn poll_once(&mut self, now_ms: u32) -> usize {
            self.seen.push(self.core.reader.current().generation);
            let mut verdicts = [Verdict::Drop(DropReason::Malformed); BURST];
            let empty: &mut [crate::packet::PacketBuf<'_>] = &mut [];
            self.core.process_burst(empty, &mut verdicts, now_ms);
            if self.seen.len() == self.block_in {
                self.blocked.send(()).unwrap();
                self.resume.recv().unwrap();
            }
            if self.seen.len() >= self.rounds {
                self.stop.store(true, Ordering::Relaxed);
            }
            1
        }
        fn core(&mut self) -> &mut WorkerCore<Self::Reader, CountPublishes> {
            &mut self.core
        }
    }

    /// Issue 15 (commit -> applied at full load): a worker descheduled between bursts does not
    /// hold a commit up, and its next burst forwards by the new snapshot. Before, the worker
    /// held the snapshot for its whole round, syscalls included, and reported a quiescent point
    /// after it: this wait timed out while the worker was blocked (p99 4 ms under load on a
    /// 2-core VM, where the worker's core also runs the veth's softirq work).
    #[test]
    fn a_worker_blocked_between_bursts_does_not_hold_up_a_commit() {
        let set = parse_services(SERVICES).unwrap();
        let mut builder = SnapshotBuilder::new(16, 16);
        let first = builder.build(&set, 1).unwrap();
        let second = builder.build(&set, 2).unwrap();
        let (mut publisher, mut readers) = crate::publish::Publisher::new(Box::new(first), 1);
        let core = core_with(readers.pop().unwrap(), false);
        let (blocked_tx, blocked) = std::sync::mpsc::channel();
        let (resume, resume_rx) = std::sync::mpsc::channel();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let mut w = BlocksInSyscall {
            core,
            seen: Vec::new(),
            block_in: 3,
            blocked: blocked_tx,
            resume: resume_rx,
            rounds: 6,
            stop: stop.clone(),
        };
        let worker = std::thread::spawn(move || {
            run_loop(&mut w, &stop.clone());
            w.seen
        });
        blocked.recv().unwrap();
        publisher.publish(Box::new(second));
        let applied = publisher.wait_quiescent(Duration::from_millis(500));
        resume.send(()).unwrap();
        let seen = worker.join().unwrap();
        assert!(
            applied,
            "the commit waited for a worker blocked between bursts"
        );
        assert_eq!(
            seen,
            [1, 1, 1, 2, 2, 2],
            "rounds after the commit use the new snapshot"
        );
        assert_eq!(publisher.retired(), 0, "the old snapshot was freed");
    }

    #[test]
    fn worker_core_checks_ports_and_burst() {
        let pipeline = || {
            Pipeline::new(crate::pipeline::PipelineConfig {
                flow_capacity: 16,
                ..Default::default()
            })
            .unwrap()
        };
        let settings = |burst| WorkerSettings {
            burst,
            idle_backoff: false,
        };
        let e = WorkerCore::new(
            3,
            1,
            (0, 1),
            pipeline(),
            NoCounters,
            NoCounters,
            settings(32),
        )
        .err()
        .unwrap();
        assert_eq!(
            e,
            "worker 3: client port 0 / backend port 1 out of range for 1 ports"
        );
        let e = WorkerCore::new(
            0,
            1,
            (0, 0),
            pipeline(),
            NoCounters,
            NoCounters,
            settings(33),
        )
        .err()
        .unwrap();
        assert_eq!(e, "burst 33 must be 1-32");
    }
}
