//! Single-producer single-consumer ring of fixed-size messages, usable across processes.
//!
//! Layout (what a [`RingStorage`] points at): a [`RingControl`] — the producer index and the
//! consumer index, each alone on its own 128-byte block so the two sides never write the same
//! cache line (or adjacent-line prefetch pair) — and `capacity` slots of [`SLOT_SIZE`] bytes.
//! Indices are `u64` positions that only grow (they never wrap in practice: 2^64 messages);
//! position `p` lives in slot `p % capacity`, capacity a power of two.
//!
//! Protocol: the producer writes a slot, then publishes `producer = p + 1` with `Release`; the
//! consumer reads `producer` with `Acquire`, copies the slot out, then publishes
//! `consumer = p + 1` with `Release`, which the producer reads with `Acquire` before reusing the
//! slot. A slot therefore belongs to exactly one side at a time, and the region holds no
//! pointers, only offsets: it works unchanged between two processes mapping the same file.
//!
//! Neither side trusts the other's index: a value that would make more than `capacity` messages
//! outstanding, or a consumer ahead of the producer, is reported as [`RingError::Corrupt`]
//! instead of being followed. (The message bytes themselves are validated by `message::decode`.)
//!
//! Model check (CI), under two minutes:
//! `RUSTFLAGS="--cfg loom" cargo test -p fiberlb-shared --release --lib shm::ring`
//! Miri, where the nightly toolchain has it:
//! `cargo +nightly miri test -p fiberlb-shared --lib shm::ring`

use std::fmt;

use super::sync::{Arc, AtomicU64, Ordering, UnsafeCell};

/// Size of one message slot in bytes.
pub const SLOT_SIZE: usize = 256;

/// Largest ring capacity accepted (a power of two); 65536 slots are 16 MiB.
pub const MAX_CAPACITY: u64 = 1 << 16;

/// The bytes of one message slot.
pub type SlotBytes = [u8; SLOT_SIZE];

/// Keeps a value alone on a 128-byte block (two cache lines: Intel's adjacent-line prefetcher
/// pairs lines, so 64 bytes are not enough to avoid false sharing).
#[derive(Debug, Default)]
#[repr(C, align(128))]
pub struct CachePadded<T>(pub T);

/// The two indices of a ring. In the mapped region it sits at the ring's offset, followed by the
/// slots.
#[derive(Debug)]
#[repr(C)]
pub struct RingControl {
    /// Next position the producer will write; everything below it is published.
    producer: CachePadded<AtomicU64>,
    /// Next position the consumer will read; everything below it is free again.
    consumer: CachePadded<AtomicU64>,
}

impl RingControl {
    /// Both indices at 0: an empty ring.
    pub fn new() -> Self {
        RingControl {
            producer: CachePadded(AtomicU64::new(0)),
            consumer: CachePadded(AtomicU64::new(0)),
        }
    }

    /// The producer index as last published (for status and tests).
    pub fn producer_index(&self) -> u64 {
        self.producer.0.load(Ordering::Acquire)
    }

    /// The consumer index as last published (for status and tests).
    pub fn consumer_index(&self) -> u64 {
        self.consumer.0.load(Ordering::Acquire)
    }
}

impl Default for RingControl {
    fn default() -> Self {
        RingControl::new()
    }
}

/// One message slot. Handed between the sides by the index protocol, never accessed by both at
/// once.
#[repr(transparent)]
pub struct Slot(UnsafeCell<SlotBytes>);

impl Slot {
    /// A zeroed slot.
    pub fn new() -> Self {
        Slot(UnsafeCell::new([0; SLOT_SIZE]))
    }
}

impl Default for Slot {
    fn default() -> Self {
        Slot::new()
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Slot(..)")
    }
}

// SAFETY: a slot is only written by the producer while it owns it (position >= consumer index
// + capacity is impossible, checked in `try_push`) and only read by the consumer after the
// producer published it with Release and the consumer loaded that with Acquire; the index
// protocol gives each access a happens-before edge to the next, so sharing `&Slot` between
// threads (or processes) never produces a data race.
unsafe impl Sync for Slot {}
// SAFETY: a slot is plain bytes; moving it between threads is sound.
unsafe impl Send for Slot {}

/// Where a ring lives: its control block and its slots. Implemented by the heap ring (tests,
/// loom) and the mapped ring of the shared-memory region.
pub trait RingStorage {
    /// The ring's indices.
    fn control(&self) -> &RingControl;
    /// The ring's slots; the length is the capacity and must be a power of two.
    fn slots(&self) -> &[Slot];
}

/// Why a ring operation did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("ring full: all {capacity} slots hold messages the other side has not consumed yet; retry later (is the other process alive?)")]
    Full { capacity: u64 },
    #[error("ring indices are inconsistent (producer {producer}, consumer {consumer}, capacity {capacity}): the region is corrupt or written by a third party; recreate it")]
    Corrupt {
        producer: u64,
        consumer: u64,
        capacity: u64,
    },
    #[error("ring capacity {0} must be a power of two between 2 and {max}", max = MAX_CAPACITY)]
    BadCapacity(u64),
}

/// True for a capacity the ring accepts.
pub const fn capacity_ok(capacity: u64) -> bool {
    capacity >= 2 && capacity <= MAX_CAPACITY && capacity.is_power_of_two()
}

/// Checks the indices read from the shared control block.
fn check_indices(producer: u64, consumer: u64, capacity: u64) -> Result<u64, RingError> {
    let used = producer.wrapping_sub(consumer);
    if used > capacity {
        return Err(RingError::Corrupt {
            producer,
            consumer,
            capacity,
        });
    }
    Ok(used)
}

fn checked_capacity<S: RingStorage>(storage: &S) -> Result<u64, RingError> {
    let capacity = storage.slots().len() as u64;
    if capacity_ok(capacity) {
        Ok(capacity)
    } else {
        Err(RingError::BadCapacity(capacity))
    }
}

/// The writing end. There must be exactly one per ring (the region hands out one per side).
#[derive(Debug)]
pub struct Producer<S: RingStorage> {
    storage: S,
    capacity: u64,
    /// Next position to write; mirrors the shared producer index, which only we write.
    tail: u64,
    /// Last consumer index seen; refreshed only when the ring looks full.
    head_cache: u64,
}

impl<S: RingStorage> Producer<S> {
    /// Takes the writing end, resuming at the shared producer index (so a restarted producer
    /// continues where its predecessor stopped).
    ///
    /// # Errors
    /// [`RingError::BadCapacity`], or [`RingError::Corrupt`] when the indices are inconsistent.
    pub fn new(storage: S) -> Result<Self, RingError> {
        let capacity = checked_capacity(&storage)?;
        let control = storage.control();
        let tail = control.producer.0.load(Ordering::Acquire);
        let head = control.consumer.0.load(Ordering::Acquire);
        check_indices(tail, head, capacity)?;
        Ok(Producer {
            storage,
            capacity,
            tail,
            head_cache: head,
        })
    }

    /// Position the next pushed message will have (its sequence number is this plus one).
    pub fn position(&self) -> u64 {
        self.tail
    }

    /// Number of slots.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Copies `message` into the next slot and publishes it.
    ///
    /// # Errors
    /// [`RingError::Full`] when the consumer has not freed a slot; [`RingError::Corrupt`] when
    /// the consumer index is impossible.
    pub fn try_push(&mut self, message: &SlotBytes) -> Result<(), RingError> {
        if self.tail.wrapping_sub(self.head_cache) >= self.capacity {
            // Acquire: the consumer's copy out of the slot happens before we overwrite it.
            self.head_cache = self.storage.control().consumer.0.load(Ordering::Acquire);
            let used = check_indices(self.tail, self.head_cache, self.capacity)?;
            if used == self.capacity {
                return Err(RingError::Full {
                    capacity: self.capacity,
                });
            }
        }
        // `capacity` is a power of two no larger than the slot count, so the index is in range.
        let slot = &self.storage.slots()[(self.tail & (self.capacity - 1)) as usize];
        slot.0.with_mut(|bytes| {
            // SAFETY: position `tail` is not yet published and the consumer has released it
            // (tail - consumer < capacity, checked above with an Acquire load), so nobody else
            // accesses this slot until the Release store below.
            unsafe { *bytes = *message }
        });
        self.tail = self.tail.wrapping_add(1);
        self.storage
            .control()
            .producer
            .0
            .store(self.tail, Ordering::Release);
        Ok(())
    }
}

/// A message taken off the ring, with its position (for the sequence-number check).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Popped {
    /// Position of the message in the ring's stream (0 for the first message ever).
    pub position: u64,
    /// The slot's bytes, copied out, so the slot is free again already.
    pub bytes: SlotBytes,
}

/// The reading end. There must be exactly one per ring.
#[derive(Debug)]
pub struct Consumer<S: RingStorage> {
    storage: S,
    capacity: u64,
    /// Next position to read; mirrors the shared consumer index, which only we write.
    head: u64,
    /// Last producer index seen; refreshed only when the ring looks empty.
    tail_cache: u64,
}

impl<S: RingStorage> Consumer<S> {
    /// Takes the reading end, resuming at the shared consumer index.
    ///
    /// # Errors
    /// [`RingError::BadCapacity`], or [`RingError::Corrupt`] when the indices are inconsistent.
    pub fn new(storage: S) -> Result<Self, RingError> {
        let capacity = checked_capacity(&storage)?;
        let control = storage.control();
        let head = control.consumer.0.load(Ordering::Acquire);
        let tail = control.producer.0.load(Ordering::Acquire);
        check_indices(tail, head, capacity)?;
        Ok(Consumer {
            storage,
            capacity,
            head,
            tail_cache: tail,
        })
    }

    /// Position of the next message to pop.
    pub fn position(&self) -> u64 {
        self.head
    }

    /// Number of slots.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Takes the next message, if any.
    ///
    /// # Errors
    /// [`RingError::Corrupt`] when the producer index is impossible (more than `capacity`
    /// messages outstanding, or behind the consumer).
    pub fn try_pop(&mut self) -> Result<Option<Popped>, RingError> {
        if self.head == self.tail_cache {
            // Acquire: the producer's write of the slot happens before our read.
            self.tail_cache = self.storage.control().producer.0.load(Ordering::Acquire);
            let available = check_indices(self.tail_cache, self.head, self.capacity)?;
            if available == 0 {
                return Ok(None);
            }
        }
        let slot = &self.storage.slots()[(self.head & (self.capacity - 1)) as usize];
        let bytes = slot.0.with(|bytes| {
            // SAFETY: position `head` was published by the producer (head < producer index,
            // loaded with Acquire) and is not released until the Release store below, so the
            // producer does not touch this slot meanwhile.
            unsafe { *bytes }
        });
        let position = self.head;
        self.head = self.head.wrapping_add(1);
        self.storage
            .control()
            .consumer
            .0
            .store(self.head, Ordering::Release);
        Ok(Some(Popped { position, bytes }))
    }
}

/// A ring on the heap, for tests, loom, and in-process use.
#[derive(Debug, Clone)]
pub struct HeapRing(Arc<HeapRingInner>);

#[derive(Debug)]
struct HeapRingInner {
    control: RingControl,
    slots: Box<[Slot]>,
}

impl RingStorage for HeapRing {
    fn control(&self) -> &RingControl {
        &self.0.control
    }

    fn slots(&self) -> &[Slot] {
        &self.0.slots
    }
}

/// A heap ring of `capacity` slots and its two ends.
///
/// # Errors
/// [`RingError::BadCapacity`] unless `capacity` is a power of two in `2..=MAX_CAPACITY`.
pub fn heap_channel(capacity: u64) -> Result<(Producer<HeapRing>, Consumer<HeapRing>), RingError> {
    if !capacity_ok(capacity) {
        return Err(RingError::BadCapacity(capacity));
    }
    let ring = HeapRing(Arc::new(HeapRingInner {
        control: RingControl::new(),
        slots: (0..capacity).map(|_| Slot::new()).collect(),
    }));
    Ok((Producer::new(ring.clone())?, Consumer::new(ring)?))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn message(i: u64) -> SlotBytes {
        let mut m = [0u8; SLOT_SIZE];
        for (k, b) in m.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(k as u8);
        }
        m[..8].copy_from_slice(&i.to_le_bytes());
        m
    }

    #[test]
    fn round_trip_full_and_empty() {
        let (mut p, mut c) = heap_channel(4).unwrap();
        assert_eq!(c.try_pop().unwrap(), None);
        for i in 0..4 {
            p.try_push(&message(i)).unwrap();
        }
        assert_eq!(
            p.try_push(&message(4)),
            Err(RingError::Full { capacity: 4 })
        );
        for i in 0..4 {
            let got = c.try_pop().unwrap().unwrap();
            assert_eq!(got.position, i);
            assert_eq!(got.bytes, message(i));
        }
        assert_eq!(c.try_pop().unwrap(), None);
        // Wrap around several times.
        for i in 4..40 {
            p.try_push(&message(i)).unwrap();
            let got = c.try_pop().unwrap().unwrap();
            assert_eq!((got.position, got.bytes), (i, message(i)));
        }
        assert_eq!(p.position(), 40);
        assert_eq!(c.position(), 40);
    }

    #[test]
    fn bad_capacity_refused() {
        for cap in [0, 1, 3, 6, MAX_CAPACITY * 2] {
            assert_eq!(
                heap_channel(cap).err(),
                Some(RingError::BadCapacity(cap)),
                "{cap}"
            );
        }
    }

    #[test]
    fn corrupt_indices_reported() {
        let (mut p, mut c) = heap_channel(4).unwrap();
        let ring = p.storage.clone();
        // A producer index claiming 9 outstanding messages in a 4-slot ring.
        ring.control().producer.0.store(9, Ordering::Release);
        assert!(matches!(c.try_pop(), Err(RingError::Corrupt { .. })));
        // A consumer index ahead of the producer.
        ring.control().producer.0.store(0, Ordering::Release);
        ring.control().consumer.0.store(100, Ordering::Release);
        // The cached head lets the first four pushes through without reading the index.
        for i in 0..4 {
            p.try_push(&message(i)).unwrap();
        }
        assert!(matches!(
            p.try_push(&message(9)),
            Err(RingError::Corrupt { .. })
        ));
        assert!(matches!(
            Consumer::new(ring.clone()),
            Err(RingError::Corrupt { .. })
        ));
    }

    #[test]
    fn resumes_at_shared_indices() {
        let (mut p, mut c) = heap_channel(8).unwrap();
        for i in 0..5 {
            p.try_push(&message(i)).unwrap();
        }
        c.try_pop().unwrap().unwrap();
        let ring = p.storage.clone();
        drop((p, c));
        // A restarted side picks up where the old one stopped.
        let mut p = Producer::new(ring.clone()).unwrap();
        let mut c = Consumer::new(ring).unwrap();
        assert_eq!((p.position(), c.position()), (5, 1));
        p.try_push(&message(5)).unwrap();
        for i in 1..6 {
            assert_eq!(c.try_pop().unwrap().unwrap().bytes, message(i));
        }
    }

    #[test]
    fn threads_pass_messages_in_order() {
        let n: u64 = if cfg!(miri) { 200 } else { 100_000 };
        let (mut p, mut c) = heap_channel(16).unwrap();
        let producer = std::thread::spawn(move || {
            let mut i = 0;
            while i < n {
                match p.try_push(&message(i)) {
                    Ok(()) => i += 1,
                    Err(RingError::Full { .. }) => std::thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        });
        let mut next = 0;
        while next < n {
            match c.try_pop().unwrap() {
                Some(got) => {
                    assert_eq!(got.position, next);
                    assert_eq!(got.bytes, message(next));
                    next += 1;
                }
                None => std::thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert_eq!(c.try_pop().unwrap(), None);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    fn message(i: u64) -> SlotBytes {
        let mut m = [0u8; SLOT_SIZE];
        m[..8].copy_from_slice(&i.to_le_bytes());
        m[SLOT_SIZE - 1] = i as u8 ^ 0x5a;
        m
    }

    /// Three messages through a two-slot ring: the producer must wait for the consumer and
    /// reuse slot 0, exercising wrap-around; loom explores every interleaving and its
    /// `UnsafeCell` tracking flags any slot access the indices do not order.
    #[test]
    fn loom_spsc_wraps_in_order() {
        loom::model(|| {
            const N: u64 = 3;
            let (mut p, mut c) = heap_channel(2).unwrap();
            let producer = loom::thread::spawn(move || {
                let mut i = 0;
                while i < N {
                    match p.try_push(&message(i)) {
                        Ok(()) => i += 1,
                        Err(RingError::Full { .. }) => loom::thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
            });
            let mut next = 0;
            while next < N {
                match c.try_pop().unwrap() {
                    Some(got) => {
                        assert_eq!(got.position, next);
                        assert_eq!(got.bytes, message(next));
                        next += 1;
                    }
                    None => loom::thread::yield_now(),
                }
            }
            producer.join().unwrap();
            assert_eq!(c.try_pop().unwrap(), None);
        });
    }
}
