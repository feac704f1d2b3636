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
//!
//! Exception path (DPDK): with [`PipelineConfig::host_path`] on, packets fiberlb does not own
//! get [`Verdict::ToHost`] instead of a drop — exactly those the AF_XDP path's XDP program
//! passes to the kernel (ARP and other non-IP frames, IP not for a listener and not a nat
//! reply, protocols fiberlb does not balance, ICMP not about a VIP flow), so ARP, SSH and BGP
//! keep working on a port the kernel does not see. Malformed packets are still dropped. A nat
//! backend's packet to one of the host's own addresses ([`LocalAddrs`], e.g. the reply to a
//! health check made from this host) is the host's too, not a reply to un-NAT.

// The per-packet path never panics (docs/architecture.md, "Rules"): a malformed packet is counted and dropped, and
// a panic here would abort the whole data plane (`panic = "abort"`). Like Firecracker's
// lint-enforced rules, the compiler holds us to it — for this module and its submodules, no
// `[]` indexing or slicing that can fail (use `get`, `first_chunk`, fixed-size arrays with
// constant indexes), no `unwrap`/`expect`/`panic!`/`unreachable!`. Only the `#[cfg(test)]`
// modules allow them.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented
)]

pub mod counters;
pub mod parse;
mod replies;
pub mod rewrite;

pub use counters::{DropReason, ObjectCounters, WorkerCounters};

use std::sync::Arc;

use fiberlb_shared::flow_hash::{table_index, FlowHasher, DEFAULT_SEED};
use fiberlb_shared::model::{Algorithm, Encap, Mac, Mode, Usability};

use crate::flow_table::{FlowKey, FlowState, FlowTable, FlowTableError, Timeouts};
use crate::packet::{Burst, PacketBuf};
use crate::snapshot::{
    handle_slot, BackendRec, ListenerKey, ListenerRec, LocalAddrSet, LocalAddrs, Snapshot,
    NO_BACKEND,
};
use parse::{proto, tcp_flags, Frag, Parsed};
use rewrite::Outer;

/// Largest burst the pipeline processes at once (defined with the packet types).
pub use crate::packet::BURST;

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
    /// Hand packets that are not fiberlb's to the host ([`Verdict::ToHost`]) instead of
    /// dropping them. Off by default: AF_XDP's XDP program already passes them to the kernel
    /// before they reach a worker; a DPDK port with a `host_interface` turns it on.
    pub host_path: bool,
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
            host_path: false,
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
    /// Not fiberlb's: hand it, unchanged, to the host's kernel through the receiving port's
    /// exception interface (only with [`PipelineConfig::host_path`]; counted in `to_host`).
    ToHost,
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
    /// [`PipelineConfig::host_path`] for the port being processed ([`Self::set_host_path`]).
    host_path: bool,
    /// Where the host's own addresses are published, and this worker's copy of them
    /// (refreshed once per burst when the publication changed).
    local_table: Option<Arc<LocalAddrs>>,
    local: LocalAddrSet,
    /// The millisecond of the last idle round's sweep (idle sweeps run at most once per ms).
    idle_swept_at: u32,
    /// [`Self::process_burst`]'s records between its two passes, kept from burst to burst
    /// so they are not initialised (2.3 KB) for every burst. Always `Some` outside
    /// `process_burst`, which takes it and puts it back.
    stage: Option<Box<Stage>>,
}

/// What the first pass of [`Pipeline::process_burst`] leaves for the second, per packet:
/// the flow hash and what the parse found ([`Staged`]), with the parsed record for frames
/// off the fast path. Entries `0..n` are written by the first pass before the second reads
/// them; later entries are stale and never read.
#[derive(Debug)]
struct Stage {
    parsed: [Parsed; BURST],
    hashes: [u64; BURST],
    kinds: [Staged; BURST],
    /// Why the parser refused a frame ([`Staged::Refused`]); other entries are stale.
    refusals: [DropReason; BURST],
}

/// How the first pass parsed a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Staged {
    /// The common frame ([`parse::parse_v4_fast_words`]): no record is stored; the second
    /// pass reads its fields from the frame again ([`parse::v4_fast_trusted`]), so the
    /// compiler knows its constant fields and the record never goes through memory.
    Fast,
    /// Parsed by [`parse::parse_full`]: the record is in [`Stage::parsed`].
    Parsed,
    /// Refused by the parser, for the reason in [`Stage::refusals`] (apart, so that a
    /// kind is one byte compared without decoding an enum's niche).
    Refused,
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

#[inline(always)]
fn hash5(
    h: &FlowHasher,
    v6: bool,
    src: &[u8; 16],
    dst: &[u8; 16],
    sp: u16,
    dp: u16,
    pr: u8,
) -> u64 {
    if v6 {
        h.hash_v6(*src, *dst, sp, dp, pr)
    } else {
        h.hash_v4(v4(src), v4(dst), sp, dp, pr)
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
            host_path: cfg.host_path,
            local_table: None,
            local: LocalAddrSet::default(),
            idle_swept_at: u32::MAX,
            stage: Some(Box::new(Stage {
                parsed: [Parsed::default(); BURST],
                hashes: [0; BURST],
                kinds: [Staged::Fast; BURST],
                refusals: [DropReason::Malformed; BURST],
            })),
            cfg,
        })
    }

    /// Turns the exception path on or off for the packets processed next: a DPDK worker sets
    /// it per receiving port (on only for ports with a host interface), so a port without one
    /// drops what is not fiberlb's, as before.
    #[inline]
    pub fn set_host_path(&mut self, on: bool) {
        self.host_path = on;
    }

    /// Whether the exception path is on.
    pub fn host_path(&self) -> bool {
        self.host_path
    }

    /// Reads the host's own addresses from `table` from now on (see [`LocalAddrs`]).
    pub fn set_local_addrs(&mut self, table: Arc<LocalAddrs>) {
        table.load_into(&mut self.local);
        self.local_table = Some(table);
    }

    /// This worker's current copy of the host's own addresses.
    pub fn local_addrs(&self) -> &LocalAddrSet {
        &self.local
    }

    /// Takes a newer publication of the local addresses (one atomic load when unchanged).
    #[inline]
    fn refresh_local(&mut self) {
        if let Some(t) = &self.local_table {
            if t.generation() != self.local.generation() {
                t.load_into(&mut self.local);
            }
        }
    }

    /// The verdict for a packet that is not fiberlb's: to the host when the exception path is
    /// on, else dropped for `reason`.
    #[inline]
    fn not_ours(&self, reason: DropReason) -> Verdict {
        if self.host_path {
            Verdict::ToHost
        } else {
            Verdict::Drop(reason)
        }
    }

    /// The verdict for a frame the parser refused: only non-IP frames can be the host's.
    #[inline]
    fn parse_refused(&self, reason: DropReason) -> Verdict {
        match reason {
            DropReason::NotIp => self.not_ours(reason),
            _ => Verdict::Drop(reason),
        }
    }

    /// [`Self::parse_refused`] out of line: the burst loop's check for a refused frame is
    /// then one compare.
    #[cold]
    #[inline(never)]
    fn parse_refused_cold(&self, reason: DropReason) -> Verdict {
        self.parse_refused(reason)
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
    /// at most a few hundred nanoseconds when `got > 0`. It advances the flow-table sweep
    /// that counts active flows per listener and backend ([`crate::flow_table::FlowSweep`]):
    /// a few buckets when busy, more when idle — at most once per millisecond when idle: a
    /// busy-polling worker under load finds its ring empty for a moment in most rounds (91 %
    /// of 10.6 M rounds in one bench run), and sweeping 256 buckets in each of them took ~5 %
    /// of its core while packets piled up in the RX ring.
    #[inline]
    pub fn housekeeping(&mut self, now: u32, got: usize) {
        let budget = if got > 0 {
            crate::flow_table::SWEEP_BUCKETS_BUSY
        } else if now != self.idle_swept_at {
            self.idle_swept_at = now;
            crate::flow_table::SWEEP_BUCKETS_IDLE
        } else {
            return;
        };
        self.flows.sweep(&mut self.counters.flow_sweep, now, budget);
    }

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
        hash5(&self.hasher, v6, src, dst, sp, dp, pr)
    }

    /// Processes one packet.
    #[inline]
    pub fn process(&mut self, snap: &Snapshot, pkt: &mut PacketBuf<'_>, now: u32) -> Verdict {
        self.refresh_local();
        self.counters.rx_packets += 1;
        self.counters.rx_bytes += pkt.len() as u64;
        let v = match parse::parse(pkt.data()) {
            Ok(p) => {
                let h = self.hash5(p.v6, &p.src, &p.dst, p.sport, p.dport, p.proto);
                self.forward(snap, pkt, &p, h, now)
            }
            Err(r) => self.parse_refused(r),
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
        self.refresh_local();
        // Always there (put back below; nothing in between returns early).
        let Some(mut st) = self.stage.take() else {
            return 0;
        };
        let Stage {
            parsed,
            hashes,
            kinds,
            refusals,
        } = &mut *st;
        // Zipped iterators over slices cut to `n` once, rather than `[i]` or `take(n)`: no
        // index to check and one loop counter (n <= BURST is not a type; the cuts never fail).
        let parsed = parsed.get_mut(..n).unwrap_or_default();
        let hashes = hashes.get_mut(..n).unwrap_or_default();
        let kinds = kinds.get_mut(..n).unwrap_or_default();
        let refusals = refusals.get_mut(..n).unwrap_or_default();
        let verdicts = verdicts.get_mut(..n).unwrap_or_default();
        let stage = parsed
            .iter_mut()
            .zip(hashes.iter_mut())
            .zip(kinds.iter_mut())
            .zip(refusals.iter_mut());
        // Counted in registers and added once per burst: nothing reads the counters while a
        // burst is processed (they are the worker's own, published between bursts).
        let mut rx_bytes = 0u64;
        // A copy of the hasher (its seed's flips), not reloaded through `self` per packet.
        let hasher = self.hasher;
        for (i, (((parsed, hash), kind), refusal)) in stage.enumerate() {
            let data = pkts.data(i);
            rx_bytes += data.len() as u64;
            // The common frame is only checked and hashed here (its record is read again in
            // the second pass); the rest take the full parse (the same `parse::parse`, split
            // so the two are not merged first).
            if let Some((_, (lo, hi))) = parse::parse_v4_fast_words(data) {
                // The key's words as the frame holds them: no key assembled in memory.
                let h = hasher.hash_v4_words(lo, hi);
                self.flows.prefetch(h);
                *hash = h;
                *kind = Staged::Fast;
                continue;
            }
            match parse::parse_full(data) {
                Ok(p) => {
                    let h = self.hash5(p.v6, &p.src, &p.dst, p.sport, p.dport, p.proto);
                    self.flows.prefetch(h);
                    *parsed = p;
                    *hash = h;
                    *kind = Staged::Parsed;
                }
                Err(r) => {
                    *kind = Staged::Refused;
                    *refusal = r;
                }
            }
        }
        self.counters.rx_packets += n as u64;
        self.counters.rx_bytes += rx_bytes;
        // Packets not forwarded (the rare case, counted by `account`); the forwarded are the rest.
        let mut not_forwarded = 0usize;
        let stage = parsed
            .iter()
            .zip(hashes.iter())
            .zip(kinds.iter())
            .zip(refusals.iter());
        for (i, ((((p, &h), &kind), &refusal), verdict)) in
            stage.zip(verdicts.iter_mut()).enumerate()
        {
            // Inlined closures: the whole per-packet path in this loop, no call (the call,
            // its spills and the captured environment cost ~26 instructions per packet).
            // `forward` is inlined twice: for the common frame, with the record built in
            // registers from the frame and its constant fields folded in, and for the rest.
            let v = match kind {
                Staged::Fast => pkts.with_buf(
                    i,
                    #[inline(always)]
                    |pkt| match parse::v4_fast_trusted(pkt.data()) {
                        Some(p) => self.forward(snap, pkt, &p, h, now),
                        // Cannot happen: the first pass accepted these very bytes.
                        None => Verdict::Drop(DropReason::Malformed),
                    },
                ),
                Staged::Parsed => pkts.with_buf(
                    i,
                    #[inline(always)]
                    |pkt| self.forward(snap, pkt, p, h, now),
                ),
                Staged::Refused => self.parse_refused_cold(refusal),
            };
            if !matches!(v, Verdict::ToBackend | Verdict::ToClient) {
                self.account(v);
                not_forwarded += 1;
            }
            *verdict = v;
        }
        // `n` packets, each forwarded or counted by `account` (which counts no forwarded one).
        self.counters.forwarded += n.saturating_sub(not_forwarded) as u64;
        self.stage = Some(st);
        n
    }

    #[inline]
    fn account(&mut self, v: Verdict) {
        match v {
            Verdict::Drop(r) => self.counters.drop(r),
            Verdict::ToHost => self.counters.to_host += 1,
            Verdict::ToBackend | Verdict::ToClient => self.counters.forwarded += 1,
        }
    }

    #[inline(always)]
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
                // One call of the (inlined) flow path for both ways a listener is found.
                let li = if p.frag == Frag::Later {
                    let key = key_of(p.v6, &p.dst, 0, p.proto);
                    match snap.fragment_map.get(&key) {
                        Some(&li) => li,
                        // Not a VIP at all: the host's (the XDP program decides the same).
                        None if !snap.is_vip_addr(&p.dst, p.v6) => {
                            return self.not_ours(DropReason::FragmentAmbiguous)
                        }
                        None => return Verdict::Drop(DropReason::FragmentAmbiguous),
                    }
                } else if let Some(li) = snap
                    .listener_index
                    .get(&key_of(p.v6, &p.dst, p.dport, p.proto))
                {
                    li
                } else {
                    return self.not_a_listener(snap, pkt, *p);
                };
                self.new_or_existing_flow(snap, pkt, p, li, hash, now)
            }
            proto::ICMP if !p.v6 => self.icmp_error(snap, pkt, *p, now),
            proto::ICMPV6 if p.v6 => self.icmp_error(snap, pkt, *p, now),
            _ => self.not_ours(DropReason::UnsupportedProtocol),
        }
    }

    /// A TCP/UDP packet to no listener: a nat reply, or not fiberlb's. (Out-of-line functions
    /// take the record by value: a reference would make the inlined fast-path record live in
    /// memory on every packet; by value it is copied only on the way here.)
    #[inline(never)]
    fn not_a_listener(&mut self, snap: &Snapshot, pkt: &mut PacketBuf<'_>, p: Parsed) -> Verdict {
        let p = &p;
        if let Some(&li) = snap.nat_return.get(&key_of(p.v6, &p.src, p.sport, p.proto)) {
            // From a nat backend to one of the host's own addresses (a health check
            // made from this host): the host's, not a reply to un-NAT. Checked only
            // on a nat_return hit, which gives the same answer as checking first.
            if self.host_path && self.local.contains(&p.dst, p.v6) {
                return Verdict::ToHost;
            }
            return self.nat_reply(snap, pkt, p, li);
        }
        self.not_ours(DropReason::NoListener)
    }

    /// The backend `handle` names, if this listener may keep sending an existing flow to it.
    #[inline]
    fn usable_backend<'s>(
        snap: &'s Snapshot,
        l: &ListenerRec,
        handle: u32,
    ) -> Option<&'s BackendRec> {
        snap.backend(handle)
            .filter(|b| b.pool == l.pool && b.usability != Usability::Unusable)
    }

    /// The Maglev choice for a flow (out of line: in steady state flows hit the table).
    #[inline(never)]
    fn maglev(
        hasher: &FlowHasher,
        snap: &Snapshot,
        l: &ListenerRec,
        p3: ([u8; 16], [u8; 16], u8, bool),
        h5: u64,
        three: bool,
    ) -> u32 {
        let Some(pool) = snap.pools.get(l.pool as usize) else {
            return NO_BACKEND;
        };
        let h = if three || pool.algorithm == Algorithm::MaglevSourceIp {
            let (src, dst, pr, v6) = p3;
            hash5(hasher, v6, &src, &dst, 0, 0, pr)
        } else {
            h5
        };
        match pool.table.len() {
            0 => NO_BACKEND,
            len => pool
                .table
                .get(table_index(h, len as u32) as usize)
                .copied()
                .unwrap_or(NO_BACKEND),
        }
    }

    #[inline(always)]
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
        let mut new_flow = false;
        let (handle, kept) = if p.frag != Frag::No {
            (
                Self::maglev(
                    &self.hasher,
                    snap,
                    l,
                    (p.src, p.dst, p.proto, p.v6),
                    hash,
                    true,
                ),
                None,
            )
        } else {
            // A flow seen only with SYN is half-open (its own class in the flow table: it
            // never evicts an established flow); the client's ACK makes it established.
            let (state, syn_only) = if p.proto == proto::UDP {
                (FlowState::Udp, false)
            } else {
                let closing = p.tcp_flags & (tcp_flags::FIN | tcp_flags::RST) != 0;
                let syn_only = p.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
                let state = match (closing, syn_only) {
                    (true, _) => FlowState::TcpClosing,
                    (false, true) => FlowState::TcpSyn,
                    (false, false) => FlowState::TcpOpen,
                };
                (state, syn_only)
            };
            match self.flows.find(hash, &p.src, l.slot, p.sport, now) {
                Some(hit) => {
                    let closing = hit.is(FlowState::TcpClosing);
                    let reopen = syn_only && closing;
                    match Self::usable_backend(snap, l, hit.backend()) {
                        Some(b) if !reopen => {
                            // A closing flow stays closing until it expires; an established one
                            // is not made half-open again by a (retransmitted or spoofed) SYN.
                            // The common case, a flow staying in its state, only refreshes.
                            let h = hit.backend();
                            let keep = closing
                                || (state == FlowState::TcpSyn && hit.is(FlowState::TcpOpen));
                            if hit.is(state) || keep {
                                hit.refresh(now);
                            } else {
                                hit.touch(state, now);
                            }
                            (h, Some(b))
                        }
                        _ => {
                            let h = Self::maglev(
                                &self.hasher,
                                snap,
                                l,
                                (p.src, p.dst, p.proto, p.v6),
                                hash,
                                false,
                            );
                            if h == NO_BACKEND {
                                return Verdict::Drop(DropReason::NoBackend);
                            }
                            if !reopen {
                                self.counters.flows_rebalanced += 1;
                            }
                            hit.update(h, state, now);
                            new_flow = true;
                            (h, None)
                        }
                    }
                }
                None => {
                    let h = Self::maglev(
                        &self.hasher,
                        snap,
                        l,
                        (p.src, p.dst, p.proto, p.v6),
                        hash,
                        false,
                    );
                    if h == NO_BACKEND {
                        return Verdict::Drop(DropReason::NoBackend);
                    }
                    let key = FlowKey {
                        client: p.src,
                        listener: l.slot,
                        port: p.sport,
                    };
                    self.flows.insert(hash, &key, h, state, now);
                    new_flow = true;
                    (h, None)
                }
            }
        };
        let Some(b) = kept.or_else(|| snap.backend(handle)) else {
            return Verdict::Drop(DropReason::NoBackend);
        };
        let v = self.send_to_backend(snap, pkt, p, l, b, hash, None);
        if v == Verdict::ToBackend {
            let bytes = pkt.len();
            if let Some(c) = self.counters.listener(l.slot) {
                c.count(bytes, new_flow);
            }
            if let Some(c) = self.counters.backend(handle_slot(handle)) {
                c.count(bytes, new_flow);
            }
        }
        v
    }

    /// Rewrites a packet for the chosen backend by the listener's mode: the common nat case
    /// (IPv4, not an ICMP error, not a later fragment) and dsr inline, the rest in
    /// [`Self::send_to_backend_general`].
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn send_to_backend(
        &self,
        snap: &Snapshot,
        pkt: &mut PacketBuf<'_>,
        p: &Parsed,
        l: &ListenerRec,
        b: &BackendRec,
        hash: u64,
        icmp_inner: Option<&parse::Inner>,
    ) -> Verdict {
        let (mac, addr, addr_v6, port) = (b.mac.as_ref(), &b.addr, b.address.is_ipv6(), b.port);
        if l.mode == Mode::Nat && !p.v6 && icmp_inner.is_none() && p.frag != Frag::Later {
            let Some(dst_mac) = mac.or(self.cfg.backend_gateway_mac.as_ref()) else {
                return Verdict::Drop(DropReason::NoNextHop);
            };
            // The common nat case, one fused pass over the headers.
            let data = pkt.data_mut();
            return match rewrite::nat_v4_dst_fused(data, p, v4(addr), port).and_then(|()| {
                rewrite::set_macs_reply_from(data, dst_mac, self.cfg.backend_side_mac.as_ref())
            }) {
                Ok(()) => Verdict::ToBackend,
                Err(r) => Verdict::Drop(r),
            };
        }
        match l.mode {
            Mode::Dsr => self.send_dsr(pkt, p.l3, p.v6, mac),
            // An ICMP error is encapsulated as it is, like any other packet.
            Mode::Tunnel => {
                let inner = (p.l3, p.ip_len, p.v6);
                self.send_tunnel(snap, pkt, inner, l.encap, mac, addr, addr_v6, hash)
            }
            Mode::Nat => self.send_nat_general(pkt, *p, mac, addr, port, icmp_inner),
        }
    }

    /// [`Self::send_to_backend`] for tunnel listeners: the packet at `inner` = (IP header
    /// offset, IP length, IPv6?) goes into an IPIP/IP6IP6 or GUE packet to `addr`. The
    /// record's fields come as scalars: no copy of it on the way here.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn send_tunnel(
        &self,
        snap: &Snapshot,
        pkt: &mut PacketBuf<'_>,
        (l3, ip_len, v6): (usize, usize, bool),
        encap: Encap,
        mac: Option<&Mac>,
        addr: &[u8; 16],
        addr_v6: bool,
        hash: u64,
    ) -> Verdict {
        let Some(&dst_mac) = mac.or(self.cfg.backend_gateway_mac.as_ref()) else {
            return Verdict::Drop(DropReason::NoNextHop);
        };
        let Some(&our_mac) = pkt.data().first_chunk::<6>() else {
            return Verdict::Drop(DropReason::Malformed);
        };
        let src_mac = self.cfg.backend_side_mac.unwrap_or(our_mac);
        if let Err(r) = rewrite::dec_ttl_at(pkt.data_mut(), l3, v6) {
            return Verdict::Drop(r);
        }
        let mut src = [0u8; 16];
        match (addr_v6, snap.tunnel.source_v4, snap.tunnel.source_v6) {
            (false, Some(s), _) => src[..4].copy_from_slice(&s.octets()),
            (true, _, Some(s)) => src = s.octets(),
            // validate() refuses tunnel listeners without a source of the family.
            _ => return Verdict::Drop(DropReason::NoNextHop),
        }
        let outer = Outer {
            encap,
            dst: addr,
            dst_v6: addr_v6,
            src: &src,
            gue_port: snap.tunnel.gue_port,
            hash,
            mtu: self.cfg.mtu,
        };
        match rewrite::encapsulate_at(pkt, l3, ip_len, v6, &outer)
            .and_then(|()| rewrite::set_macs(pkt.data_mut(), &dst_mac, &src_mac))
        {
            Ok(()) => Verdict::ToBackend,
            Err(r) => Verdict::Drop(r),
        }
    }

    /// [`Self::send_to_backend`] for dsr: the frame goes on unchanged but for the TTL and the
    /// MACs.
    #[inline(never)]
    fn send_dsr(&self, pkt: &mut PacketBuf<'_>, l3: usize, v6: bool, mac: Option<&Mac>) -> Verdict {
        let Some(dst_mac) = mac.or(self.cfg.backend_gateway_mac.as_ref()) else {
            return Verdict::Drop(DropReason::NoNextHop);
        };
        let data = pkt.data_mut();
        match rewrite::dec_ttl_at(data, l3, v6).and_then(|()| {
            rewrite::set_macs_reply_from(data, dst_mac, self.cfg.backend_side_mac.as_ref())
        }) {
            Ok(()) => Verdict::ToBackend,
            Err(r) => Verdict::Drop(r),
        }
    }

    /// [`Self::send_to_backend`] for the nat cases off its inline path (IPv6, ICMP errors,
    /// later fragments); dsr and tunnel listeners are sent by their own functions.
    #[inline(never)]
    fn send_nat_general(
        &self,
        pkt: &mut PacketBuf<'_>,
        p: Parsed,
        mac: Option<&Mac>,
        addr: &[u8; 16],
        port: u16,
        icmp_inner: Option<&parse::Inner>,
    ) -> Verdict {
        let p = &p;
        let Some(&dst_mac) = mac.or(self.cfg.backend_gateway_mac.as_ref()) else {
            return Verdict::Drop(DropReason::NoNextHop);
        };
        let Some(&our_mac) = pkt.data().first_chunk::<6>() else {
            return Verdict::Drop(DropReason::Malformed);
        };
        let src_mac = self.cfg.backend_side_mac.unwrap_or(our_mac);
        if let Err(r) = rewrite::dec_ttl(pkt.data_mut(), p) {
            return Verdict::Drop(r);
        }
        let rewritten = match icmp_inner {
            Some(inner) => rewrite::nat_icmp(pkt.data_mut(), p, inner, addr, port),
            None => rewrite::nat(pkt.data_mut(), p, true, addr, port),
        };
        match rewritten.and_then(|()| rewrite::set_macs(pkt.data_mut(), &dst_mac, &src_mac)) {
            Ok(()) => Verdict::ToBackend,
            Err(r) => Verdict::Drop(r),
        }
    }
}

#[cfg(test)]
// Tests may panic: the no-panic rule of the per-packet path (see `pipeline/mod.rs`) is for
// the code they test.
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable
)]
mod tests;
