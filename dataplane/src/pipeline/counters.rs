//! Per-worker counters: plain integers owned by one worker, no atomics on the fast path.

use crate::flow_table::FlowSweep;

/// Why a packet was dropped. Each reason indexes a per-worker counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// A header was truncated or inconsistent (bad version, lengths, offsets).
    Malformed = 0,
    /// Not IPv4/IPv6 (ARP and the like belong to the kernel; the XDP program passes them).
    NotIp,
    /// An IP protocol fiberlb does not balance.
    UnsupportedProtocol,
    /// No listener for the destination VIP, port and protocol.
    NoListener,
    /// The listener's pool has no usable backend.
    NoBackend,
    /// TTL / hop limit would reach zero.
    TtlExceeded,
    /// A non-first IP fragment whose VIP has several listeners with different pools or modes.
    FragmentAmbiguous,
    /// An ICMP error about a flow that is not a VIP flow, or too short to tell.
    IcmpNotForVip,
    /// Encapsulation would exceed the egress MTU.
    TooBigForTunnel,
    /// Not enough headroom in the buffer for the outer headers.
    NoHeadroom,
    /// No next-hop MAC is known for the egress (configure gateway MACs).
    NoNextHop,
    /// An IPv6 extension header chain fiberlb does not walk (too long, ESP, ...).
    UnsupportedExtension,
    /// The egress TX ring (or DPDK TX queue) stayed full: the packet was processed but could
    /// not be sent. Counted by the port code, which also takes it back out of `forwarded`.
    TxRingFull,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = fiberlb_shared::drop_reasons::DROP_REASON_NAMES.len();

    /// Every reason, in counter order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Malformed,
        DropReason::NotIp,
        DropReason::UnsupportedProtocol,
        DropReason::NoListener,
        DropReason::NoBackend,
        DropReason::TtlExceeded,
        DropReason::FragmentAmbiguous,
        DropReason::IcmpNotForVip,
        DropReason::TooBigForTunnel,
        DropReason::NoHeadroom,
        DropReason::NoNextHop,
        DropReason::UnsupportedExtension,
        DropReason::TxRingFull,
    ];

    /// Stable snake_case name for counters and metrics: its entry in the one list,
    /// [`fiberlb_shared::drop_reasons::DROP_REASON_NAMES`] (the control plane reads it too).
    pub fn name(self) -> &'static str {
        fiberlb_shared::drop_reasons::DROP_REASON_NAMES
            .get(self as usize)
            .copied()
            .unwrap_or("unknown")
    }
}

/// Packets, bytes and new flows of one listener or backend.
///
/// `new_flows` sits between `packets` and `bytes` (`repr(C)` keeps the order): the two words
/// every forwarded packet adds to are then not adjacent, so the compiler adds them with two
/// scalar instructions instead of a 5-instruction SSE sequence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ObjectCounters {
    pub packets: u64,
    pub new_flows: u64,
    pub bytes: u64,
}

impl ObjectCounters {
    /// One forwarded packet of `bytes` bytes, the first of its flow if `new_flow`.
    #[inline]
    pub(crate) fn count(&mut self, bytes: usize, new_flow: bool) {
        self.packets += 1;
        self.bytes += bytes as u64;
        // A branch, not an add of 0/1: new flows are rare, and an add here would make the
        // three words one vector add again.
        if new_flow {
            self.new_flows += 1;
        }
    }

    /// Adds another worker's counters.
    pub fn add(&mut self, o: &ObjectCounters) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.new_flows += o.new_flows;
    }
}

/// Everything one worker counts. Arrays are sized at start and indexed by listener / backend
/// slot, so counting never allocates.
#[derive(Clone, Debug)]
pub struct WorkerCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Packets the pipeline sent on (to a backend or back to a client).
    pub forwarded: u64,
    /// nat replies rewritten back to the VIP.
    pub nat_replies: u64,
    /// ICMP errors steered to the backend owning the inner flow.
    pub icmp_to_backend: u64,
    /// Flow-table hits whose backend was no longer usable, re-balanced.
    pub flows_rebalanced: u64,
    /// Packets that are not fiberlb's (ARP, traffic to the host's own addresses, ...) handed
    /// to the kernel through the port's exception path (DPDK: a `net_tap` interface).
    pub to_host: u64,
    pub drops: [u64; DropReason::COUNT],
    pub listeners: Box<[ObjectCounters]>,
    pub backends: Box<[ObjectCounters]>,
    /// Active flows per listener and backend slot, counted by the incremental flow-table
    /// sweep of `Pipeline::housekeeping` (gauges as of its last complete pass).
    pub flow_sweep: FlowSweep,
}

impl WorkerCounters {
    /// Counters with room for `listener_slots` listeners and `backend_slots` backends.
    pub fn new(listener_slots: usize, backend_slots: usize) -> Self {
        WorkerCounters {
            rx_packets: 0,
            rx_bytes: 0,
            forwarded: 0,
            nat_replies: 0,
            icmp_to_backend: 0,
            flows_rebalanced: 0,
            to_host: 0,
            drops: [0; DropReason::COUNT],
            listeners: vec![ObjectCounters::default(); listener_slots].into_boxed_slice(),
            backends: vec![ObjectCounters::default(); backend_slots].into_boxed_slice(),
            flow_sweep: FlowSweep::new(listener_slots, backend_slots),
        }
    }

    /// Counts a drop.
    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        // Always present (`reason as usize < COUNT`); the check folds away.
        if let Some(c) = self.drops.get_mut(reason as usize) {
            *c += 1;
        }
    }

    /// `n` packets counted as forwarded could not be sent (TX ring full): moves them from
    /// `forwarded` to the `tx_ring_full` drop reason so received = forwarded + to_host + dropped
    /// still holds.
    #[inline]
    pub fn tx_failed(&mut self, n: u64) {
        self.forwarded = self.forwarded.saturating_sub(n);
        if let Some(c) = self.drops.get_mut(DropReason::TxRingFull as usize) {
            *c += n;
        }
    }

    /// `n` packets counted as `to_host` could not be sent to the host interface (its TX queue
    /// full): moves them from `to_host` to the `tx_ring_full` drop reason, like [`Self::tx_failed`].
    #[inline]
    pub fn host_failed(&mut self, n: u64) {
        self.to_host = self.to_host.saturating_sub(n);
        if let Some(c) = self.drops.get_mut(DropReason::TxRingFull as usize) {
            *c += n;
        }
    }

    /// Total dropped packets.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }

    #[inline]
    pub(crate) fn listener(&mut self, slot: u32) -> Option<&mut ObjectCounters> {
        self.listeners.get_mut(slot as usize)
    }

    #[inline]
    pub(crate) fn backend(&mut self, slot: usize) -> Option<&mut ObjectCounters> {
        self.backends.get_mut(slot)
    }
}

#[cfg(all(test, not(loom)))]
// Tests may panic: the no-panic rule of the per-packet path (see `pipeline/mod.rs`) is for
// the code they test.
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable
)]
mod tests {
    use super::*;
    use fiberlb_shared::shm::counters::{DROP_REASONS, DROP_REASON_NAMES};

    #[test]
    fn drop_reason_names_match_the_shared_list() {
        // The control plane names drop counters from the shared list; a reason added here
        // without its name there would be exported under the wrong label.
        assert_eq!(DropReason::ALL.map(DropReason::name), DROP_REASON_NAMES);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "ALL is in counter order");
        }
        const { assert!(DropReason::COUNT <= DROP_REASONS) };
    }

    #[test]
    fn tx_failed_moves_forwarded_to_tx_ring_full() {
        let mut c = WorkerCounters::new(1, 1);
        c.forwarded = 10;
        c.tx_failed(3);
        assert_eq!(c.forwarded, 7);
        assert_eq!(c.drops[DropReason::TxRingFull as usize], 3);
        assert_eq!(c.dropped(), 3);
        c.tx_failed(20);
        assert_eq!(c.forwarded, 0);
        assert_eq!(c.flow_sweep.completed_passes(), 0);
    }
}
