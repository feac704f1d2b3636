//! The DPDK poll round (cargo feature `dpdk`): the same round as the AF_XDP worker
//! ([`super::afxdp::Worker`]: receive, pipeline, [`dispatch`] by verdict, send, free drops)
//! over DPDK [`PortQueue`]s, plus the exception path to the host when it has host queues.
//!
//! Exception path: a port may have a host (`net_tap`) port beside it. A [`DpdkWorker`] given
//! host queues ([`DpdkWorker::set_host_queues`]) sends the pipeline's [`Verdict::ToHost`]
//! packets of port `i` to its tap's TX queue (the kernel receives them on the tap interface)
//! and sends what the kernel transmits on the tap (tap RX) out of port `i` unchanged — so ARP,
//! SSH, BGP and health checks of the host work over a port the kernel no longer drives.

use std::sync::atomic::AtomicBool;

use fiberlb_dpdk_sys as sys;

use super::{
    count_unsent, dispatch, run_loop, CounterSink, Outputs, PollRound, SnapshotReader, WorkerCore,
    WorkerSettings, WorkerStats,
};
use crate::nic::dpdk::{register_thread, DpdkError, Eal, MbufArray, PortQueue, RxBurst};
use crate::pipeline::{DropReason, Pipeline, Verdict, BURST};

/// What a worker's exception path did (beside the pipeline's `to_host` counter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostPathStats {
    /// Packets the kernel sent on a host interface, sent out of its port.
    pub from_host: u64,
    /// Of those, packets the port's TX queue had no room for (freed).
    pub from_host_tx_full: u64,
    /// `ToHost` packets the host interface's TX queue had no room for (freed; moved from
    /// `to_host` to the `tx_ring_full` drop reason).
    pub to_host_tx_full: u64,
}

/// Sends `out` on `q`, once more if the queue was full (the driver may have reclaimed
/// descriptors since); returns how many could not be sent (still in `out`).
#[inline]
fn send_twice(q: &mut PortQueue, out: &mut MbufArray) -> usize {
    q.tx_burst(out);
    if !out.is_empty() {
        q.tx_burst(out);
    }
    out.len()
}

/// One port's received burst sorted by verdict ([`dispatch`]).
#[derive(Default)]
struct Sorted {
    to_backend: MbufArray,
    to_client: MbufArray,
    to_host: MbufArray,
}

impl Outputs for Sorted {
    type Pkt = *mut sys::rte_mbuf;
    #[inline]
    fn to_backend(&mut self, p: Self::Pkt) {
        self.to_backend.push_raw(p);
    }
    #[inline]
    fn to_client(&mut self, p: Self::Pkt) {
        self.to_client.push_raw(p);
    }
    #[inline]
    fn to_host(&mut self, p: Self::Pkt) {
        self.to_host.push_raw(p);
    }
    #[inline]
    fn drop_pkt(&mut self, p: Self::Pkt) {
        // SAFETY: the received burst owned p and gives it up here (the caller forgets the
        // burst's mbufs after the dispatch); it is freed exactly once.
        unsafe { sys::fiberlb_pktmbuf_free(p) }
    }
}

/// A DPDK worker: the same round as [`super::afxdp::Worker`] (receive, pipeline, send by
/// verdict, free drops) over [`PortQueue`]s, plus the exception path to the host when it has
/// host queues, in the same loop ([`run_loop`]: offline between bursts, counters every
/// [`super::PUBLISH_EVERY`], optional idle back-off).
pub struct DpdkWorker<R, C> {
    pub index: usize,
    eal: Eal,
    ports: Vec<PortQueue>,
    client_port: usize,
    backend_port: usize,
    core: WorkerCore<R, C>,
    /// `host[i]`: the host (`net_tap`) queue beside `ports[i]`, if that port has one.
    host: Vec<Option<PortQueue>>,
    host_stats: HostPathStats,
}

impl<R, C> std::fmt::Debug for DpdkWorker<R, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpdkWorker")
            .field("index", &self.index)
            .field("ports", &self.ports)
            .field("client_port", &self.client_port)
            .field("backend_port", &self.backend_port)
            .field("stats", &self.core.stats)
            .field("host", &self.host)
            .field("host_stats", &self.host_stats)
            .finish()
    }
}

impl<R: SnapshotReader, C: CounterSink> DpdkWorker<R, C> {
    /// A worker over its queues (`ports[client_port]` faces clients, `ports[backend_port]`
    /// backends; equal for a one-armed setup).
    ///
    /// # Errors
    /// When a port index is out of range or `burst` is not 1..=32.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        eal: &Eal,
        ports: Vec<PortQueue>,
        client_port: usize,
        backend_port: usize,
        pipeline: Pipeline,
        reader: R,
        sink: C,
        settings: WorkerSettings,
    ) -> Result<Self, DpdkError> {
        let core = WorkerCore::new(
            index,
            ports.len(),
            (client_port, backend_port),
            pipeline,
            reader,
            sink,
            settings,
        )
        .map_err(DpdkError::InvalidConfig)?;
        Ok(DpdkWorker {
            index,
            eal: eal.clone(),
            ports,
            client_port,
            backend_port,
            core,
            host: Vec::new(),
            host_stats: HostPathStats::default(),
        })
    }

    /// Gives the worker its host queues: `host[i]` is the queue of the host (`net_tap`)
    /// port beside port `i`, `None` for a port without one (which keeps dropping what is not
    /// fiberlb's). The pipeline's host path is switched per receiving port accordingly.
    ///
    /// # Errors
    /// When `host` does not have one entry per port.
    pub fn set_host_queues(&mut self, host: Vec<Option<PortQueue>>) -> Result<(), DpdkError> {
        if host.len() != self.ports.len() {
            return Err(DpdkError::InvalidConfig(format!(
                "worker {}: {} host queue entries for {} ports (one per port, None for none)",
                self.index,
                host.len(),
                self.ports.len()
            )));
        }
        self.host = host;
        Ok(())
    }

    /// What the exception path did so far.
    pub fn host_stats(&self) -> HostPathStats {
        self.host_stats
    }

    /// Sends what the kernel transmitted on the host interface `hq` out of `port`,
    /// unchanged; returns the packets taken. (Fields passed separately: the round holds a
    /// borrow of the snapshot reader.)
    #[inline]
    fn from_host(
        hq: &mut PortQueue,
        port: &mut PortQueue,
        stats: &mut HostPathStats,
        buf: &mut MbufArray,
        burst: usize,
    ) -> usize {
        let n = hq.rx_into(buf, burst);
        if n == 0 {
            return 0;
        }
        let unsent = send_twice(port, buf);
        stats.from_host += n as u64;
        stats.from_host_tx_full += unsent as u64;
        buf.clear();
        n
    }

    /// Loop statistics so far.
    pub fn stats(&self) -> WorkerStats {
        self.core.stats
    }

    /// The pipeline (counters, flow table).
    pub fn pipeline(&self) -> &Pipeline {
        &self.core.pipeline
    }

    /// The worker's queues.
    pub fn ports(&self) -> &[PortQueue] {
        &self.ports
    }

    /// One round over every port; returns the packets received.
    #[inline]
    pub fn poll_once(&mut self, now_ms: u32) -> usize {
        let mut rx = RxBurst::default();
        let mut out = Sorted::default();
        let mut verdicts = [Verdict::Drop(DropReason::Malformed); BURST];
        let burst = self.core.settings.burst;
        let mut total = 0;
        for pi in 0..self.ports.len() {
            let (Some(port), host) = (self.ports.get_mut(pi), self.host.get_mut(pi)) else {
                break;
            };
            let has_host = match host {
                Some(Some(hq)) => {
                    total +=
                        Self::from_host(hq, port, &mut self.host_stats, &mut out.to_host, burst);
                    true
                }
                _ => false,
            };
            let n = port.rx_burst(&mut rx, burst).min(BURST);
            if n == 0 {
                continue;
            }
            total += n;
            self.core.stats.rx_bursts += 1;
            self.core.pipeline.set_host_path(has_host);
            let Some(verdicts) = verdicts.get_mut(..n) else {
                continue;
            };
            let done = self.core.process_burst(&mut rx, verdicts, now_ms);
            let (ptrs, len) = rx.mbufs().raw_mut();
            dispatch(ptrs.get(..*len).unwrap_or(&[]), verdicts, done, &mut out);
            // Every mbuf moved to a TX array or was freed.
            *len = 0;
            for (port, tx) in [
                (self.backend_port, &mut out.to_backend),
                (self.client_port, &mut out.to_client),
            ] {
                if tx.is_empty() {
                    continue;
                }
                // Sent twice when the TX ring is full (the driver may have reclaimed
                // descriptors), then the rest is dropped.
                let unsent = match self.ports.get_mut(port) {
                    Some(q) => send_twice(q, tx),
                    None => tx.len(),
                };
                count_unsent(&mut self.core.stats, &mut self.core.pipeline, unsent);
                tx.clear();
            }
            if !out.to_host.is_empty() {
                // Only ports with a host queue get ToHost (host path set per port above);
                // anything else here is freed and counted like a full queue.
                let unsent = match self.host.get_mut(pi) {
                    Some(Some(hq)) => send_twice(hq, &mut out.to_host),
                    _ => out.to_host.len(),
                };
                if unsent > 0 {
                    self.core.pipeline.counters_mut().host_failed(unsent as u64);
                    self.host_stats.to_host_tx_full += unsent as u64;
                }
                out.to_host.clear();
            }
        }
        total
    }

    /// Runs until `stop` is set: registers the thread with DPDK (mempool caches), runs
    /// [`run_loop`] (which publishes the counters once more at the end), then gives the lcore
    /// id back.
    ///
    /// # Errors
    /// When the thread cannot be registered with DPDK.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), DpdkError> {
        register_thread(&self.eal)?;
        run_loop(self, stop);
        // Give the lcore id back, so restarted worker threads do not exhaust them.
        // SAFETY: this thread registered above and holds no mbuf from a per-lcore cache path
        // any more (every burst array was freed at the end of its round).
        unsafe { sys::fiberlb_thread_unregister() };
        Ok(())
    }
}

impl<R: SnapshotReader, C: CounterSink> PollRound for DpdkWorker<R, C> {
    type Reader = R;
    type Sink = C;
    #[inline]
    fn poll_once(&mut self, now_ms: u32) -> usize {
        DpdkWorker::poll_once(self, now_ms)
    }
    #[inline]
    fn core(&mut self) -> &mut WorkerCore<R, C> {
        &mut self.core
    }
}
