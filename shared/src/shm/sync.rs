//! The atomics and cells the ring is built from, in one place so the ring can be model-checked
//! with loom (`RUSTFLAGS="--cfg loom"`) and run under miri unchanged — tokio's
//! `src/loom/mod.rs` habit.
//!
//! Without loom these are the std types, whose layout is that of the plain integer or value:
//! that is what lets a ring live inside a memory-mapped file shared by two processes. Under loom
//! they are loom's instrumented types, which only exist on the heap; the mapped region
//! (`region.rs`, `counters.rs`) is therefore not compiled under loom.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::Arc;
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// `std::cell::UnsafeCell` with loom's closure API (`with`, `with_mut`), so the ring's slot
/// accesses read the same under both builds. `repr(transparent)`: a slot in the mapped region is
/// exactly its bytes.
#[cfg(not(loom))]
#[derive(Debug)]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
