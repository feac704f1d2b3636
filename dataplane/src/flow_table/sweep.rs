//! The incremental sweep of the flow table: live entries counted per listener and backend slot
//! a few buckets at a time ([`FlowTable::sweep`], [`FlowSweep`]), run by each worker between
//! bursts, and the whole-table count for statistics ([`FlowTable::count_live`]).

use std::fmt;

use super::{prefetch_read, Bucket, FlowTable};
use crate::snapshot::handle_slot;

impl FlowTable {
    /// Visits up to `max_buckets` buckets of the pass `s` is in, counting the entries live at
    /// `now` per listener and backend slot; returns true when this call completed the pass
    /// (a call never starts the next pass, so it does at most `max_buckets` buckets of work).
    /// Bounded: no allocation, one read of each visited bucket, two counter increments per
    /// live entry.
    pub fn sweep(&self, s: &mut FlowSweep, now: u32, max_buckets: usize) -> bool {
        let n = self.buckets.len();
        if s.next >= n {
            s.next = 0;
        }
        let end = s.next.saturating_add(max_buckets.max(1)).min(n);
        let pass = s.pass;
        let (listeners, backends) = (
            half_mut(&mut s.listeners, pass),
            half_mut(&mut s.backends, pass),
        );
        let mut live = 0u64;
        // Runs of entries of one listener (the common case: few listeners, many flows) are
        // added once, in a register, instead of a load-add-store per entry on one address.
        let mut run_tag = 0u32;
        let mut run = 0u64;
        for b in self.buckets.get(s.next..end).unwrap_or_default() {
            for e in &b.entries {
                if e.listener() == 0 || now.wrapping_sub(e.last_seen) > self.timeout(e.state()) {
                    continue;
                }
                live += 1;
                if e.listener() != run_tag {
                    FlowSweep::add(listeners, run_tag.wrapping_sub(1) as usize, run, pass);
                    run_tag = e.listener();
                    run = 0;
                }
                run += 1;
                FlowSweep::add(backends, handle_slot(e.backend), 1, pass);
            }
        }
        // (run_tag 0 with run 0 before the first live entry: slot u32::MAX, out of range.)
        FlowSweep::add(listeners, run_tag.wrapping_sub(1) as usize, run, pass);
        s.live_scratch += live;
        s.next = end;
        // Ask for the next call's buckets now (both lines of each): they arrive while the next
        // burst is processed instead of stalling the next call. Busy calls only; an idle call's
        // long sequential run is what the hardware prefetcher handles by itself.
        if max_buckets <= SWEEP_BUCKETS_BUSY {
            for b in self
                .buckets
                .get(end..end.saturating_add(max_buckets).min(n))
                .unwrap_or_default()
            {
                let p = b as *const Bucket as *const u8;
                prefetch_read(p);
                prefetch_read(p.wrapping_add(64));
            }
        }
        if end == n {
            s.finish_pass();
            true
        } else {
            false
        }
    }

    /// Number of live entries at `now` (walks the whole table: for statistics, not per packet).
    pub fn count_live(&self, now: u32) -> usize {
        self.buckets
            .iter()
            .flat_map(|b| b.entries.iter())
            .filter(|e| {
                e.listener() != 0 && now.wrapping_sub(e.last_seen) <= self.timeout(e.state())
            })
            .count()
    }
}

/// Buckets [`FlowTable::sweep`] visits per poll round that received packets: two buckets
/// (256 B, prefetched one call ahead) cost about 1 % of a 32-packet burst; more evicts lines the
/// next burst needs (see the module documentation for the measurements).
pub const SWEEP_BUCKETS_BUSY: usize = 2;
/// Buckets visited per idle poll round: nothing else is waiting, so the pass can move faster.
pub const SWEEP_BUCKETS_IDLE: usize = 256;

/// Incremental count of live flow-table entries per listener slot and per backend slot.
///
/// A pass visits every bucket once, a few per call, counting live entries into the scratch
/// half of two double-buffered arrays; the other half holds the counts of the last complete
/// pass, which is what the getters return. Finishing a pass only flips which half is which, so
/// no call copies or clears an array: each count carries the number of the pass that wrote it
/// in its upper 32 bits, and a count from an older pass reads as zero. (When that number wraps,
/// after 2^32 passes, each half is cleared once before it is reused so an ancient count cannot
/// alias.)
///
/// All memory is allocated by [`FlowSweep::new`]; sweeping never allocates. An entry's backend
/// slot is its handle's slot ([`handle_slot`]); entries whose listener or backend slot is out of
/// range are counted in [`live`](Self::live) but in no slot. An entry whose backend was deleted
/// and whose slot was reused counts for the slot's new backend until it expires or its next
/// packet re-balances it.
#[derive(Clone)]
pub struct FlowSweep {
    /// Next bucket to visit.
    next: usize,
    /// Number of the pass in progress (≥ 1); its counts go to half `pass & 1`.
    pass: u32,
    listeners: [Box<[u64]>; 2],
    backends: [Box<[u64]>; 2],
    /// Live entries seen so far in the pass in progress.
    live_scratch: u64,
    /// Live entries of the last complete pass.
    live: u64,
    completed: u64,
}

impl fmt::Debug for FlowSweep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowSweep")
            .field("next", &self.next)
            .field("pass", &self.pass)
            .field("live", &self.live)
            .field("completed", &self.completed)
            .finish()
    }
}

const PASS_SHIFT: u32 = 32;
const COUNT_MASK: u64 = (1 << PASS_SHIFT) - 1;

impl FlowSweep {
    /// A sweep with room for `listener_slots` listeners and `backend_slots` backends.
    pub fn new(listener_slots: usize, backend_slots: usize) -> Self {
        let zeros = |n: usize| vec![0u64; n].into_boxed_slice();
        FlowSweep {
            next: 0,
            pass: 1,
            listeners: [zeros(listener_slots), zeros(listener_slots)],
            backends: [zeros(backend_slots), zeros(backend_slots)],
            live_scratch: 0,
            live: 0,
            completed: 0,
        }
    }

    /// Complete passes so far; the getters return zeros until the first.
    pub fn completed_passes(&self) -> u64 {
        self.completed
    }

    /// Live entries counted by the last complete pass.
    pub fn live(&self) -> u64 {
        self.live
    }

    /// Next bucket the sweep visits (0 at the start of a pass).
    pub fn position(&self) -> usize {
        self.next
    }

    /// Live flows of listener slot `slot` at the last complete pass (0 out of range).
    #[inline]
    pub fn listener_active(&self, slot: usize) -> u64 {
        self.published(&self.listeners, slot)
    }

    /// Live flows of backend slot `slot` at the last complete pass (0 out of range).
    #[inline]
    pub fn backend_active(&self, slot: usize) -> u64 {
        self.published(&self.backends, slot)
    }

    #[inline]
    fn published(&self, halves: &[Box<[u64]>; 2], slot: usize) -> u64 {
        let done = self.pass.wrapping_sub(1);
        match half(halves, done).get(slot) {
            Some(&c) if c >> PASS_SHIFT == u64::from(done) => c & COUNT_MASK,
            _ => 0,
        }
    }

    /// Adds `n` to the count of `slot` in `half` for pass `pass` (a count of an older pass
    /// restarts from zero). Out-of-range slots are ignored.
    #[inline]
    fn add(half: &mut [u64], slot: usize, n: u64, pass: u32) {
        if let Some(c) = half.get_mut(slot) {
            let tag = u64::from(pass) << PASS_SHIFT;
            *c = if *c >> PASS_SHIFT == u64::from(pass) {
                c.wrapping_add(n)
            } else {
                tag | n
            };
        }
    }

    /// Jumps to pass number `pass` (tests of the wrap-around).
    #[cfg(test)]
    pub(super) fn set_pass(&mut self, pass: u32) {
        self.pass = pass;
    }

    /// Ends the pass in progress: its counts become the published ones.
    fn finish_pass(&mut self) {
        self.live = self.live_scratch;
        self.live_scratch = 0;
        self.completed += 1;
        self.next = 0;
        self.pass = self.pass.wrapping_add(1);
        if self.pass <= 1 {
            // The pass number wrapped (twice per 2^32 passes): the half this pass writes may
            // hold counts tagged with this number from 2^32 passes ago, so clear it first.
            // (The other half is the published one and stays readable.)
            half_mut(&mut self.listeners, self.pass).fill(0);
            half_mut(&mut self.backends, self.pass).fill(0);
        }
    }
}

/// The half of a double-buffered pair that pass number `pass` uses: `pair[pass & 1]`, without
/// an index to check.
#[inline]
fn half<T>(pair: &[T; 2], pass: u32) -> &T {
    let [even, odd] = pair;
    if pass & 1 == 0 {
        even
    } else {
        odd
    }
}

/// [`half`], writable.
#[inline]
fn half_mut<T>(pair: &mut [T; 2], pass: u32) -> &mut T {
    let [even, odd] = pair;
    if pass & 1 == 0 {
        even
    } else {
        odd
    }
}
