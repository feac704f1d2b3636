//! The AF_XDP poll round: a [`Worker`] owns one [`Umem`] and one [`XskPort`] per configured
//! port (queue = worker index); [`sync_xdp_maps`] keeps the XDP programs' maps in step with
//! the snapshot (called by the control thread).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::AtomicBool;

use super::{
    count_unsent, dispatch, run_loop, CounterSink, Outputs, PollRound, SnapshotReader, WorkerCore,
    WorkerSettings, WorkerStats,
};
use crate::nic::afxdp::{AfXdpError, Umem, XdpProgram, XskPort};
use crate::packet::{Burst, Desc, PacketBuf};
use crate::pipeline::{DropReason, Pipeline, Verdict, BURST};
use crate::snapshot::{ListenerKey, Snapshot};

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
        self.descs
            .get(i)
            .and_then(|d| self.umem.data(d))
            .unwrap_or(&[])
    }

    #[inline]
    fn with_buf<T>(&mut self, i: usize, f: impl FnOnce(&mut PacketBuf<'_>) -> T) -> T {
        // `f` is called in one place only, so an inlined `f` (the pipeline's per-packet path)
        // is not duplicated. A descriptor not inside one chunk (cannot happen for a packet that
        // parsed, since `data` gave its bytes): the pipeline sees an empty packet, and the
        // descriptor is left as it was.
        let d = self.descs.get(i).copied();
        let (real, mut pkt) = match d.and_then(|d| self.umem.packet_buf(&d)) {
            Some(pkt) => (true, pkt),
            None => (false, PacketBuf::empty()),
        };
        let r = f(&mut pkt);
        let (start, len) = (pkt.start(), pkt.len());
        if let (true, Some(d)) = (real, d) {
            if let Some(slot) = self.descs.get_mut(i) {
                *slot = self.umem.desc_for(&d, start, len);
            }
        }
        r
    }
}

/// One port's received burst sorted by verdict ([`dispatch`]): forwarded descriptors wait
/// for TX, the rest go back to the UMEM's free list (AF_XDP workers run without the host
/// path: XDP passed the host's packets already).
struct Sorted<'a> {
    to_backend: [Desc; BURST],
    nb: usize,
    to_client: [Desc; BURST],
    nc: usize,
    umem: &'a mut Umem,
}

impl Outputs for Sorted<'_> {
    type Pkt = Desc;
    #[inline]
    fn to_backend(&mut self, d: Desc) {
        match self.to_backend.get_mut(self.nb) {
            Some(slot) => {
                *slot = d;
                self.nb += 1;
            }
            None => self.umem.free(&d),
        }
    }
    #[inline]
    fn to_client(&mut self, d: Desc) {
        match self.to_client.get_mut(self.nc) {
            Some(slot) => {
                *slot = d;
                self.nc += 1;
            }
            None => self.umem.free(&d),
        }
    }
    #[inline]
    fn to_host(&mut self, d: Desc) {
        self.umem.free(&d);
    }
    #[inline]
    fn drop_pkt(&mut self, d: Desc) {
        self.umem.free(&d);
    }
}

/// Sends `descs` on `port`; when the TX ring is full, reaps what the kernel finished and tries
/// once more (a busy copy-mode socket completes in batches). Returns the descriptors that
/// still could not be sent (the caller frees them).
#[inline]
fn send_twice<'d>(port: &mut XskPort, umem: &mut Umem, descs: &'d [Desc]) -> &'d [Desc] {
    if descs.is_empty() {
        return descs;
    }
    let mut sent = port.tx_burst(umem, descs);
    if sent < descs.len() {
        port.complete(umem);
        sent += port.tx_burst(umem, descs.get(sent..).unwrap_or(&[]));
    }
    descs.get(sent..).unwrap_or(&[])
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
        let mut verdicts = [Verdict::Drop(DropReason::Malformed); BURST];
        let mut out = Sorted {
            to_backend: [Desc::default(); BURST],
            nb: 0,
            to_client: [Desc::default(); BURST],
            nc: 0,
            umem: &mut self.umem,
        };
        // `WorkerCore::new` checked 1 <= burst <= BURST.
        let burst = self.core.settings.burst.min(BURST);
        let mut total = 0;
        for pi in 0..self.ports.len() {
            let Some(port) = self.ports.get_mut(pi) else {
                break;
            };
            port.complete(out.umem);
            let (Some(rx), Some(verdicts)) = (rx.get_mut(..burst), verdicts.get_mut(..burst))
            else {
                break;
            };
            let n = port.rx_burst(out.umem, rx).min(burst);
            if n == 0 {
                continue;
            }
            let (Some(rx), Some(verdicts)) = (rx.get_mut(..n), verdicts.get_mut(..n)) else {
                continue;
            };
            total += n;
            self.core.stats.rx_bursts += 1;
            let done = {
                let mut b = UmemBurst {
                    umem: out.umem,
                    descs: rx,
                };
                self.core.process_burst(&mut b, verdicts, now_ms)
            };
            (out.nb, out.nc) = (0, 0);
            dispatch(rx, verdicts, done, &mut out);
            for (port, descs) in [
                (
                    self.backend_port,
                    out.to_backend.get(..out.nb).unwrap_or(&[]),
                ),
                (self.client_port, out.to_client.get(..out.nc).unwrap_or(&[])),
            ] {
                let Some(port) = self.ports.get_mut(port) else {
                    continue;
                };
                let unsent = send_twice(port, out.umem, descs);
                for d in unsent {
                    out.umem.free(d);
                }
                count_unsent(&mut self.core.stats, &mut self.core.pipeline, unsent.len());
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
}
