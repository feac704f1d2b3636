//! The forwarding pipeline: parse, find the listener, choose the backend, rewrite, send.
//!
//! One [`Pipeline`] per worker. It owns the worker's flow table and counters and reads an
//! immutable [`Snapshot`]; nothing here allocates, locks, makes a syscall or panics on any
//! input. A burst is processed in two passes: the first parses every packet, hashes its flow
//! and prefetches the flow-table bucket; the second looks up, chooses and rewrites — so the
//! cache misses of a burst overlap instead of queueing one behind the other.
//!
//! Backend choice: a flow-table hit whose backend is still usable (exists, is in the
//! listener's pool, not disabled or unhealthy; drained is fine) keeps its backend. Otherwise
//! the pool's Maglev table is indexed by the flow hash — of the 5-tuple, or of the 3-tuple
//! (addresses + protocol) for IP fragments and for pools with source-IP affinity — and the
//! flow is recorded. Fragments are not recorded: later fragments carry no ports, so every
//! fragment of a datagram goes by the 3-tuple to the same backend.

pub mod counters;
pub mod parse;
pub mod rewrite;

pub use counters::{DropReason, ObjectCounters, WorkerCounters};

use fiberlb_shared::flow_hash::{table_index, FlowHasher, DEFAULT_SEED};
use fiberlb_shared::model::{Algorithm, Mac, Mode, Usability};

use crate::flow_table::{FlowKey, FlowState, FlowTable, FlowTableError, Timeouts};
use crate::nic::{Burst, PacketBuf};
use crate::snapshot::{handle_slot, ListenerKey, ListenerRec, Snapshot, NO_BACKEND};
use parse::{proto, tcp_flags, Frag, Parsed};
use rewrite::Outer;

/// Largest burst the pipeline processes at once.
pub const BURST: usize = 32;

/// Node settings the pipeline forwards with (from dataplane.toml).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Flow hash seed; every node behind one ECMP group must use the same.
    pub hash_seed: u64,
    /// Flow-table capacity (entries, rounded up to a power of two).
    pub flow_capacity: usize,
    pub timeouts: Timeouts,
    /// Source MAC of frames sent towards backends; `None`: the destination MAC of the
    /// received frame (the port's own MAC).
    pub backend_side_mac: Option<Mac>,
    /// Source MAC of frames sent towards clients (nat replies); `None` as above.
    pub client_side_mac: Option<Mac>,
    /// Next hop towards backends that have no MAC of their own.
    pub backend_gateway_mac: Option<Mac>,
    /// Next hop towards clients, for nat replies.
    pub client_gateway_mac: Option<Mac>,
    /// Largest IP packet on the way to backends: an encapsulated packet above it is dropped.
    pub mtu: u16,
    /// Listener counter slots (max listeners).
    pub max_listeners: usize,
    /// Backend counter slots (max backends).
    pub max_backends: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            hash_seed: DEFAULT_SEED,
            flow_capacity: 1 << 20,
            timeouts: Timeouts::default(),
            backend_side_mac: None,
            client_side_mac: None,
            backend_gateway_mac: None,
            client_gateway_mac: None,
            mtu: 1500,
            max_listeners: 4096,
            max_backends: 65536,
        }
    }
}

/// What to do with a processed packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send on the backend-facing port.
    ToBackend,
    /// Send on the client-facing port (nat replies).
    ToClient,
    /// Drop it; the reason was counted.
    Drop(DropReason),
}

/// One worker's forwarding state.
#[derive(Debug)]
pub struct Pipeline {
    cfg: PipelineConfig,
    hasher: FlowHasher,
    flows: FlowTable,
    counters: WorkerCounters,
}

#[inline]
fn v4(a: &[u8; 16]) -> [u8; 4] {
    [a[0], a[1], a[2], a[3]]
}

#[inline]
fn key_of(v6: bool, addr: &[u8; 16], port: u16, proto: u8) -> ListenerKey {
    ListenerKey {
        addr: *addr,
        port,
        proto,
        v6,
    }
}

impl Pipeline {
    /// A pipeline with its flow table and counters allocated.
    ///
    /// # Errors
    /// When the flow table cannot be allocated.
    pub fn new(cfg: PipelineConfig) -> Result<Self, FlowTableError> {
        let flows = FlowTable::new(cfg.flow_capacity, cfg.timeouts)?;
        let counters = WorkerCounters::new(cfg.max_listeners, cfg.max_backends);
        Ok(Pipeline {
            hasher: FlowHasher::new(cfg.hash_seed),
            flows,
            counters,
            cfg,
        })
    }

    /// The worker's counters.
    pub fn counters(&self) -> &WorkerCounters {
        &self.counters
    }

    /// The worker's counters, for the port code to add what only it knows (TX ring full).
    pub fn counters_mut(&mut self) -> &mut WorkerCounters {
        &mut self.counters
    }

    /// Background work between bursts, called by every port's worker loop once per poll
    /// round with `got` = packets received in that round (0 = idle). Bounded: it must cost
    /// at most a few hundred nanoseconds when `got > 0`. (Filled in by the flow sweep that
    /// publishes active-flow gauges.)
    #[inline]
    pub fn housekeeping(&mut self, _now: u32, _got: usize) {}

    /// The worker's flow table.
    pub fn flow_table(&self) -> &FlowTable {
        &self.flows
    }

    /// The settings in force.
    pub fn config(&self) -> &PipelineConfig {
        &self.cfg
    }

    #[inline]
    fn hash5(&self, v6: bool, src: &[u8; 16], dst: &[u8; 16], sp: u16, dp: u16, pr: u8) -> u64 {
        if v6 {
            self.hasher.hash_v6(*src, *dst, sp, dp, pr)
        } else {
            self.hasher.hash_v4(v4(src), v4(dst), sp, dp, pr)
        }
    }

    /// Processes one packet.
    #[inline]
    pub fn process(&mut self, snap: &Snapshot, pkt: &mut PacketBuf<'_>, now: u32) -> Verdict {
        self.counters.rx_packets += 1;
        self.counters.rx_bytes += pkt.len() as u64;
        let v = match parse::parse(pkt.data()) {
            Ok(p) => {
                let h = self.hash5(p.v6, &p.src, &p.dst, p.sport, p.dport, p.proto);
                self.forward(snap, pkt, &p, h, now)
            }
            Err(r) => Verdict::Drop(r),
        };
        self.account(v);
        v
    }

    /// Processes a burst of up to [`BURST`] packets; `verdicts[i]` is the fate of packet `i`.
    /// Returns how many were processed (packets beyond [`BURST`] or beyond `verdicts.len()`
    /// are left untouched for the next call).
    pub fn process_burst<B: Burst + ?Sized>(
        &mut self,
        snap: &Snapshot,
        pkts: &mut B,
        verdicts: &mut [Verdict],
        now: u32,
    ) -> usize {
        let n = pkts.len().min(verdicts.len()).min(BURST);
        let mut parsed = [Parsed::default(); BURST];
        let mut hashes = [0u64; BURST];
        let mut errs: [Option<DropReason>; BURST] = [None; BURST];
        for i in 0..n {
            let data = pkts.data(i);
            self.counters.rx_packets += 1;
            self.counters.rx_bytes += data.len() as u64;
            match parse::parse(data) {
                Ok(p) => {
                    let h = self.hash5(p.v6, &p.src, &p.dst, p.sport, p.dport, p.proto);
                    self.flows.prefetch(h);
                    parsed[i] = p;
                    hashes[i] = h;
                }
                Err(r) => errs[i] = Some(r),
            }
        }
        for i in 0..n {
            let v = match errs[i] {
                Some(r) => Verdict::Drop(r),
                None => pkts.with_buf(i, |pkt| self.forward(snap, pkt, &parsed[i], hashes[i], now)),
            };
            self.account(v);
            verdicts[i] = v;
        }
        n
    }

    #[inline]
    fn account(&mut self, v: Verdict) {
        match v {
            Verdict::Drop(r) => self.counters.drop(r),
            _ => self.counters.forwarded += 1,
        }
    }

    #[inline]
    fn forward(
        &mut self,
        snap: &Snapshot,
        pkt: &mut PacketBuf<'_>,
        p: &Parsed,
        hash: u64,
        now: u32,
    ) -> Verdict {
        match p.proto {
            proto::TCP | proto::UDP => {
                if p.frag == Frag::Later {
                    let key = key_of(p.v6, &p.dst, 0, p.proto);
                    return match snap.fragment_map.get(&key) {
                        Some(&li) => self.new_or_existing_flow(snap, pkt, p, li, hash, now),
                        None => Verdict::Drop(DropReason::FragmentAmbiguous),
                    };
                }
                if let Some(&li) = snap
                    .listener_map
                    .get(&key_of(p.v6, &p.dst, p.dport, p.proto))
                {
                    return self.new_or_existing_flow(snap, pkt, p, li, hash, now);
                }
                if let Some(&li) = snap.nat_return.get(&key_of(p.v6, &p.src, p.sport, p.proto)) {
                    return self.nat_reply(snap, pkt, p, li);
                }
                Verdict::Drop(DropReason::NoListener)
            }
            proto::ICMP if !p.v6 => self.icmp_error(snap, pkt, p, now),
            proto::ICMPV6 if p.v6 => self.icmp_error(snap, pkt, p, now),
            _ => Verdict::Drop(DropReason::UnsupportedProtocol),
        }
    }

    /// Is `handle` a backend this listener may keep sending an existing flow to?
    #[inline]
    fn still_usable(snap: &Snapshot, l: &ListenerRec, handle: u32) -> bool {
        match snap.backend(handle) {
            Some(b) => b.pool == l.pool && b.usability != Usability::Unusable,
            None => false,
        }
    }

    /// The Maglev choice for a flow.
    #[inline]
    fn maglev(
        &self,
        snap: &Snapshot,
        l: &ListenerRec,
        p3: (&[u8; 16], &[u8; 16], u8, bool),
        h5: u64,
        three: bool,
    ) -> u32 {
        let pool = &snap.pools[l.pool as usize];
        let h = if three || pool.algorithm == Algorithm::MaglevSourceIp {
            let (src, dst, pr, v6) = p3;
            self.hash5(v6, src, dst, 0, 0, pr)
        } else {
            h5
        };
        match pool.table.len() {
            0 => NO_BACKEND,
            len => pool.table[table_index(h, len as u32) as usize],
        }
    }

    fn new_or_existing_flow(
        &mut self,
        snap: &Snapshot,
        pkt: &mut PacketBuf<'_>,
        p: &Parsed,
        li: u32,
        hash: u64,
        now: u32,
    ) -> Verdict {
        let Some(l) = snap.listeners.get(li as usize) else {
            return Verdict::Drop(DropReason::NoListener);
        };
        let p3 = (&p.src, &p.dst, p.proto, p.v6);
        let mut new_flow = false;
        let handle = if p.frag != Frag::No {
            self.maglev(snap, l, p3, hash, true)
        } else {
            let key = FlowKey {
                client: p.src,
                listener: l.slot,
                port: p.sport,
            };
            let closing = p.tcp_flags & (tcp_flags::FIN | tcp_flags::RST) != 0;
            let state = match (p.proto, closing) {
                (proto::UDP, _) => FlowState::Udp,
                (_, true) => FlowState::TcpClosing,
                (_, false) => FlowState::TcpOpen,
            };
            let syn_only = p.proto == proto::TCP
                && p.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
            match self.flows.lookup(hash, &key, now) {
                Some(hit)
                    if Self::still_usable(snap, l, hit.backend)
                        && !(syn_only && hit.state == FlowState::TcpClosing) =>
                {
                    // A closing flow stays closing until it expires.
                    let st = if hit.state == FlowState::TcpClosing {
                        hit.state
                    } else {
                        state
                    };
                    self.flows.touch(hit.slot, st, now);
                    hit.backend
                }
                Some(hit) => {
                    let h = self.maglev(snap, l, p3, hash, false);
                    if h == NO_BACKEND {
                        return Verdict::Drop(DropReason::NoBackend);
                    }
                    if !(syn_only && hit.state == FlowState::TcpClosing) {
                        self.counters.flows_rebalanced += 1;
                    }
                    self.flows.update(hit.slot, h, state, now);
                    new_flow = true;
                    h
                }
                None => {
                    let h = self.maglev(snap, l, p3, hash, false);
                    if h == NO_BACKEND {
                        return Verdict::Drop(DropReason::NoBackend);
                    }
                    self.flows.insert(hash, &key, h, state, now);
                    new_flow = true;
                    h
                }
            }
        };
        let Some(b) = snap.backend(handle) else {
            return Verdict::Drop(DropReason::NoBackend);
        };
        let v = self.send_to_backend(
            snap,
            pkt,
            p,
            l,
            b.mac,
            &b.addr,
            b.address.is_ipv6(),
            b.port,
            hash,
            None,
        );
        if v == Verdict::ToBackend {
            let bytes = pkt.len();
            if let Some(c) = self.counters.listener(l.slot) {
                c.count(bytes);
                c.new_flows += u64::from(new_flow);
            }
            if let Some(c) = self.counters.backend(handle_slot(handle)) {
                c.count(bytes);
                c.new_flows += u64::from(new_flow);
            }
        }
        v
    }

    /// Rewrites a packet for the chosen backend by the listener's mode.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn send_to_backend(
        &self,
        snap: &Snapshot,
        pkt: &mut PacketBuf<'_>,
        p: &Parsed,
        l: &ListenerRec,
        mac: Option<Mac>,
        addr: &[u8; 16],
        addr_v6: bool,
        port: u16,
        hash: u64,
        icmp_inner: Option<&parse::Inner>,
    ) -> Verdict {
        let Some(dst_mac) = mac.or(self.cfg.backend_gateway_mac) else {
            return Verdict::Drop(DropReason::NoNextHop);
        };
        let mut our_mac = [0u8; 6];
        our_mac.copy_from_slice(&pkt.data()[0..6]);
        let src_mac = self.cfg.backend_side_mac.unwrap_or(our_mac);
        if l.mode == Mode::Nat && !p.v6 && icmp_inner.is_none() && p.frag != Frag::Later {
            // The common nat case, one fused pass over the headers.
            if let Err(r) = rewrite::nat_v4_dst_fused(pkt.data_mut(), p, v4(addr), port) {
                return Verdict::Drop(r);
            }
            rewrite::set_macs(pkt.data_mut(), &dst_mac, &src_mac);
            return Verdict::ToBackend;
        }
        if let Err(r) = rewrite::dec_ttl(pkt.data_mut(), p) {
            return Verdict::Drop(r);
        }
        match l.mode {
            Mode::Dsr => {}
            Mode::Nat => match icmp_inner {
                Some(inner) => rewrite::nat_icmp(pkt.data_mut(), p, inner, addr, port),
                None => rewrite::nat(pkt.data_mut(), p, true, addr, port),
            },
            Mode::Tunnel => {
                let mut src = [0u8; 16];
                match (addr_v6, snap.tunnel.source_v4, snap.tunnel.source_v6) {
                    (false, Some(s), _) => src[..4].copy_from_slice(&s.octets()),
                    (true, _, Some(s)) => src = s.octets(),
                    // validate() refuses tunnel listeners without a source of the family.
                    _ => return Verdict::Drop(DropReason::NoNextHop),
                }
                let outer = Outer {
                    encap: l.encap,
                    dst: addr,
                    dst_v6: addr_v6,
                    src: &src,
                    gue_port: snap.tunnel.gue_port,
                    hash,
                    mtu: self.cfg.mtu,
                };
                if let Err(r) = rewrite::encapsulate(pkt, p, &outer) {
                    return Verdict::Drop(r);
                }
            }
        }
        rewrite::set_macs(pkt.data_mut(), &dst_mac, &src_mac);
        Verdict::ToBackend
    }

    /// A backend's reply on a nat listener: source back to VIP:port, on to the client.
    fn nat_reply(
        &mut self,
        snap: &Snapshot,
        pkt: &mut PacketBuf<'_>,
        p: &Parsed,
        li: u32,
    ) -> Verdict {
        let Some(l) = snap.listeners.get(li as usize) else {
            return Verdict::Drop(DropReason::NoListener);
        };
        let Some(dst_mac) = self.cfg.client_gateway_mac else {
            return Verdict::Drop(DropReason::NoNextHop);
        };
        let mut our_mac = [0u8; 6];
        our_mac.copy_from_slice(&pkt.data()[0..6]);
        let src_mac = self.cfg.client_side_mac.unwrap_or(our_mac);
        let data = pkt.data_mut();
        if let Err(r) = rewrite::dec_ttl(data, p) {
            return Verdict::Drop(r);
        }
        rewrite::nat(data, p, false, &l.vip_addr, l.port);
        rewrite::set_macs(data, &dst_mac, &src_mac);
        self.counters.nat_replies += 1;
        Verdict::ToClient
    }

    /// An ICMP "fragmentation needed" / "packet too big" about a VIP flow: the quoted
    /// packet went VIP:port -> client (a backend's reply), so the owning flow is
    /// client -> VIP:port; send the error to that flow's backend.
    fn icmp_error(
        &mut self,
        snap: &Snapshot,
        pkt: &mut PacketBuf<'_>,
        p: &Parsed,
        now: u32,
    ) -> Verdict {
        let Some(inner) = parse::icmp_inner(pkt.data(), p) else {
            return Verdict::Drop(DropReason::IcmpNotForVip);
        };
        if inner.src != p.dst {
            return Verdict::Drop(DropReason::IcmpNotForVip);
        }
        let Some(&li) = snap
            .listener_map
            .get(&key_of(p.v6, &inner.src, inner.sport, inner.proto))
        else {
            return Verdict::Drop(DropReason::IcmpNotForVip);
        };
        let Some(l) = snap.listeners.get(li as usize) else {
            return Verdict::Drop(DropReason::IcmpNotForVip);
        };
        let h = self.hash5(
            p.v6,
            &inner.dst,
            &inner.src,
            inner.dport,
            inner.sport,
            inner.proto,
        );
        let key = FlowKey {
            client: inner.dst,
            listener: l.slot,
            port: inner.dport,
        };
        let handle = match self.flows.lookup(h, &key, now) {
            Some(hit) if Self::still_usable(snap, l, hit.backend) => hit.backend,
            _ => self.maglev(
                snap,
                l,
                (&inner.dst, &inner.src, inner.proto, p.v6),
                h,
                false,
            ),
        };
        let Some(b) = snap.backend(handle) else {
            return Verdict::Drop(DropReason::NoBackend);
        };
        let v = self.send_to_backend(
            snap,
            pkt,
            p,
            l,
            b.mac,
            &b.addr,
            b.address.is_ipv6(),
            b.port,
            h,
            Some(&inner),
        );
        if v == Verdict::ToBackend {
            self.counters.icmp_to_backend += 1;
        }
        v
    }
}
