//! Snapshot publication with quiescent-state-based reclamation (QSBR).
//!
//! The control thread builds a new immutable snapshot and swaps it in with one atomic store; the
//! old one is freed — on the control thread, never on a worker — once every online worker has
//! passed a *quiescent point* (the end of a burst, when it holds no reference into any snapshot).
//! This is the scheme of VPP's worker barrier and of userspace RCU's QSBR flavour, without the
//! barrier: workers never wait.
//!
//! Worker side ([`ReaderHandle`]), per burst: [`ReaderHandle::current`] is one `Acquire` load of
//! the snapshot pointer, [`ReaderHandle::quiescent`] one `Acquire` load of the global epoch and
//! (when it moved) one `Release` store into the worker's own cache-padded slot. No allocation,
//! lock or syscall. A worker about to sleep calls [`ReaderHandle::offline`] so it does not hold
//! reclamation up; [`ReaderHandle::current`] brings it back online by itself.
//!
//! Control side ([`Publisher`]): [`Publisher::publish`] swaps the pointer, bumps the epoch and
//! retires the old snapshot tagged with the new epoch; [`Publisher::wait_quiescent`] waits until
//! every online slot shows that epoch (or later) and frees what was retired.
//!
//! Why it is sound: a slot is 0 (offline) or the last epoch its worker observed at a quiescent
//! point. A worker stores epoch `e` only after every use of a snapshot it loaded earlier
//! (`Release`), and having loaded `e` with `Acquire` it can only load a snapshot pointer at least
//! as new as the one swapped in before `e` was published. So a snapshot retired at epoch `t` is
//! unreachable once every slot is 0 or `>= t`. Going online races with a swap: the worker stores
//! its slot and the writer swaps the pointer, then each issues a `SeqCst` fence before reading
//! the other's location (the store-buffering pattern), so either the writer sees the slot and
//! waits, or the worker sees the new pointer.
//!
//! The atomics come from the private `sync` module so the protocol can be model-checked with
//! loom (`RUSTFLAGS="--cfg loom" cargo test -p fiberlb-dataplane --release --lib publish`).

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use crate::snapshot::Snapshot;

/// The atomics the protocol uses: std normally, loom's model-checked ones under `--cfg loom`.
mod sync {
    #[cfg(loom)]
    pub(super) use loom::sync::atomic::{fence, AtomicPtr, AtomicU64, Ordering};
    #[cfg(loom)]
    pub(super) use loom::sync::Arc;
    #[cfg(loom)]
    pub(super) use loom::thread::yield_now;

    #[cfg(not(loom))]
    pub(super) use std::sync::atomic::{fence, AtomicPtr, AtomicU64, Ordering};
    #[cfg(not(loom))]
    pub(super) use std::sync::Arc;
    #[cfg(not(loom))]
    pub(super) use std::thread::yield_now;
}

use sync::{fence, Arc, AtomicPtr, AtomicU64, Ordering};

/// Slot value of a worker that holds no snapshot and is not counted.
const OFFLINE: u64 = 0;
/// First epoch; epochs only grow, so a slot never reads as [`OFFLINE`] by accident.
const FIRST_EPOCH: u64 = 1;

/// One epoch word on its own cache lines (128 bytes: adjacent-line prefetch pairs lines on x86),
/// so a worker's quiescent store never invalidates another worker's line.
#[derive(Debug)]
#[repr(align(128))]
struct Padded(AtomicU64);

/// Publication number returned by [`Publisher::publish`]: the epoch every online worker must
/// reach before the snapshot it replaced can be freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(pub u64);

/// State shared by the publisher and its readers.
#[derive(Debug)]
struct Shared<T> {
    /// The snapshot in force, from `Box::into_raw`; never null.
    current: AtomicPtr<T>,
    /// Bumped after every swap.
    epoch: Padded,
    /// One per reader; [`OFFLINE`] or the last epoch that reader observed at a quiescent point.
    readers: Box<[Padded]>,
    /// `Shared` owns the current `T` (for auto traits and drop check).
    _owns: PhantomData<Box<T>>,
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        let p = self.current.with_mut_ptr();
        // SAFETY: `current` always holds a pointer from `Box::into_raw` that nobody else frees
        // (the publisher only frees pointers it swapped out); the last `Arc` is going, so no
        // reader or publisher can reach it any more.
        drop(unsafe { Box::from_raw(p) });
    }
}

/// Reads an `AtomicPtr` through `&mut` (std: `get_mut`; loom: `with_mut`).
trait WithMutPtr<T> {
    fn with_mut_ptr(&mut self) -> *mut T;
}

#[cfg(not(loom))]
impl<T> WithMutPtr<T> for AtomicPtr<T> {
    fn with_mut_ptr(&mut self) -> *mut T {
        *self.get_mut()
    }
}

#[cfg(loom)]
impl<T> WithMutPtr<T> for AtomicPtr<T> {
    fn with_mut_ptr(&mut self) -> *mut T {
        self.with_mut(|p| *p)
    }
}

/// A snapshot swapped out, waiting for every online reader to reach `epoch`.
#[derive(Debug)]
struct Retired<T> {
    ptr: NonNull<T>,
    epoch: u64,
}

/// The control thread's end: publishes snapshots and frees the ones no worker can still see.
#[derive(Debug)]
pub struct Publisher<T = Snapshot> {
    shared: Arc<Shared<T>>,
    retired: Vec<Retired<T>>,
}

// SAFETY: the retired pointers are owned boxes of `T` (only this publisher frees them); sending
// the publisher sends those `T`s (needs `T: Send`), and readers on other threads may still read
// them through `&T` (needs `T: Sync`), exactly the bounds of `Arc<T>`.
unsafe impl<T: Send + Sync> Send for Publisher<T> {}

/// A worker's end. One per worker, not clonable; dropping it takes the worker offline for good.
#[derive(Debug)]
pub struct ReaderHandle<T = Snapshot> {
    shared: Arc<Shared<T>>,
    index: usize,
    /// The value last stored into our slot ([`OFFLINE`] when offline).
    seen: u64,
}

/// How far reclamation got, for tests and the control thread's logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReclaimStats {
    /// Snapshots freed by this call.
    pub freed: usize,
    /// Snapshots still waiting for a worker.
    pub pending: usize,
}

impl<T> Publisher<T> {
    /// A publisher with `initial` in force and `readers` worker handles, all offline until
    /// their first [`ReaderHandle::current`] (so a worker that never starts blocks nothing).
    pub fn new(initial: Box<T>, readers: usize) -> (Publisher<T>, Vec<ReaderHandle<T>>) {
        let shared = Arc::new(Shared {
            current: AtomicPtr::new(Box::into_raw(initial)),
            epoch: Padded(AtomicU64::new(FIRST_EPOCH)),
            readers: (0..readers)
                .map(|_| Padded(AtomicU64::new(OFFLINE)))
                .collect(),
            _owns: PhantomData,
        });
        let handles = (0..readers)
            .map(|index| ReaderHandle {
                shared: shared.clone(),
                index,
                seen: OFFLINE,
            })
            .collect();
        (
            Publisher {
                shared,
                retired: Vec::new(),
            },
            handles,
        )
    }

    /// The snapshot in force, as the control thread sees it.
    pub fn current(&self) -> &T {
        let p = self.shared.current.load(Ordering::Acquire);
        // SAFETY: only `publish` (which needs `&mut self`, so not while this borrow lives)
        // swaps the pointer, and only this publisher frees swapped-out pointers; the current
        // one stays valid as long as `self.shared` does.
        unsafe { &*p }
    }

    /// Makes `next` the snapshot in force with one atomic swap and retires the previous one.
    /// Returns the epoch workers must reach before the previous one can be freed.
    pub fn publish(&mut self, next: Box<T>) -> Generation {
        let old = self
            .shared
            .current
            .swap(Box::into_raw(next), Ordering::AcqRel);
        // A worker that loads this epoch (Acquire) at a quiescent point sees the swap too.
        let epoch = self.shared.epoch.0.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some(ptr) = NonNull::new(old) {
            self.retired.push(Retired { ptr, epoch });
        }
        Generation(epoch)
    }

    /// The lowest epoch an online reader may still be at (`u64::MAX` when all are offline).
    fn min_online_epoch(&self) -> u64 {
        // Pairs with the fence in `ReaderHandle::go_online`: the swap (program order before
        // this) and a reader's slot store cannot both be missed by the other side.
        fence(Ordering::SeqCst);
        self.shared
            .readers
            .iter()
            .map(|r| r.0.load(Ordering::Acquire))
            .filter(|&e| e != OFFLINE)
            .min()
            .unwrap_or(u64::MAX)
    }

    /// True when every online reader has passed a quiescent point after publication `g`.
    pub fn is_quiescent(&self, g: Generation) -> bool {
        self.min_online_epoch() >= g.0
    }

    /// Frees every retired snapshot no reader can reach any more. Never blocks.
    pub fn reclaim(&mut self) -> ReclaimStats {
        if self.retired.is_empty() {
            return ReclaimStats::default();
        }
        let min = self.min_online_epoch();
        let before = self.retired.len();
        self.retired.retain(|r| {
            if r.epoch > min {
                return true;
            }
            // SAFETY: `r.ptr` came from `Box::into_raw` in `publish`'s swap and is freed only
            // here, once: every online reader's slot shows an epoch >= `r.epoch`, so each has
            // passed a quiescent point after loading an epoch published after the swap, and
            // offline readers hold nothing (see the module comment).
            drop(unsafe { Box::from_raw(r.ptr.as_ptr()) });
            false
        });
        ReclaimStats {
            freed: before - self.retired.len(),
            pending: self.retired.len(),
        }
    }

    /// Snapshots swapped out and not freed yet.
    pub fn retired(&self) -> usize {
        self.retired.len()
    }

    /// The latest publication number.
    pub fn generation(&self) -> Generation {
        Generation(self.shared.epoch.0.load(Ordering::Acquire))
    }

    /// Waits up to `timeout` until every online worker has passed a quiescent point after the
    /// last [`publish`](Self::publish), then frees every retired snapshot. Returns `false` on
    /// timeout (nothing unsafe is freed; call again later). Spins briefly, then sleeps in
    /// short steps: this runs on the control thread, never on a worker.
    pub fn wait_quiescent(&mut self, timeout: Duration) -> bool {
        let target = self.generation();
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            if self.is_quiescent(target) {
                self.reclaim();
                return true;
            }
            if start.elapsed() >= timeout {
                self.reclaim();
                return false;
            }
            spins += 1;
            if spins < 64 {
                sync::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
}

impl<T> Drop for Publisher<T> {
    fn drop(&mut self) {
        self.reclaim();
        // Snapshots some worker may still read: leak them rather than free them under it.
        // (Only at shutdown with workers still running; a few snapshots at most.)
        self.retired.clear();
    }
}

impl<T> ReaderHandle<T> {
    /// Index of this reader (its worker).
    pub fn index(&self) -> usize {
        self.index
    }

    #[inline]
    fn slot(&self) -> &AtomicU64 {
        // `index < readers.len()` by construction; `get` keeps the fast path panic-free anyway.
        match self.shared.readers.get(self.index) {
            Some(p) => &p.0,
            None => &self.shared.epoch.0,
        }
    }

    #[cold]
    fn go_online(&mut self) {
        let e = self.shared.epoch.0.load(Ordering::Acquire);
        // Release, not Relaxed: a publisher that reads this value must also see every read of
        // a snapshot made before we went offline (loom found that one).
        self.slot().store(e, Ordering::Release);
        // Pairs with the fence in `Publisher::min_online_epoch`: either the publisher sees our
        // slot and waits for us, or our next pointer load sees its swap.
        fence(Ordering::SeqCst);
        self.seen = e;
    }

    /// The snapshot to forward this burst with: one `Acquire` load (plus going online again
    /// after [`offline`](Self::offline)). The borrow ends before the next
    /// [`quiescent`](Self::quiescent), which is what makes freeing safe.
    #[inline]
    pub fn current(&mut self) -> &T {
        if self.seen == OFFLINE {
            self.go_online();
        }
        let p = self.shared.current.load(Ordering::Acquire);
        // SAFETY: `p` came from `Box::into_raw` and is freed only by the publisher once our
        // slot shows an epoch published after it was swapped out, or OFFLINE. We are online
        // (slot != OFFLINE), and the slot only moves in `quiescent`/`offline`, which need
        // `&mut self` and so cannot run while the returned borrow lives.
        unsafe { &*p }
    }

    /// Reports a quiescent point: this worker holds no reference into any snapshot. One
    /// `Acquire` load and, when the epoch moved, one `Release` store into our own slot.
    #[inline]
    pub fn quiescent(&mut self) {
        if self.seen == OFFLINE {
            return;
        }
        let e = self.shared.epoch.0.load(Ordering::Acquire);
        if e != self.seen {
            self.slot().store(e, Ordering::Release);
            self.seen = e;
        }
    }

    /// Takes this worker out of reclamation (before an idle sleep): it holds no snapshot until
    /// its next [`current`](Self::current).
    #[inline]
    pub fn offline(&mut self) {
        if self.seen != OFFLINE {
            self.slot().store(OFFLINE, Ordering::Release);
            self.seen = OFFLINE;
        }
    }

    /// Brings the worker back; [`current`](Self::current) also does this by itself.
    #[inline]
    pub fn online(&mut self) {
        if self.seen == OFFLINE {
            self.go_online();
        }
    }

    /// True while the worker counts for reclamation.
    pub fn is_online(&self) -> bool {
        self.seen != OFFLINE
    }
}

impl<T> Drop for ReaderHandle<T> {
    fn drop(&mut self) {
        self.offline();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::atomic::AtomicUsize;
    use std::thread;

    use super::*;

    /// Counts drops, so tests see exactly when a value is freed.
    #[derive(Debug)]
    struct Tracked {
        value: u64,
        /// `value` again, checked by readers: a freed-and-reused value would tear them apart.
        check: u64,
        drops: std::sync::Arc<AtomicUsize>,
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.check = 0xDEAD;
            self.drops.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn tracked(value: u64, drops: &std::sync::Arc<AtomicUsize>) -> Box<Tracked> {
        Box::new(Tracked {
            value,
            check: value ^ 0x5555,
            drops: drops.clone(),
        })
    }

    fn drops() -> std::sync::Arc<AtomicUsize> {
        std::sync::Arc::new(AtomicUsize::new(0))
    }

    #[test]
    fn no_readers_frees_at_once() {
        let d = drops();
        let (mut p, _h) = Publisher::new(tracked(1, &d), 0);
        let g = p.publish(tracked(2, &d));
        assert_eq!(g, Generation(2));
        assert!(p.is_quiescent(g));
        assert_eq!(d.load(Ordering::SeqCst), 0, "freed only by reclaim");
        assert_eq!(
            p.reclaim(),
            ReclaimStats {
                freed: 1,
                pending: 0
            }
        );
        assert_eq!(d.load(Ordering::SeqCst), 1);
        assert_eq!(p.current().value, 2);
        drop(p);
        assert_eq!(d.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn online_reader_holds_reclamation_until_quiescent() {
        let d = drops();
        let (mut p, mut hs) = Publisher::new(tracked(1, &d), 2);
        let r = &mut hs[0];
        assert!(!r.is_online());
        assert_eq!(r.current().value, 1);
        assert!(r.is_online());
        let g = p.publish(tracked(2, &d));
        // Reader 0 is online at the old epoch; reader 1 never started and blocks nothing.
        assert!(!p.is_quiescent(g));
        assert!(!p.wait_quiescent(Duration::from_millis(5)));
        assert_eq!(p.retired(), 1);
        assert_eq!(d.load(Ordering::SeqCst), 0);
        r.quiescent();
        assert!(p.is_quiescent(g));
        assert!(p.wait_quiescent(Duration::from_millis(5)));
        assert_eq!(d.load(Ordering::SeqCst), 1);
        assert_eq!(r.current().value, 2);
    }

    #[test]
    fn offline_reader_does_not_block_and_comes_back() {
        let d = drops();
        let (mut p, mut hs) = Publisher::new(tracked(1, &d), 1);
        let r = &mut hs[0];
        r.current();
        r.offline();
        assert!(!r.is_online());
        p.publish(tracked(2, &d));
        assert!(p.wait_quiescent(Duration::ZERO));
        assert_eq!(d.load(Ordering::SeqCst), 1);
        r.online();
        assert!(r.is_online());
        assert_eq!(r.current().value, 2);
        // Online again at the current epoch: the next publication waits for it.
        let g = p.publish(tracked(3, &d));
        assert!(!p.is_quiescent(g));
        r.quiescent();
        assert!(p.is_quiescent(g));
    }

    #[test]
    fn dropped_handle_goes_offline() {
        let d = drops();
        let (mut p, mut hs) = Publisher::new(tracked(1, &d), 1);
        hs[0].current();
        p.publish(tracked(2, &d));
        assert_eq!(p.reclaim().pending, 1);
        hs.clear();
        assert_eq!(
            p.reclaim(),
            ReclaimStats {
                freed: 1,
                pending: 0
            }
        );
    }

    #[test]
    fn several_publications_free_in_order() {
        let d = drops();
        let (mut p, mut hs) = Publisher::new(tracked(1, &d), 1);
        hs[0].current();
        hs[0].quiescent();
        for v in 2..=5 {
            p.publish(tracked(v, &d));
        }
        assert_eq!(p.retired(), 4);
        hs[0].quiescent();
        assert_eq!(p.reclaim().freed, 4);
        assert_eq!(hs[0].current().value, 5);
    }

    /// One publisher swapping 10k times, two readers checking every snapshot they read is
    /// intact and that values never go backwards.
    #[test]
    fn stress_two_readers_10k_swaps() {
        const SWAPS: u64 = 10_000;
        let d = drops();
        let (mut p, hs) = Publisher::new(tracked(0, &d), 2);
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        // Readers start offline; each comes online before the first swap, or a reader the
        // scheduler starts late (a loaded machine) would miss the whole test.
        let ready = std::sync::Arc::new(std::sync::Barrier::new(3));
        let readers: Vec<_> = hs
            .into_iter()
            .enumerate()
            .map(|(i, mut h)| {
                let stop = stop.clone();
                let ready = ready.clone();
                thread::spawn(move || {
                    h.online();
                    ready.wait();
                    let mut last = 0u64;
                    let mut reads = 0u64;
                    let mut sleeps = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        for _ in 0..32 {
                            let s = h.current();
                            assert_eq!(s.check, s.value ^ 0x5555, "torn or freed snapshot");
                            assert!(s.value >= last, "went backwards: {} < {last}", s.value);
                            last = s.value;
                            reads += 1;
                        }
                        h.quiescent();
                        // Reader 1 sleeps now and then, exercising offline/online.
                        if i == 1 && reads % 4096 == 0 {
                            h.offline();
                            thread::yield_now();
                            sleeps += 1;
                        }
                    }
                    (reads, sleeps, last)
                })
            })
            .collect();
        ready.wait();
        let mut waits_ok = 0;
        for v in 1..=SWAPS {
            p.publish(tracked(v, &d));
            if v % 16 == 0 && p.wait_quiescent(Duration::from_secs(5)) {
                waits_ok += 1;
            } else {
                p.reclaim();
            }
        }
        assert!(p.wait_quiescent(Duration::from_secs(10)));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in readers {
            let (reads, _sleeps, last) = r.join().unwrap();
            assert!(reads > 0);
            assert!(last <= SWAPS);
        }
        assert_eq!(waits_ok, SWAPS / 16);
        assert_eq!(p.retired(), 0);
        assert_eq!(d.load(Ordering::SeqCst) as u64, SWAPS);
        drop(p);
        assert_eq!(d.load(Ordering::SeqCst) as u64, SWAPS + 1);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use loom::cell::UnsafeCell;

    use super::*;

    /// A payload whose destruction is a write to a loom cell the readers read: if the publisher
    /// could free a snapshot a reader may still use, loom reports the unsynchronised access.
    struct Probe {
        value: u64,
        alive: Arc<UnsafeCell<bool>>,
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            self.alive.with_mut(|p| {
                // SAFETY: loom checks this write against every read for a happens-before edge.
                unsafe { *p = false }
            });
        }
    }

    fn probe(value: u64) -> (Box<Probe>, Arc<UnsafeCell<bool>>) {
        let alive = Arc::new(UnsafeCell::new(true));
        (
            Box::new(Probe {
                value,
                alive: alive.clone(),
            }),
            alive,
        )
    }

    fn read(p: &Probe) -> u64 {
        p.alive.with(|a| {
            // SAFETY: loom checks this read against the free's write.
            assert!(unsafe { *a }, "read a freed snapshot");
        });
        p.value
    }

    /// A worker reads, reports quiescent, goes offline and comes back while the control thread
    /// publishes twice and frees whatever it may.
    #[test]
    fn loom_reader_vs_publish_and_free() {
        loom::model(|| {
            let (first, _a) = probe(1);
            let (mut p, mut hs) = Publisher::new(first, 1);
            let mut h = hs.pop().unwrap();
            let worker = loom::thread::spawn(move || {
                let a = read(h.current());
                h.quiescent();
                let b = read(h.current());
                assert!(b >= a);
                h.offline();
                let c = read(h.current());
                assert!(c >= b);
                h.quiescent();
            });
            let (second, _b) = probe(2);
            p.publish(second);
            p.reclaim();
            let (third, _c) = probe(3);
            p.publish(third);
            p.reclaim();
            worker.join().unwrap();
            p.reclaim();
            assert_eq!(p.retired(), 0);
        });
    }

    /// A worker coming online races with a swap (the fence pairing).
    #[test]
    fn loom_online_races_swap() {
        loom::model(|| {
            let (first, _a) = probe(1);
            let (mut p, mut hs) = Publisher::new(first, 1);
            let mut h = hs.pop().unwrap();
            let worker = loom::thread::spawn(move || {
                read(h.current());
                h.quiescent();
                read(h.current());
            });
            let (second, _b) = probe(2);
            p.publish(second);
            p.reclaim();
            worker.join().unwrap();
        });
    }
}
