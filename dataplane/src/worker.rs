//! Poll-mode workers: one thread per configured core, pinned to it, forwarding between AF_XDP
//! ports.
//!
//! Each worker owns one [`Umem`], one [`XskPort`] per configured port (queue = worker index),
//! its [`Pipeline`] (flow table and counters, allocated before the first packet) and its
//! snapshot reader. One round of the loop, per port: reap TX completions, receive up to a
//! burst, run the pipeline over it, send `ToBackend` packets on the backend-facing port and
//! `ToClient` packets on the client-facing port (the same port when one port has role `both`),
//! free dropped ones; TX is flushed every burst. After the round the worker reports a quiescent
//! point so old snapshots can be freed, and about every 100 ms it publishes its counters.
//!
//! Nothing in the loop allocates or locks. The only syscalls are AF_XDP wake-ups the kernel
//! asks for (`sendto` in copy mode) and, with idle back-off, the sleep.
//!
//! The worker is generic over [`SnapshotReader`] and [`CounterSink`] so it depends only on
//! what it needs from the control thread's publication scheme.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::nic::afxdp::{AfXdpError, Umem, XdpProgram, XskPort};
use crate::nic::{Burst, Desc, PacketBuf};
use crate::pipeline::{Pipeline, Verdict, WorkerCounters, BURST};
use crate::snapshot::{ListenerKey, Snapshot};

/// Empty rounds before an idle worker starts sleeping.
pub const IDLE_ROUNDS: u32 = 256;
/// Longest idle sleep.
pub const MAX_IDLE_SLEEP: Duration = Duration::from_millis(1);
/// How often counters are published.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// What a worker needs from the snapshot publication: the snapshot in force at the start of a
/// round, and quiescent / offline / online reports so old snapshots can be freed.
pub trait SnapshotReader {
    /// The snapshot to use for this round; stays valid until [`Self::quiescent`].
    fn current(&mut self) -> &Snapshot;
    /// The worker holds no reference into any snapshot any more.
    fn quiescent(&mut self);
    /// The worker goes to sleep holding no snapshot: writers need not wait for it.
    fn offline(&mut self);
    /// The worker is back.
    fn online(&mut self);
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
    fn quiescent(&mut self) {
        crate::publish::ReaderHandle::quiescent(self)
    }
    #[inline]
    fn offline(&mut self) {
        crate::publish::ReaderHandle::offline(self)
    }
    #[inline]
    fn online(&mut self) {
        crate::publish::ReaderHandle::online(self)
    }
}

/// The control thread's copy into the shared-memory counters area.
#[cfg(not(loom))]
impl CounterSink for crate::control::CounterPublisher {
    fn publish(&mut self, counters: &WorkerCounters) {
        crate::control::CounterPublisher::publish(self, counters)
    }
}

/// A fixed snapshot with nothing to reclaim (tests, offline tools).
#[derive(Debug)]
pub struct FixedSnapshot(pub std::sync::Arc<Snapshot>);

impl SnapshotReader for FixedSnapshot {
    fn current(&mut self) -> &Snapshot {
        &self.0
    }
    fn quiescent(&mut self) {}
    fn offline(&mut self) {}
    fn online(&mut self) {}
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

/// A backend's worker as [`run_loop`] sees it: one poll round over its ports, and its core.
pub(crate) trait PollRound {
    type Reader: SnapshotReader;
    type Sink: CounterSink;
    /// One round over every port; returns the packets received.
    fn poll_once(&mut self, now_ms: u32) -> usize;
    fn core(&mut self) -> &mut WorkerCore<Self::Reader, Self::Sink>;
}

/// The worker loop of every backend, until `stop` is set: polls, runs the pipeline's
/// housekeeping, reports a quiescent point, publishes counters every [`PUBLISH_EVERY`], backs
/// off when idle (if configured, offline while asleep). Publishes the counters once more
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
        c.reader.quiescent();
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
                c.reader.offline();
                std::thread::sleep(sleep);
                c.reader.online();
                c.stats.idle_sleeps += 1;
                sleep = (sleep * 2).min(MAX_IDLE_SLEEP);
            }
        }
    }
    let c = w.core();
    c.sink.publish(c.pipeline.counters());
}

/// One worker's state: built on the main thread (so every setup error surfaces before any
/// packet is touched), then moved to its pinned thread and [`Worker::run`].
pub struct Worker<R, C> {
    pub index: usize,
    umem: Umem,
    ports: Vec<XskPort>,
    client_port: usize,
    backend_port: usize,
    core: WorkerCore<R, C>,
}

impl<R, C> std::fmt::Debug for Worker<R, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("index", &self.index)
            .field("ports", &self.ports)
            .field("client_port", &self.client_port)
            .field("backend_port", &self.backend_port)
            .field("stats", &self.core.stats)
            .finish()
    }
}

/// A burst of UMEM descriptors the pipeline can read and rewrite in place.
struct UmemBurst<'a> {
    umem: &'a mut Umem,
    descs: &'a mut [Desc],
}

impl Burst for UmemBurst<'_> {
    #[inline]
    fn len(&self) -> usize {
        self.descs.len()
    }

    #[inline]
    fn data(&self, i: usize) -> &[u8] {
        self.umem.data(&self.descs[i]).unwrap_or(&[])
    }

    #[inline]
    fn with_buf<T>(&mut self, i: usize, f: impl FnOnce(&mut PacketBuf<'_>) -> T) -> T {
        let d = self.descs[i];
        let (r, start, len) = match self.umem.packet_buf(&d) {
            Some(mut pkt) => {
                let r = f(&mut pkt);
                (r, pkt.start(), pkt.len())
            }
            // Not inside one chunk (cannot happen for a packet that parsed, since `data` gave
            // its bytes): the pipeline sees an empty packet.
            None => {
                let mut empty = [0u8; 0];
                let Some(mut b) = PacketBuf::new(&mut empty, 0, 0) else {
                    unreachable!("an empty range of an empty chunk is in bounds")
                };
                return f(&mut b);
            }
        };
        self.descs[i] = self.umem.desc_for(&d, start, len);
        r
    }
}

impl<R: SnapshotReader, C: CounterSink> Worker<R, C> {
    /// A worker over its UMEM and ports (`ports[client_port]` faces clients,
    /// `ports[backend_port]` backends; equal for a one-armed setup).
    ///
    /// # Errors
    /// When a port index is out of range or `burst` is not 1..=32.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        umem: Umem,
        ports: Vec<XskPort>,
        client_port: usize,
        backend_port: usize,
        pipeline: Pipeline,
        reader: R,
        sink: C,
        settings: WorkerSettings,
    ) -> Result<Self, AfXdpError> {
        let core = WorkerCore::new(
            index,
            ports.len(),
            (client_port, backend_port),
            pipeline,
            reader,
            sink,
            settings,
        )
        .map_err(AfXdpError::InvalidConfig)?;
        Ok(Worker {
            index,
            umem,
            ports,
            client_port,
            backend_port,
            core,
        })
    }

    /// The worker's sockets (e.g. for their kernel statistics).
    pub fn ports(&self) -> &[XskPort] {
        &self.ports
    }

    /// Loop statistics so far.
    pub fn stats(&self) -> WorkerStats {
        self.core.stats
    }

    /// The pipeline (counters, flow table).
    pub fn pipeline(&self) -> &Pipeline {
        &self.core.pipeline
    }

    /// One round over every port; returns the packets received.
    #[inline]
    pub fn poll_once(&mut self, now_ms: u32) -> usize {
        let mut rx = [Desc::default(); BURST];
        let mut verdicts = [Verdict::Drop(crate::pipeline::DropReason::Malformed); BURST];
        let mut to_backend = [Desc::default(); BURST];
        let mut to_client = [Desc::default(); BURST];
        let burst = self.core.settings.burst;
        let snap = self.core.reader.current();
        let mut total = 0;
        for pi in 0..self.ports.len() {
            self.ports[pi].complete(&mut self.umem);
            let n = self.ports[pi].rx_burst(&mut self.umem, &mut rx[..burst]);
            if n == 0 {
                continue;
            }
            total += n;
            self.core.stats.rx_bursts += 1;
            let done = {
                let mut b = UmemBurst {
                    umem: &mut self.umem,
                    descs: &mut rx[..n],
                };
                self.core
                    .pipeline
                    .process_burst(snap, &mut b, &mut verdicts[..n], now_ms)
            };
            let (mut nb, mut nc) = (0, 0);
            for i in 0..n {
                let v = if i < done {
                    verdicts[i]
                } else {
                    Verdict::Drop(crate::pipeline::DropReason::Malformed)
                };
                match v {
                    Verdict::ToBackend => {
                        to_backend[nb] = rx[i];
                        nb += 1;
                    }
                    Verdict::ToClient => {
                        to_client[nc] = rx[i];
                        nc += 1;
                    }
                    // AF_XDP pipelines run without the host path: XDP passed those already.
                    Verdict::ToHost | Verdict::Drop(_) => self.umem.free(&rx[i]),
                }
            }
            for (port, descs) in [
                (self.backend_port, &to_backend[..nb]),
                (self.client_port, &to_client[..nc]),
            ] {
                if descs.is_empty() {
                    continue;
                }
                let mut sent = self.ports[port].tx_burst(&mut self.umem, descs);
                if sent < descs.len() {
                    // TX ring full: reap what the kernel finished and try once more before
                    // dropping (a busy copy-mode socket completes in batches).
                    self.ports[port].complete(&mut self.umem);
                    sent += self.ports[port].tx_burst(&mut self.umem, &descs[sent..]);
                }
                for d in &descs[sent..] {
                    self.umem.free(d);
                    self.core.stats.tx_full_drops += 1;
                }
                let unsent = descs.len().saturating_sub(sent) as u64;
                if unsent > 0 {
                    self.core.pipeline.counters_mut().tx_failed(unsent);
                }
            }
        }
        total
    }

    /// Runs until `stop` is set ([`run_loop`]), then reaps the transmissions still in flight.
    pub fn run(&mut self, stop: &AtomicBool) {
        run_loop(self, stop);
        // Let transmissions in flight complete so their frames return (tidy accounting).
        for p in &mut self.ports {
            p.complete(&mut self.umem);
        }
    }
}

impl<R: SnapshotReader, C: CounterSink> PollRound for Worker<R, C> {
    type Reader = R;
    type Sink = C;
    #[inline]
    fn poll_once(&mut self, now_ms: u32) -> usize {
        Worker::poll_once(self, now_ms)
    }
    #[inline]
    fn core(&mut self) -> &mut WorkerCore<R, C> {
        &mut self.core
    }
}

/// Pins the calling thread to `core`.
///
/// # Errors
/// When the core does not exist or is not allowed for this process.
pub fn pin_to_core(core: usize) -> Result<(), String> {
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    let Some(id) = ids.into_iter().find(|c| c.id == core) else {
        return Err(format!(
            "core {core} does not exist or is not allowed for this process"
        ));
    };
    if core_affinity::set_for_current(id) {
        Ok(())
    } else {
        Err(format!("cannot pin to core {core}"))
    }
}

/// Sets the calling thread's CPU mask to `cpus` (a set, unlike [`pin_to_core`]).
///
/// # Errors
/// When the kernel refuses the mask (no CPU of it is allowed to this process).
pub fn allow_cpus(cpus: &[usize]) -> Result<(), String> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        if c < libc::CPU_SETSIZE as usize {
            // SAFETY: c is below CPU_SETSIZE, the set's capacity.
            unsafe { libc::CPU_SET(c, &mut set) };
        }
    }
    // SAFETY: pid 0 is the calling thread; the size and pointer describe `set`.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(format!(
            "cannot run on CPUs {cpus:?}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The CPUs this process may use that no worker is pinned to: where the control thread and
/// the other housekeeping threads belong. Empty when the workers take every allowed CPU.
pub fn housekeeping_cpus(worker_cores: &[usize]) -> Vec<usize> {
    available_cores()
        .into_iter()
        .filter(|c| !worker_cores.contains(c))
        .collect()
}

/// The cores this process may run on (for checking the configuration).
pub fn available_cores() -> Vec<usize> {
    let mut v: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    v.sort_unstable();
    v
}

fn key_ip(k: &ListenerKey) -> IpAddr {
    if k.v6 {
        IpAddr::V6(Ipv6Addr::from(k.addr))
    } else {
        IpAddr::V4(Ipv4Addr::new(k.addr[0], k.addr[1], k.addr[2], k.addr[3]))
    }
}

/// One key of the XDP program's maps: (address, port in host order, IP protocol).
pub type XdpKey = (IpAddr, u16, u8);

/// The XDP program's keys for a snapshot: every listener `(VIP, port, protocol)`, and the
/// `(backend address, port, protocol)` of every backend of a nat listener (its replies).
pub fn xdp_keys(snap: &Snapshot) -> (Vec<XdpKey>, Vec<XdpKey>) {
    let mut vips: Vec<_> = snap
        .listeners
        .iter()
        .map(|l| (l.vip, l.port, l.protocol.ip_proto()))
        .collect();
    vips.sort_unstable();
    vips.dedup();
    let mut nat: Vec<_> = snap
        .nat_return
        .keys()
        .map(|k| (key_ip(k), k.port, k.proto))
        .collect();
    nat.sort_unstable();
    nat.dedup();
    (vips, nat)
}

/// Makes every program's maps match `snap`. Both sets go to every port's program: on a
/// client-facing port the nat-return keys match nothing (clients are not backends), and on a
/// backend-facing port VIP keys catch nothing that is not fiberlb's.
///
/// # Errors
/// When a map update fails.
pub fn sync_xdp_maps(programs: &mut [XdpProgram], snap: &Snapshot) -> Result<(), AfXdpError> {
    let (vips, nat) = xdp_keys(snap);
    for p in programs {
        // New nat returns before new VIPs: replies of a new flow never find the map behind.
        p.set_nat_returns(&nat)?;
        p.set_vips(&vips)?;
    }
    Ok(())
}

#[cfg(test)]
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

    #[test]
    fn xdp_keys_cover_listeners_and_nat_backends_only() {
        let set = parse_services(SERVICES).unwrap();
        let snap = SnapshotBuilder::new(16, 16).build(&set, 1).unwrap();
        let (vips, nat) = xdp_keys(&snap);
        let vip: IpAddr = "10.0.0.10".parse().unwrap();
        assert_eq!(vips, vec![(vip, 53, 17), (vip, 80, 6)]);
        let b = |s: &str| s.parse::<IpAddr>().unwrap();
        // dsr backends reply straight to clients: their replies are not redirected.
        assert_eq!(
            nat,
            vec![(b("10.1.0.1"), 8080, 6), (b("10.1.0.2"), 8080, 6)]
        );
    }

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
        let pipeline = Pipeline::new(crate::pipeline::PipelineConfig {
            flow_capacity: 1024,
            ..Default::default()
        })
        .unwrap();
        let settings = WorkerSettings {
            burst: BURST,
            idle_backoff,
        };
        let snap = FixedSnapshot(std::sync::Arc::new(snap));
        WorkerCore::new(0, 2, (0, 1), pipeline, snap, CountPublishes(0), settings).unwrap()
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

    #[test]
    fn pinning_to_a_missing_core_is_an_error() {
        let e = pin_to_core(100_000).unwrap_err();
        assert!(e.contains("core 100000"), "{e}");
        assert!(!available_cores().is_empty());
    }
}
