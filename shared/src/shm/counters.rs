//! The counters area: per worker, a block of `u64` counters that only that worker writes and
//! anyone (the control plane, `fiberlbctl stats`) reads.
//!
//! A worker accumulates in its own memory and stores the running totals with plain `Relaxed`
//! stores (no read-modify-write, no shared cache line with another worker); readers sum over
//! workers. Counters only grow, so a reader that sees a slightly old value is merely late.
//!
//! Per-worker block, all `u64`:
//! `[rx_packets, rx_bytes, tx_packets, tx_bytes, 4 reserved]`, `drops[DROP_REASONS]`, then
//! `[packets, bytes, new_flows]` for each listener slot, then for each backend slot. A listener
//! or backend slot is an index the data plane assigns (dense, reused after a delete); which
//! object holds which slot is the data plane's business and is reported with the counters.
//!
//! Sizes: with the defaults (16 workers, 1024 listener slots, 16384 backend slots) a block is
//! (8 + 32 + 3 × 1024 + 3 × 16384) × 8 B ≈ 408 KiB and the area ≈ 6.5 MiB. The maxima (64
//! workers, 4096 listeners, 65536 backends) give ≈ 101 MiB, which is why they are configured per
//! region rather than fixed.

use std::sync::atomic::{AtomicU64, Ordering};

use super::transaction::{MAX_BACKENDS, MAX_LISTENERS};

/// Drop-reason slots per worker (`DropReason` indexes them).
pub const DROP_REASONS: usize = 32;
/// Most workers a region can have counters for.
pub const MAX_WORKERS: u32 = 64;
/// `u64`s before the drop counters: rx/tx packets/bytes and four reserved.
const GLOBALS: usize = 8;
/// `u64`s per listener or backend slot: packets, bytes, new flows.
const PER_OBJECT: usize = 3;

/// How many workers, listener slots and backend slots the area holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountersLayout {
    pub workers: u32,
    pub listeners: u32,
    pub backends: u32,
}

impl Default for CountersLayout {
    fn default() -> Self {
        CountersLayout {
            workers: 16,
            listeners: 1024,
            backends: 16384,
        }
    }
}

impl CountersLayout {
    /// True when every dimension is within its maximum and non-zero.
    pub fn is_valid(&self) -> bool {
        (1..=MAX_WORKERS).contains(&self.workers)
            && (1..=MAX_LISTENERS as u32).contains(&self.listeners)
            && (1..=MAX_BACKENDS as u32).contains(&self.backends)
    }

    /// `u64`s in one worker's block.
    pub fn words_per_worker(&self) -> usize {
        GLOBALS + DROP_REASONS + PER_OBJECT * (self.listeners as usize + self.backends as usize)
    }

    /// Bytes of the whole area.
    pub fn size_bytes(&self) -> u64 {
        (self.words_per_worker() * self.workers as usize * 8) as u64
    }

    fn listener_base(&self, slot: u32) -> usize {
        GLOBALS + DROP_REASONS + PER_OBJECT * slot as usize
    }

    fn backend_base(&self, slot: u32) -> usize {
        GLOBALS + DROP_REASONS + PER_OBJECT * (self.listeners as usize + slot as usize)
    }
}

/// Packet and byte totals of one worker or of all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

/// Counters of one listener or backend slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ObjectCounters {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}

/// One worker's block, for that worker to write. Out-of-range indices are ignored (never a
/// panic on the per-packet path).
#[derive(Debug)]
pub struct WorkerCounters<'a> {
    words: &'a [AtomicU64],
    layout: CountersLayout,
}

impl<'a> WorkerCounters<'a> {
    pub(crate) fn new(words: &'a [AtomicU64], layout: CountersLayout) -> Self {
        WorkerCounters { words, layout }
    }

    #[inline]
    fn store(&self, index: usize, value: u64) {
        if let Some(w) = self.words.get(index) {
            w.store(value, Ordering::Relaxed);
        }
    }

    /// Publishes the worker's running totals.
    #[inline]
    pub fn set_totals(&self, t: Totals) {
        self.store(0, t.rx_packets);
        self.store(1, t.rx_bytes);
        self.store(2, t.tx_packets);
        self.store(3, t.tx_bytes);
    }

    /// Publishes the running total of drops for `reason`.
    #[inline]
    pub fn set_drops(&self, reason: usize, value: u64) {
        if reason < DROP_REASONS {
            self.store(GLOBALS + reason, value);
        }
    }

    /// Publishes the running counters of listener slot `slot`.
    #[inline]
    pub fn set_listener(&self, slot: u32, c: ObjectCounters) {
        if slot < self.layout.listeners {
            self.store_object(self.layout.listener_base(slot), c);
        }
    }

    /// Publishes the running counters of backend slot `slot`.
    #[inline]
    pub fn set_backend(&self, slot: u32, c: ObjectCounters) {
        if slot < self.layout.backends {
            self.store_object(self.layout.backend_base(slot), c);
        }
    }

    fn store_object(&self, base: usize, c: ObjectCounters) {
        self.store(base, c.packets);
        self.store(base + 1, c.bytes);
        self.store(base + 2, c.new_flows);
    }
}

/// Reads the whole area, summing over workers.
#[derive(Debug, Clone, Copy)]
pub struct CountersReader<'a> {
    words: &'a [AtomicU64],
    layout: CountersLayout,
}

impl<'a> CountersReader<'a> {
    pub(crate) fn new(words: &'a [AtomicU64], layout: CountersLayout) -> Self {
        CountersReader { words, layout }
    }

    fn sum(&self, index: usize) -> u64 {
        let stride = self.layout.words_per_worker();
        (0..self.layout.workers as usize)
            .filter_map(|w| self.words.get(w * stride + index))
            .fold(0u64, |acc, v| acc.wrapping_add(v.load(Ordering::Relaxed)))
    }

    /// Totals over all workers.
    pub fn totals(&self) -> Totals {
        Totals {
            rx_packets: self.sum(0),
            rx_bytes: self.sum(1),
            tx_packets: self.sum(2),
            tx_bytes: self.sum(3),
        }
    }

    /// Drops for `reason` over all workers (0 for an unknown reason).
    pub fn drops(&self, reason: usize) -> u64 {
        if reason < DROP_REASONS {
            self.sum(GLOBALS + reason)
        } else {
            0
        }
    }

    /// Counters of listener slot `slot` over all workers.
    pub fn listener(&self, slot: u32) -> ObjectCounters {
        if slot >= self.layout.listeners {
            return ObjectCounters::default();
        }
        self.object(self.layout.listener_base(slot))
    }

    /// Counters of backend slot `slot` over all workers.
    pub fn backend(&self, slot: u32) -> ObjectCounters {
        if slot >= self.layout.backends {
            return ObjectCounters::default();
        }
        self.object(self.layout.backend_base(slot))
    }

    fn object(&self, base: usize) -> ObjectCounters {
        ObjectCounters {
            packets: self.sum(base),
            bytes: self.sum(base + 1),
            new_flows: self.sum(base + 2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_write_readers_sum() {
        let layout = CountersLayout {
            workers: 3,
            listeners: 4,
            backends: 8,
        };
        let words: Vec<AtomicU64> = (0..layout.words_per_worker() * 3)
            .map(|_| AtomicU64::new(0))
            .collect();
        let stride = layout.words_per_worker();
        for w in 0..3u64 {
            let block = &words[w as usize * stride..(w as usize + 1) * stride];
            let c = WorkerCounters::new(block, layout);
            c.set_totals(Totals {
                rx_packets: 10 + w,
                rx_bytes: 1000,
                tx_packets: 9,
                tx_bytes: 900,
            });
            c.set_drops(5, w + 1);
            c.set_drops(DROP_REASONS, 99); // ignored
            c.set_listener(
                3,
                ObjectCounters {
                    packets: 2,
                    bytes: 20,
                    new_flows: 1,
                },
            );
            c.set_backend(
                7,
                ObjectCounters {
                    packets: w,
                    bytes: 0,
                    new_flows: 0,
                },
            );
            c.set_backend(
                8,
                ObjectCounters {
                    packets: 999,
                    bytes: 0,
                    new_flows: 0,
                },
            ); // ignored
        }
        let r = CountersReader::new(&words, layout);
        assert_eq!(
            r.totals(),
            Totals {
                rx_packets: 33,
                rx_bytes: 3000,
                tx_packets: 27,
                tx_bytes: 2700
            }
        );
        assert_eq!(r.drops(5), 6);
        assert_eq!(r.drops(4), 0);
        assert_eq!(
            r.listener(3),
            ObjectCounters {
                packets: 6,
                bytes: 60,
                new_flows: 3
            }
        );
        assert_eq!(r.backend(7).packets, 3);
        assert_eq!(r.backend(0), ObjectCounters::default());
        assert_eq!(r.backend(8), ObjectCounters::default());
    }

    #[test]
    fn default_layout_size() {
        let l = CountersLayout::default();
        assert!(l.is_valid());
        assert_eq!(l.words_per_worker(), 8 + 32 + 3 * (1024 + 16384));
        assert!(l.size_bytes() < 7 << 20);
    }
}
