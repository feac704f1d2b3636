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

/// One worker's state: built on the main thread (so every setup error surfaces before any
/// packet is touched), then moved to its pinned thread and [`Worker::run`].
pub struct Worker<R, C> {
    pub index: usize,
    umem: Umem,
    ports: Vec<XskPort>,
    client_port: usize,
    backend_port: usize,
    pipeline: Pipeline,
    reader: R,
    sink: C,
    settings: WorkerSettings,
    stats: WorkerStats,
}

impl<R, C> std::fmt::Debug for Worker<R, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("index", &self.index)
            .field("ports", &self.ports)
            .field("client_port", &self.client_port)
            .field("backend_port", &self.backend_port)
            .field("stats", &self.stats)
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
        if client_port >= ports.len() || backend_port >= ports.len() {
            return Err(AfXdpError::InvalidConfig(format!(
                "worker {index}: client port {client_port} / backend port {backend_port} out of \
                 range for {} ports",
                ports.len()
            )));
        }
        if settings.burst == 0 || settings.burst > BURST {
            return Err(AfXdpError::InvalidConfig(format!(
                "burst {} must be 1-{BURST}",
                settings.burst
            )));
        }
        Ok(Worker {
            index,
            umem,
            ports,
            client_port,
            backend_port,
            pipeline,
            reader,
            sink,
            settings,
            stats: WorkerStats::default(),
        })
    }

    /// The worker's sockets (e.g. for their kernel statistics).
    pub fn ports(&self) -> &[XskPort] {
        &self.ports
    }

    /// Loop statistics so far.
    pub fn stats(&self) -> WorkerStats {
        self.stats
    }

    /// The pipeline (counters, flow table).
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// One round over every port; returns the packets received.
    #[inline]
    pub fn poll_once(&mut self, now_ms: u32) -> usize {
        let mut rx = [Desc::default(); BURST];
        let mut verdicts = [Verdict::Drop(crate::pipeline::DropReason::Malformed); BURST];
        let mut to_backend = [Desc::default(); BURST];
        let mut to_client = [Desc::default(); BURST];
        let burst = self.settings.burst;
        let snap = self.reader.current();
        let mut total = 0;
        for pi in 0..self.ports.len() {
            self.ports[pi].complete(&mut self.umem);
            let n = self.ports[pi].rx_burst(&mut self.umem, &mut rx[..burst]);
            if n == 0 {
                continue;
            }
            total += n;
            self.stats.rx_bursts += 1;
            let done = {
                let mut b = UmemBurst {
                    umem: &mut self.umem,
                    descs: &mut rx[..n],
                };
                self.pipeline
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
                    self.stats.tx_full_drops += 1;
                }
                let unsent = descs.len().saturating_sub(sent) as u64;
                if unsent > 0 {
                    self.pipeline.counters_mut().tx_failed(unsent);
                }
            }
        }
        total
    }

    /// Runs until `stop` is set: polls, reports quiescent points, publishes counters, backs off
    /// when idle (if configured). Publishes the counters once more before returning.
    pub fn run(&mut self, stop: &AtomicBool) {
        let start = Instant::now();
        let mut last_publish = start;
        let mut empty_rounds = 0u32;
        let mut sleep = Duration::from_micros(1);
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            // Wraps after ~49 days; the flow table compares times with wrapping arithmetic.
            let now_ms = now.duration_since(start).as_millis() as u32;
            let got = self.poll_once(now_ms);
            self.pipeline.housekeeping(now_ms, got);
            self.reader.quiescent();
            self.stats.rounds += 1;
            if now.duration_since(last_publish) >= PUBLISH_EVERY {
                self.sink.publish(self.pipeline.counters());
                last_publish = now;
            }
            if got > 0 {
                empty_rounds = 0;
                sleep = Duration::from_micros(1);
            } else if self.settings.idle_backoff {
                empty_rounds = empty_rounds.saturating_add(1);
                if empty_rounds >= IDLE_ROUNDS {
                    self.reader.offline();
                    std::thread::sleep(sleep);
                    self.reader.online();
                    self.stats.idle_sleeps += 1;
                    sleep = (sleep * 2).min(MAX_IDLE_SLEEP);
                }
            }
        }
        // Let transmissions in flight complete so their frames return (tidy accounting).
        for p in &mut self.ports {
            p.complete(&mut self.umem);
        }
        self.sink.publish(self.pipeline.counters());
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

    #[test]
    fn pinning_to_a_missing_core_is_an_error() {
        let e = pin_to_core(100_000).unwrap_err();
        assert!(e.contains("core 100000"), "{e}");
        assert!(!available_cores().is_empty());
    }
}
