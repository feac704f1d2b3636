//! The per-worker connection table.
//!
//! Maps a client flow — (listener, client address, client port) — to the backend chosen for
//! it, so that a flow keeps its backend when the Maglev table changes under it (Maglev's
//! consistency is good, not perfect; the table makes it exact for live flows).
//!
//! Layout: a fixed array of 4-way *buckets*, one 128-byte bucket (two cache lines) per hash
//! value, allocated once at start and never grown. A lookup reads one bucket. An insert into
//! a full bucket replaces its least-recently-seen entry, so a SYN flood cannot grow memory: it
//! can only push out idle entries of its own bucket. This is "evict the oldest when full",
//! applied per bucket instead of globally — a global LRU list would cost two more pointers per
//! entry and a cache miss per touch; set-associative replacement is what VPP's lb sticky table
//! and CPU caches do.
//!
//! Entries expire after an idle timeout that depends on the protocol and TCP state (see
//! [`Timeouts`]); an expired entry is treated as absent and is the first to be replaced.
//!
//! **Half-open flows are a class of their own.** A TCP flow seen only with SYN (no ACK from
//! the client yet) is [`FlowState::TcpSyn`]: it has a short timeout (5 s by default), it is
//! replaced before any established entry, and it never replaces one. A SYN flood with random
//! sources — millions of flows that never complete — therefore only recycles half-open
//! entries and dead ones: an established connection is never evicted by it, whatever the
//! flood's rate or the table's size. A SYN that finds its bucket full of established flows
//! is not recorded ([`FlowTableStats::syn_not_recorded`]) and is forwarded statelessly by
//! Maglev, which gives it the same backend for as long as the pool does not change; when the
//! client's ACK comes (a real connection) the flow is recorded as established, taking the
//! bucket's least recently seen entry as before. (Katran and Maglev keep no such class; an
//! LRU that SYNs can fill is the weakness the SYN-flood test measures.)
//!
//! Time is a `u32` count of milliseconds from the worker's clock, compared with wrapping
//! arithmetic: timeouts must stay below 2^31 ms (24 days).
//!
//! Active flows per listener and backend are counted by a [`FlowSweep`]: the worker visits a
//! few buckets per poll round ([`FlowTable::sweep`]) and publishes the counts of a pass only
//! when it is complete, so the gauges lag by at most one sweep period. At
//! [`SWEEP_BUCKETS_BUSY`] buckets per busy round the default 1M-entry table (262 144 buckets)
//! takes 131 072 rounds per pass: about 0.4 s at 10 Mpps in bursts of 32, longer at lower rates
//! where rounds carry fewer packets but come just as often; idle rounds visit
//! [`SWEEP_BUCKETS_IDLE`] buckets, a pass in 1 024 rounds (≈ 1 s with the 1 ms idle back-off,
//! a few ms busy-polling). Cost, measured with `housekeeping-*` and `nat-l2-tcp+housekeeping`
//! in `bench/benches/pipeline.rs` (`taskset -c 1`, shared 2-core VM): a busy call 11 ns (1k
//! flows) / 24 ns (1M flows), i.e. +0.4-1.5 ns per packet of a 32-packet burst (within run-to-
//! run noise); eight buckets per busy round cost 32 / 87 ns per call and +3 % / +9 % per packet
//! at 1k / 1M flows (cache lines the burst needed get evicted), hence two. An idle call
//! 0.9-2.3 µs; a whole pass of a full 1M table about 3 ms of CPU, spread over its rounds.

// Per-packet code (lookup, insert, touch): it never panics (docs/architecture.md, "Rules"; a panic aborts the data
// plane), and the compiler holds it to that as in `pipeline/` — no indexing or slicing that
// can fail, no `unwrap`/`expect`/`panic!`. Only the `#[cfg(test)]` module allows them.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented
)]

use std::fmt;

mod buckets;
mod sweep;

use buckets::BucketArray;
pub use sweep::{FlowSweep, SWEEP_BUCKETS_BUSY, SWEEP_BUCKETS_IDLE};

/// Entries per bucket.
pub const WAYS: usize = 4;

/// Memory per entry, in bytes (stated in the README).
pub const ENTRY_BYTES: usize = std::mem::size_of::<Entry>();

/// TCP / UDP state of an entry, which selects its idle timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FlowState {
    /// A TCP flow that has not seen FIN or RST.
    TcpOpen = 1,
    /// A TCP flow after FIN or RST: kept briefly for the last packets.
    TcpClosing = 2,
    /// A UDP flow.
    Udp = 3,
    /// A TCP flow seen only with SYN so far (half-open): short timeout, evicted first, never
    /// evicts an established entry.
    TcpSyn = 4,
}

/// Idle timeouts in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_open_ms: u32,
    pub tcp_closing_ms: u32,
    pub udp_ms: u32,
    /// Half-open TCP flows (SYN seen, no ACK yet).
    pub tcp_syn_ms: u32,
}

impl Default for Timeouts {
    /// IPVS-like defaults: 15 minutes for open TCP, 10 s after FIN/RST, 60 s for UDP; 5 s for
    /// half-open TCP (a client retransmits its SYN after 1 s and 3 s; a retransmission after
    /// the entry expired is recorded again, to the same Maglev backend).
    fn default() -> Self {
        Timeouts {
            tcp_open_ms: 900_000,
            tcp_closing_ms: 10_000,
            udp_ms: 60_000,
            tcp_syn_ms: 5_000,
        }
    }
}

impl Timeouts {
    /// The timeout of every state byte value `0..8` (a state byte is below 8): one load per
    /// lookup instead of a match. Values that name no state get the UDP timeout, as
    /// `state_from_u8` reads them as UDP.
    fn by_state(&self) -> [u32; 8] {
        const {
            assert!(FlowState::TcpOpen as usize == 1);
            assert!(FlowState::TcpClosing as usize == 2);
            assert!(FlowState::Udp as usize == 3);
            assert!(FlowState::TcpSyn as usize == 4);
        }
        let udp = self.udp_ms;
        [
            udp,
            self.tcp_open_ms,
            self.tcp_closing_ms,
            udp,
            self.tcp_syn_ms,
            udp,
            udp,
            udp,
        ]
    }
}

/// The key of a flow: which listener it came in on and the client's address and port.
/// (The listener stands for VIP, VIP port and protocol.) IPv4 addresses are stored in the
/// first four bytes, the rest zero; listener slots differ per family so keys cannot collide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowKey {
    pub client: [u8; 16],
    pub listener: u32,
    pub port: u16,
}

/// One table entry: 32 bytes, two per cache line. The key is two words — the client address
/// and [`Entry::meta`] without its state byte — so a way is compared with two compares.
#[derive(Clone, Copy, Default)]
#[repr(C, align(32))]
struct Entry {
    /// Client address bytes, read as one native-endian word.
    client: u128,
    /// State (bits 0-7; the [`FlowState`] value), listener slot + 1 (bits 8-39; 0 marks an
    /// empty entry) and client port (bits 40-55); bits 56-63 are always 0, so `meta >> 8` is
    /// the key word (one shift to compare a way) and the state is the low byte (a state
    /// compare is one byte compare, no mask constant).
    meta: u64,
    backend: u32,
    last_seen: u32,
}

/// Where the key word (listener tag | port << 32) sits in [`Entry::meta`].
const KEY_SHIFT: u32 = 8;

impl Entry {
    /// Listener slot + 1; 0 for an empty entry.
    #[inline(always)]
    fn listener(&self) -> u32 {
        (self.meta >> KEY_SHIFT) as u32
    }

    /// The state byte (a [`FlowState`] value, below 8: `insert` and `set_state` write it
    /// from a `FlowState`).
    #[inline(always)]
    fn state(&self) -> u8 {
        self.meta as u8
    }

    /// The key word: `meta` without the state byte (bits 56-63 are 0: the key is 48 bits).
    #[inline(always)]
    fn key(&self) -> u64 {
        self.meta >> KEY_SHIFT
    }

    #[inline(always)]
    fn set_state(&mut self, state: FlowState) {
        self.meta = (self.meta & !0xff) | state as u64;
    }
}

impl FlowKey {
    /// The key as an entry stores it (see [`key_words`]).
    #[inline(always)]
    fn words(&self) -> (u128, u64) {
        key_words(&self.client, self.listener, self.port)
    }
}

/// A key as [`Entry::key`] gives it: client word, and listener tag (slot + 1) | port << 32.
#[inline(always)]
fn key_words(client: &[u8; 16], listener: u32, port: u16) -> (u128, u64) {
    (
        u128::from_ne_bytes(*client),
        u64::from(listener.wrapping_add(1)) | u64::from(port) << 32,
    )
}

#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Bucket {
    entries: [Entry; WAYS],
}

/// Outcome of [`FlowTable::lookup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The backend recorded for the flow.
    pub backend: u32,
    /// Where the entry is, for [`FlowTable::touch`] / [`FlowTable::update`].
    pub slot: usize,
    pub state: FlowState,
}

/// A live entry found by [`FlowTable::find`], lent for reading and updating in place.
pub struct FlowRef<'a> {
    e: &'a mut Entry,
}

impl fmt::Debug for FlowRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowRef")
            .field("backend", &self.backend())
            .field("state", &self.state())
            .finish()
    }
}

impl FlowRef<'_> {
    /// The backend recorded for the flow.
    #[inline]
    pub fn backend(&self) -> u32 {
        self.e.backend
    }

    /// The flow's state.
    #[inline(always)]
    pub fn state(&self) -> FlowState {
        state_from_u8(self.e.state())
    }

    /// Whether the flow is in `state`: one compare of the stored byte, which is always a
    /// [`FlowState`]'s value (only `set_state` and `insert` write it, from a `FlowState`).
    #[inline(always)]
    pub fn is(&self, state: FlowState) -> bool {
        self.e.state() == state as u8
    }

    /// Refreshes the entry, moving it to `state` (see [`FlowTable::touch`]).
    #[inline]
    pub fn touch(self, state: FlowState, now: u32) {
        self.e.last_seen = now;
        self.e.set_state(state);
    }

    /// Refreshes the entry, its state unchanged ([`Self::touch`] with the current state).
    #[inline]
    pub fn refresh(self, now: u32) {
        self.e.last_seen = now;
    }

    /// Points the entry at another backend (see [`FlowTable::update`]).
    #[inline]
    pub fn update(self, backend: u32, state: FlowState, now: u32) {
        self.e.backend = backend;
        self.touch(state, now);
    }
}

/// Counts of what the table did, for the worker's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowTableStats {
    pub inserts: u64,
    /// Inserts that replaced a live (unexpired) entry because its bucket was full.
    pub evictions: u64,
    /// Of those, the live entries replaced that were half-open ([`FlowState::TcpSyn`]).
    pub half_open_evictions: u64,
    /// Half-open flows not recorded because every entry of their bucket was a live
    /// established flow (which a half-open one never replaces).
    pub syn_not_recorded: u64,
}

/// Why a table cannot be created.
#[derive(Debug, thiserror::Error)]
pub enum FlowTableError {
    #[error("flow table capacity {0} is too small (minimum {min})", min = WAYS * 2)]
    TooSmall(usize),
    #[error("flow table capacity {0} is too large (maximum 2^31 entries)")]
    TooLarge(usize),
    #[error("cannot allocate {bytes} bytes for a flow table of {entries} entries: lower flow_table.capacity or add memory")]
    OutOfMemory { entries: usize, bytes: usize },
}

/// A fixed-capacity flow table owned by one worker.
pub struct FlowTable {
    buckets: BucketArray,
    mask: usize,
    timeouts: Timeouts,
    /// `timeouts` by state byte ([`Timeouts::by_state`]).
    timeout_of: [u32; 8],
    stats: FlowTableStats,
}

impl fmt::Debug for FlowTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowTable")
            .field("capacity", &self.capacity())
            .field("timeouts", &self.timeouts)
            .field("stats", &self.stats)
            .finish()
    }
}

impl FlowTable {
    /// A table of at least `capacity` entries (rounded up to a power of two), all memory
    /// allocated and touched now so the first packets pay no page faults.
    ///
    /// # Errors
    /// When the capacity is out of range or the memory cannot be allocated.
    pub fn new(capacity: usize, timeouts: Timeouts) -> Result<Self, FlowTableError> {
        if capacity < WAYS * 2 {
            return Err(FlowTableError::TooSmall(capacity));
        }
        if capacity > 1 << 31 {
            return Err(FlowTableError::TooLarge(capacity));
        }
        let entries = capacity.next_power_of_two();
        let nbuckets = entries / WAYS;
        let bytes = nbuckets * std::mem::size_of::<Bucket>();
        let buckets =
            BucketArray::new(nbuckets).ok_or(FlowTableError::OutOfMemory { entries, bytes })?;
        Ok(FlowTable {
            buckets,
            mask: nbuckets - 1,
            timeouts,
            timeout_of: timeouts.by_state(),
            stats: FlowTableStats::default(),
        })
    }

    /// Number of entries.
    pub fn capacity(&self) -> usize {
        self.buckets.len() * WAYS
    }

    /// Memory used, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Bucket>()
    }

    /// What the table did so far.
    pub fn stats(&self) -> FlowTableStats {
        self.stats
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    #[inline]
    fn bucket_index(&self, hash: u64) -> usize {
        (hash as usize) & self.mask
    }

    /// Hints the CPU to load the bucket of `hash`, so a burst can overlap its cache misses.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        // No bounds check: the index is below the length (`mask` = length - 1), and a
        // prefetch is a hint that never faults, so the pointer is only computed (wrapping).
        let b = self
            .buckets
            .ptr
            .as_ptr()
            .wrapping_add(self.bucket_index(hash));
        prefetch_read(b as *const u8);
    }

    /// The way of `bucket` holding a live entry for `key`, if any.
    #[inline(always)]
    fn find_way(&self, bucket: &Bucket, key: &FlowKey, now: u32) -> Option<usize> {
        let (client, meta) = key.words();
        let way = bucket
            .entries
            .iter()
            .position(|e| e.key() == meta && e.client == client)?;
        let e = bucket.entries.get(way)?;
        (now.wrapping_sub(e.last_seen) <= self.timeout(e.state())).then_some(way)
    }

    /// The idle timeout of state byte `state`.
    #[inline(always)]
    fn timeout(&self, state: u8) -> u32 {
        // Always present: a state byte is below 8 (masked here, so the check folds away).
        self.timeout_of
            .get(usize::from(state & 7))
            .copied()
            .unwrap_or(0)
    }

    /// Finds a live entry for `key`.
    #[inline]
    pub fn lookup(&self, hash: u64, key: &FlowKey, now: u32) -> Option<Hit> {
        let bi = self.bucket_index(hash);
        // Always present (`mask` < len); `get` costs the same compare `[]` did.
        let bucket = self.buckets.get(bi)?;
        let way = self.find_way(bucket, key, now)?;
        let e = bucket.entries.get(way)?;
        Some(Hit {
            backend: e.backend,
            slot: bi * WAYS + way,
            state: state_from_u8(e.state()),
        })
    }

    /// Finds a live entry for `key` and lends it for reading and updating in place: the
    /// per-packet form of [`lookup`](Self::lookup) followed by [`touch`](Self::touch) or
    /// [`update`](Self::update), without finding the entry again.
    /// The key comes as its parts (a [`FlowKey`]'s fields), so no key is built to find it.
    #[inline]
    pub fn find(
        &mut self,
        hash: u64,
        client: &[u8; 16],
        listener: u32,
        port: u16,
        now: u32,
    ) -> Option<FlowRef<'_>> {
        let bi = self.bucket_index(hash);
        let (client, meta) = key_words(client, listener, port);
        let timeout_of = &self.timeout_of;
        // SAFETY: `bi` = hash & mask, and `mask` = buckets.len() - 1 (`new`: the bucket count
        // is a power of two, and neither field changes after), so `bi` < buckets.len().
        let bucket = unsafe { self.buckets.get_unchecked_mut(bi) };
        let e = bucket
            .entries
            .iter_mut()
            // The key part of `meta` compared after one shift: no mask constant per way.
            .find(|e| e.key() == meta && e.client == client)?;
        // Always present: a state byte is below 8.
        let timeout = timeout_of
            .get(usize::from(e.state() & 7))
            .copied()
            .unwrap_or(0);
        (now.wrapping_sub(e.last_seen) <= timeout).then_some(FlowRef { e })
    }

    /// Refreshes an entry found by [`lookup`](Self::lookup), moving it to `state` (a TCP flow
    /// that saw FIN/RST goes to [`FlowState::TcpClosing`]).
    #[inline]
    pub fn touch(&mut self, slot: usize, state: FlowState, now: u32) {
        if let Some(e) = self.entry_mut(slot) {
            FlowRef { e }.touch(state, now);
        }
    }

    /// Points an existing entry at another backend (its old one became unusable).
    #[inline]
    pub fn update(&mut self, slot: usize, backend: u32, state: FlowState, now: u32) {
        if let Some(e) = self.entry_mut(slot) {
            FlowRef { e }.update(backend, state, now);
        }
    }

    #[inline]
    fn entry_mut(&mut self, slot: usize) -> Option<&mut Entry> {
        self.buckets
            .get_mut(slot / WAYS)
            .and_then(|b| b.entries.get_mut(slot % WAYS))
    }

    /// Records a new flow. Uses, in order: the entry of the same key, an empty or expired
    /// entry, the least recently seen half-open entry, or — for a flow that is not itself
    /// half-open — the least recently seen entry of the bucket (a live entry replaced counts as
    /// an eviction). A half-open flow whose bucket holds only live established flows is not
    /// recorded.
    #[inline]
    pub fn insert(&mut self, hash: u64, key: &FlowKey, backend: u32, state: FlowState, now: u32) {
        let bi = self.bucket_index(hash);
        let Some(bucket) = self.buckets.get_mut(bi) else {
            return;
        };
        let (client, meta) = key.words();
        let timeout_of = self.timeout_of;
        // Victim class: 0 same key or dead, 1 live half-open, 2 live established; lowest class
        // first, then the oldest in it.
        let mut victim = 0;
        let mut victim_class = u8::MAX;
        let mut victim_age = 0u32;
        for (way, e) in bucket.entries.iter().enumerate() {
            if e.key() == meta && e.client == client {
                victim = way;
                victim_class = 0;
                break;
            }
            let age = now.wrapping_sub(e.last_seen);
            let timeout = timeout_of
                .get(usize::from(e.state() & 7))
                .copied()
                .unwrap_or(0);
            let class = if e.listener() == 0 || age > timeout {
                0
            } else if e.state() == FlowState::TcpSyn as u8 {
                1
            } else {
                2
            };
            if class < victim_class || (class == victim_class && age > victim_age) {
                victim = way;
                victim_class = class;
                victim_age = age;
            }
        }
        if victim_class == 2 && state == FlowState::TcpSyn {
            self.stats.syn_not_recorded += 1;
            return;
        }
        let victim_live = victim_class != 0;
        if victim_class == 1 {
            self.stats.half_open_evictions += 1;
        }
        let Some(slot) = bucket.entries.get_mut(victim) else {
            return;
        };
        *slot = Entry {
            client,
            meta: meta << KEY_SHIFT | state as u64,
            backend,
            last_seen: now,
        };
        self.stats.inserts += 1;
        if victim_live {
            self.stats.evictions += 1;
        }
    }
}

#[inline]
fn state_from_u8(s: u8) -> FlowState {
    match s {
        1 => FlowState::TcpOpen,
        2 => FlowState::TcpClosing,
        4 => FlowState::TcpSyn,
        _ => FlowState::Udp,
    }
}

#[inline(always)]
fn prefetch_read(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint that never faults, whatever the address; `p` points into
    // the bucket array anyway. SSE is part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
// Tests may panic: the no-panic rule above is for the code they test.
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable
)]
mod tests;
