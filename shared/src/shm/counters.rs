//! The counters area: per worker, a block of `u64` counters that only that worker writes and
//! anyone (the control plane, `fiberlbctl stats`) reads.
//!
//! A worker accumulates in its own memory and stores the running totals with plain `Relaxed`
//! stores (no read-modify-write, no shared cache line with another worker); readers sum over
//! workers, or read one worker's block ([`CountersReader::worker`]). Counters only grow, so a
//! reader that sees a slightly old value is merely late. The one exception is `active_flows`, a
//! gauge: each worker stores its own current count and the sum over workers is the total.
//!
//! Per-worker block, all `u64`:
//! `[rx_packets, rx_bytes, tx_packets, tx_bytes, to_host, 3 reserved]`, `drops[DROP_REASONS]`,
//! then `[packets, bytes, new_flows, active_flows]` for each listener slot, then for each
//! backend slot. A listener or backend slot is an index the data plane assigns (dense, reused
//! after a delete); which object holds which slot is the data plane's business and is reported
//! with the counters. This layout is region layout version 2
//! ([`LAYOUT_VERSION`](super::region::LAYOUT_VERSION)); version 1 had three words per object
//! and no `to_host`, and the two sides refuse each other's regions.
//!
//! Sizes: with the defaults (16 workers, 1024 listener slots, 16384 backend slots) a block is
//! (8 + 32 + 4 × 1024 + 4 × 16384) × 8 B ≈ 544 KiB and the area ≈ 8.5 MiB. The maxima (64
//! workers, 4096 listeners, 65536 backends) give ≈ 135 MiB, which is why they are configured per
//! region rather than fixed.

use std::sync::atomic::{AtomicU64, Ordering};

use super::transaction::{MAX_BACKENDS, MAX_LISTENERS};

/// Drop-reason slots per worker (`DropReason` indexes them).
pub const DROP_REASONS: usize = 32;
/// Most workers a region can have counters for.
pub const MAX_WORKERS: u32 = 64;
/// `u64`s before the drop counters: rx/tx packets/bytes, to_host and three reserved.
const GLOBALS: usize = 8;
/// Index of `to_host` among the globals.
const TO_HOST: usize = 4;
/// `u64`s per listener or backend slot: packets, bytes, new flows, active flows.
const PER_OBJECT: usize = 4;

pub use crate::drop_reasons::{drop_reason_label, DROP_REASON_NAMES};

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
    /// Packets handed to the kernel through the port's exception path (not fiberlb's).
    pub to_host: u64,
}

/// Counters of one listener or backend slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ObjectCounters {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    /// Live flow-table entries (a gauge, refreshed once per flow-table sweep).
    pub active_flows: u64,
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
        self.store(TO_HOST, t.to_host);
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
        self.store(base + 3, c.active_flows);
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

    /// Number of worker blocks in the area (some may belong to workers that never ran and
    /// read as zeros).
    pub fn workers(&self) -> u32 {
        self.layout.workers
    }

    /// Blocks up to the last one that counted anything (packets received, handed to the host
    /// or dropped): the workers that ran, for a reader that is not told how many there are.
    /// A worker that never received a packet and sits after the last busy one is not counted.
    pub fn workers_in_use(&self) -> u32 {
        (0..self.layout.workers)
            .rev()
            .find(|&w| {
                self.worker(w).is_some_and(|r| {
                    let t = r.totals();
                    t.rx_packets > 0 || t.to_host > 0 || (0..DROP_REASONS).any(|d| r.drops(d) > 0)
                })
            })
            .map_or(0, |w| w + 1)
    }

    /// Worker `worker`'s block alone (`None` out of range).
    pub fn worker(&self, worker: u32) -> Option<WorkerReader<'a>> {
        if worker >= self.layout.workers {
            return None;
        }
        let stride = self.layout.words_per_worker();
        let start = worker as usize * stride;
        self.words
            .get(start..start + stride)
            .map(|words| WorkerReader {
                words,
                layout: self.layout,
            })
    }

    fn sum(&self, index: usize) -> u64 {
        (0..self.layout.workers)
            .filter_map(|w| self.worker(w))
            .fold(0u64, |acc, w| acc.wrapping_add(w.load(index)))
    }

    /// Totals over all workers.
    pub fn totals(&self) -> Totals {
        self.read_totals()
    }

    /// Drops for `reason` over all workers (0 for an unknown reason).
    pub fn drops(&self, reason: usize) -> u64 {
        self.read_drops(reason)
    }

    /// Counters of listener slot `slot` over all workers.
    pub fn listener(&self, slot: u32) -> ObjectCounters {
        self.read_listener(slot)
    }

    /// Counters of backend slot `slot` over all workers.
    pub fn backend(&self, slot: u32) -> ObjectCounters {
        self.read_backend(slot)
    }
}

/// Reads one worker's block ([`CountersReader::worker`]).
#[derive(Debug, Clone, Copy)]
pub struct WorkerReader<'a> {
    words: &'a [AtomicU64],
    layout: CountersLayout,
}

impl WorkerReader<'_> {
    fn load(&self, index: usize) -> u64 {
        self.words
            .get(index)
            .map_or(0, |w| w.load(Ordering::Relaxed))
    }

    /// This worker's totals.
    pub fn totals(&self) -> Totals {
        self.read_totals()
    }

    /// This worker's drops for `reason` (0 for an unknown reason).
    pub fn drops(&self, reason: usize) -> u64 {
        self.read_drops(reason)
    }

    /// This worker's counters of listener slot `slot`.
    pub fn listener(&self, slot: u32) -> ObjectCounters {
        self.read_listener(slot)
    }

    /// This worker's counters of backend slot `slot`.
    pub fn backend(&self, slot: u32) -> ObjectCounters {
        self.read_backend(slot)
    }
}

/// The block layout decoded once for both readers: a source gives the value of word `index`
/// of a worker block (one worker's, or the sum over all workers), the provided methods know
/// where totals, drops and objects sit.
trait WordSource {
    fn word(&self, index: usize) -> u64;
    fn layout(&self) -> CountersLayout;

    fn read_totals(&self) -> Totals {
        Totals {
            rx_packets: self.word(0),
            rx_bytes: self.word(1),
            tx_packets: self.word(2),
            tx_bytes: self.word(3),
            to_host: self.word(TO_HOST),
        }
    }

    fn read_drops(&self, reason: usize) -> u64 {
        if reason < DROP_REASONS {
            self.word(GLOBALS + reason)
        } else {
            0
        }
    }

    fn read_listener(&self, slot: u32) -> ObjectCounters {
        let layout = self.layout();
        if slot >= layout.listeners {
            return ObjectCounters::default();
        }
        self.read_object(layout.listener_base(slot))
    }

    fn read_backend(&self, slot: u32) -> ObjectCounters {
        let layout = self.layout();
        if slot >= layout.backends {
            return ObjectCounters::default();
        }
        self.read_object(layout.backend_base(slot))
    }

    fn read_object(&self, base: usize) -> ObjectCounters {
        ObjectCounters {
            packets: self.word(base),
            bytes: self.word(base + 1),
            new_flows: self.word(base + 2),
            active_flows: self.word(base + 3),
        }
    }
}

impl WordSource for CountersReader<'_> {
    fn word(&self, index: usize) -> u64 {
        self.sum(index)
    }
    fn layout(&self) -> CountersLayout {
        self.layout
    }
}

impl WordSource for WorkerReader<'_> {
    fn word(&self, index: usize) -> u64 {
        self.load(index)
    }
    fn layout(&self) -> CountersLayout {
        self.layout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area(layout: CountersLayout) -> Vec<AtomicU64> {
        (0..layout.words_per_worker() * layout.workers as usize)
            .map(|_| AtomicU64::new(0))
            .collect()
    }

    fn block(words: &[AtomicU64], layout: CountersLayout, w: usize) -> WorkerCounters<'_> {
        let stride = layout.words_per_worker();
        WorkerCounters::new(&words[w * stride..(w + 1) * stride], layout)
    }

    #[test]
    fn workers_write_readers_sum() {
        let layout = CountersLayout {
            workers: 3,
            listeners: 4,
            backends: 8,
        };
        let words = area(layout);
        for w in 0..3u64 {
            let c = block(&words, layout, w as usize);
            c.set_totals(Totals {
                rx_packets: 10 + w,
                rx_bytes: 1000,
                tx_packets: 9,
                tx_bytes: 900,
                to_host: w,
            });
            c.set_drops(5, w + 1);
            c.set_drops(DROP_REASONS, 99); // ignored
            c.set_listener(
                3,
                ObjectCounters {
                    packets: 2,
                    bytes: 20,
                    new_flows: 1,
                    active_flows: 5 + w,
                },
            );
            c.set_backend(
                7,
                ObjectCounters {
                    packets: w,
                    active_flows: 1,
                    ..ObjectCounters::default()
                },
            );
            c.set_backend(
                8,
                ObjectCounters {
                    packets: 999,
                    ..ObjectCounters::default()
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
                tx_bytes: 2700,
                to_host: 3,
            }
        );
        assert_eq!(r.drops(5), 6);
        assert_eq!(r.drops(4), 0);
        assert_eq!(r.drops(DROP_REASONS), 0);
        assert_eq!(
            r.listener(3),
            ObjectCounters {
                packets: 6,
                bytes: 60,
                new_flows: 3,
                active_flows: 18,
            }
        );
        assert_eq!(r.backend(7).packets, 3);
        assert_eq!(r.backend(7).active_flows, 3);
        assert_eq!(r.backend(0), ObjectCounters::default());
        assert_eq!(r.backend(8), ObjectCounters::default());
    }

    #[test]
    fn per_worker_reads_see_only_that_block() {
        let layout = CountersLayout {
            workers: 2,
            listeners: 2,
            backends: 2,
        };
        let words = area(layout);
        for w in 0..2u64 {
            let c = block(&words, layout, w as usize);
            c.set_totals(Totals {
                rx_packets: 100 * (w + 1),
                rx_bytes: 1,
                tx_packets: 2,
                tx_bytes: 3,
                to_host: 7 + w,
            });
            c.set_drops(12, 40 + w);
            c.set_listener(
                1,
                ObjectCounters {
                    active_flows: 10 * (w + 1),
                    ..ObjectCounters::default()
                },
            );
            c.set_backend(
                1,
                ObjectCounters {
                    new_flows: w + 1,
                    active_flows: w,
                    ..ObjectCounters::default()
                },
            );
        }
        let r = CountersReader::new(&words, layout);
        assert_eq!(r.workers(), 2);
        let w1 = r.worker(1).unwrap();
        assert_eq!(
            w1.totals(),
            Totals {
                rx_packets: 200,
                rx_bytes: 1,
                tx_packets: 2,
                tx_bytes: 3,
                to_host: 8,
            }
        );
        assert_eq!(w1.drops(12), 41);
        assert_eq!(w1.drops(DROP_REASONS), 0);
        assert_eq!(w1.listener(1).active_flows, 20);
        assert_eq!(w1.listener(2), ObjectCounters::default());
        assert_eq!(w1.backend(1).new_flows, 2);
        assert_eq!(w1.backend(2), ObjectCounters::default());
        assert_eq!(r.worker(0).unwrap().totals().rx_packets, 100);
        assert_eq!(r.worker(0).unwrap().drops(12), 40);
        assert!(r.worker(2).is_none());
        assert_eq!(r.workers_in_use(), 2);
        // The sums are the per-worker values added up.
        assert_eq!(r.drops(12), 81);
        assert_eq!(r.totals().to_host, 15);
        assert_eq!(r.listener(1).active_flows, 30);
    }

    #[test]
    fn workers_in_use_ends_at_the_last_busy_block() {
        let layout = CountersLayout {
            workers: 4,
            listeners: 1,
            backends: 1,
        };
        let words = area(layout);
        let r = CountersReader::new(&words, layout);
        assert_eq!(r.workers_in_use(), 0);
        block(&words, layout, 1).set_drops(31, 1);
        assert_eq!(r.workers_in_use(), 2, "a drop alone makes a block busy");
        block(&words, layout, 2).set_totals(Totals {
            to_host: 1,
            ..Totals::default()
        });
        assert_eq!(r.workers_in_use(), 3);
        // Object counters alone (no rx) do not: every packet is in rx first.
        block(&words, layout, 3).set_backend(
            0,
            ObjectCounters {
                active_flows: 1,
                ..ObjectCounters::default()
            },
        );
        assert_eq!(r.workers_in_use(), 3);
    }

    #[test]
    fn objects_do_not_overlap() {
        // Every word of every slot written with a distinct value reads back unchanged: the
        // four-word object stride and the globals do not overlap.
        let layout = CountersLayout {
            workers: 1,
            listeners: 3,
            backends: 5,
        };
        let words = area(layout);
        let c = block(&words, layout, 0);
        let obj = |base: u64| ObjectCounters {
            packets: base,
            bytes: base + 1,
            new_flows: base + 2,
            active_flows: base + 3,
        };
        c.set_totals(Totals {
            rx_packets: 1,
            rx_bytes: 2,
            tx_packets: 3,
            tx_bytes: 4,
            to_host: 5,
        });
        for r in 0..DROP_REASONS {
            c.set_drops(r, 1000 + r as u64);
        }
        for s in 0..3 {
            c.set_listener(s, obj(10_000 + 10 * u64::from(s)));
        }
        for s in 0..5 {
            c.set_backend(s, obj(20_000 + 10 * u64::from(s)));
        }
        let r = CountersReader::new(&words, layout);
        assert_eq!(r.totals().to_host, 5);
        assert_eq!(r.totals().tx_bytes, 4);
        for d in 0..DROP_REASONS {
            assert_eq!(r.drops(d), 1000 + d as u64);
        }
        for s in 0..3 {
            assert_eq!(r.listener(s), obj(10_000 + 10 * u64::from(s)));
        }
        for s in 0..5 {
            assert_eq!(r.backend(s), obj(20_000 + 10 * u64::from(s)));
        }
        // The last word of the block is the last backend's active_flows.
        assert_eq!(words.last().unwrap().load(Ordering::Relaxed), 20_043);
    }

    #[test]
    fn drop_reason_labels() {
        assert_eq!(DROP_REASON_NAMES.len(), 13);
        assert!(DROP_REASON_NAMES.len() <= DROP_REASONS);
        assert_eq!(drop_reason_label(0), "malformed");
        assert_eq!(drop_reason_label(12), "tx_ring_full");
        assert_eq!(drop_reason_label(20), "reason_20");
    }

    #[test]
    fn default_layout_size() {
        let l = CountersLayout::default();
        assert!(l.is_valid());
        assert_eq!(l.words_per_worker(), 8 + 32 + 4 * (1024 + 16384));
        assert!(l.size_bytes() < 9 << 20);
        let max = CountersLayout {
            workers: MAX_WORKERS,
            listeners: MAX_LISTENERS as u32,
            backends: MAX_BACKENDS as u32,
        };
        assert!(max.is_valid());
        assert!(max.size_bytes() < 140 << 20, "{}", max.size_bytes());
    }
}
