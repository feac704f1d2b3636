//! The flow table's bucket array in memory of its own: one 2 MiB-aligned anonymous mapping
//! advised for transparent huge pages.

use super::Bucket;

/// The bucket array: one anonymous mapping aligned to 2 MiB and advised for transparent huge
/// pages *before* it is touched, so a large table costs one TLB entry per 2 MiB instead of
/// per 4 KiB — at a million flows page walks otherwise cost as much as the bucket's own cache
/// miss. (The global allocator zeroes aligned allocations itself, which would fault the
/// pages in as 4 KiB pages before any advice could apply.)
pub(super) struct BucketArray {
    pub(super) ptr: std::ptr::NonNull<Bucket>,
    len: usize,
    /// The whole mapping, for munmap.
    map: *mut libc::c_void,
    map_len: usize,
}

// SAFETY: BucketArray owns its mapping exclusively (like a Box<[Bucket]>); Bucket is plain data.
unsafe impl Send for BucketArray {}

const HUGE: usize = 2 << 20;

impl BucketArray {
    pub(super) fn new(len: usize) -> Option<Self> {
        let bytes = len.checked_mul(std::mem::size_of::<Bucket>())?;
        if bytes == 0 {
            return None;
        }
        let map_len = bytes.checked_add(HUGE)?;
        // SAFETY: an anonymous private mapping of map_len bytes, not backed by any file; the
        // result is checked for MAP_FAILED before use.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return None;
        }
        let start = (map as usize).next_multiple_of(HUGE);
        // SAFETY: [start, start + bytes) lies inside the mapping (we mapped HUGE extra bytes);
        // madvise only advises, and failure (THP disabled) is harmless.
        unsafe {
            libc::madvise(start as *mut libc::c_void, bytes, libc::MADV_HUGEPAGE);
        }
        let ptr = std::ptr::NonNull::new(start as *mut Bucket)?;
        // Fresh anonymous memory reads as zeros, and all-zero bytes are a valid Bucket (every
        // entry empty: listener tag 0).
        let mut a = BucketArray {
            ptr,
            len,
            map,
            map_len,
        };
        // Touch every page now so the first packets pay no page faults.
        for b in a.iter_mut().step_by(4096 / std::mem::size_of::<Bucket>()) {
            b.entries[0].last_seen = 0;
        }
        Some(a)
    }
}

impl std::ops::Deref for BucketArray {
    type Target = [Bucket];
    fn deref(&self) -> &[Bucket] {
        // SAFETY: ptr points to `len` zero-initialised Buckets inside our mapping, 64-byte
        // aligned (2 MiB aligned); shared borrow of self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for BucketArray {
    fn deref_mut(&mut self) -> &mut [Bucket] {
        // SAFETY: as in deref; the exclusive borrow of self makes the slice unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for BucketArray {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; no slice of it outlives self.
        unsafe {
            libc::munmap(self.map, self.map_len);
        }
    }
}
