//! Mempools ([`MbufPool`], one per NUMA socket), mbufs ([`Mbuf`], [`MbufArray`], RAII) and
//! the received burst the pipeline reads and rewrites in place ([`RxBurst`]).

use super::*;

/// A pool of packet buffers on one NUMA socket.
#[derive(Debug)]
pub struct MbufPool {
    pub(super) ptr: NonNull<sys::rte_mempool>,
    pub(super) socket: i32,
    pub(super) size: u32,
    pub(super) _eal: Eal,
}

// SAFETY: DPDK mempools are thread-safe (multi-producer/multi-consumer ring by default).
unsafe impl Send for MbufPool {}
// SAFETY: as above; all operations through &self are thread-safe DPDK calls.
unsafe impl Sync for MbufPool {}

impl MbufPool {
    /// A pool of `mbufs` buffers (2048 bytes of data after 128 of headroom) on `socket`.
    ///
    /// # Errors
    /// When DPDK cannot allocate it.
    pub fn new(eal: &Eal, socket: i32, mbufs: u32) -> Result<Self, DpdkError> {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "fiberlb_mb{}_{}",
            socket,
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let cname = CString::new(name).map_err(|e| DpdkError::InvalidConfig(e.to_string()))?;
        let cache = 256u32.min(mbufs / 8);
        // SAFETY: EAL is initialised; name is NUL-terminated and copied by DPDK.
        let p = unsafe {
            sys::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                mbufs,
                cache,
                0,
                sys::fiberlb_mbuf_buf_size,
                socket,
            )
        };
        match NonNull::new(p) {
            Some(ptr) => Ok(MbufPool {
                ptr,
                socket,
                size: mbufs,
                _eal: eal.clone(),
            }),
            None => {
                let errno = rte_errno();
                Err(DpdkError::Mempool {
                    socket,
                    mbufs,
                    msg: strerror(errno),
                })
            }
        }
    }

    /// The NUMA socket.
    pub fn socket(&self) -> i32 {
        self.socket
    }

    /// Number of buffers.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Buffers free (in the pool's ring and the per-lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is valid while self lives.
        unsafe { sys::rte_mempool_avail_count(self.ptr.as_ptr()) }
    }

    /// Buffers in use (in NIC rings, in flight, held by the application).
    pub fn in_use(&self) -> u32 {
        // SAFETY: as above.
        unsafe { sys::rte_mempool_in_use_count(self.ptr.as_ptr()) }
    }

    /// A buffer, or `None` when the pool is empty.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is valid; the returned mbuf (if any) is exclusively ours.
        NonNull::new(unsafe { sys::fiberlb_pktmbuf_alloc(self.ptr.as_ptr()) }).map(Mbuf)
    }

    pub(super) fn raw(&self) -> *mut sys::rte_mempool {
        self.ptr.as_ptr()
    }
}

impl Drop for MbufPool {
    fn drop(&mut self) {
        // SAFETY: no port references the pool any more (ports hold an Arc to it) and mbufs
        // still held elsewhere would be a bug in this module's ownership; DPDK only unmaps
        // memory, it does not touch outstanding buffers.
        unsafe { sys::rte_mempool_free(self.ptr.as_ptr()) }
    }
}

/// One pool per NUMA socket.
#[derive(Clone, Debug)]
pub struct Pools(pub(super) Vec<Arc<MbufPool>>);

impl Pools {
    /// The pool of `socket`, or the first one (a device on "any" socket, `-1`).
    pub fn for_socket(&self, socket: i32) -> &Arc<MbufPool> {
        self.0
            .iter()
            .find(|p| p.socket == socket)
            .unwrap_or(&self.0[0])
    }

    /// Every pool.
    pub fn all(&self) -> &[Arc<MbufPool>] {
        &self.0
    }
}

/// One packet buffer; returns to its pool when dropped.
#[derive(Debug)]
pub struct Mbuf(pub(super) NonNull<sys::rte_mbuf>);

// SAFETY: an mbuf is owned by exactly one Mbuf; freeing it from any thread is allowed.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// The packet bytes.
    pub fn data(&self) -> &[u8] {
        let v = view(self.0.as_ptr());
        // SAFETY: self owns the mbuf and is borrowed for the returned slice's lifetime.
        unsafe { view_data(&v) }
    }

    /// Appends `bytes` at the end of the packet.
    ///
    /// # Errors
    /// When the tailroom is too small (nothing changed).
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), DpdkError> {
        let Ok(n) = u16::try_from(bytes.len()) else {
            return Err(DpdkError::InvalidConfig("packet longer than 65535".into()));
        };
        // SAFETY: self owns the mbuf; append returns NULL or a pointer to `n` writable bytes
        // inside its data room.
        let p = unsafe { sys::fiberlb_pktmbuf_append(self.0.as_ptr(), n) };
        if p.is_null() {
            return Err(DpdkError::InvalidConfig(format!(
                "{} bytes do not fit the mbuf's tailroom",
                bytes.len()
            )));
        }
        // SAFETY: p points to n writable bytes that do not overlap `bytes`.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
        Ok(())
    }

    /// Bytes in front of the packet.
    pub fn headroom(&self) -> usize {
        // SAFETY: self owns a valid mbuf.
        usize::from(unsafe { sys::fiberlb_pktmbuf_headroom(self.0.as_ptr()) })
    }

    /// Gives up ownership (e.g. to enqueue on a ring).
    pub fn into_raw(self) -> *mut sys::rte_mbuf {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `p` must be a valid mbuf nobody else owns or frees.
    pub unsafe fn from_raw(p: NonNull<sys::rte_mbuf>) -> Mbuf {
        Mbuf(p)
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: self is the only owner; the mbuf goes back to its pool.
        unsafe { sys::fiberlb_pktmbuf_free(self.0.as_ptr()) }
    }
}

#[inline]
pub(super) fn view(m: *mut sys::rte_mbuf) -> sys::fiberlb_mbuf_view {
    let mut v = sys::fiberlb_mbuf_view::default();
    // SAFETY: m is a valid mbuf (callers own it); one view is written.
    unsafe { sys::fiberlb_mbuf_views(&m, 1, &mut v) };
    v
}

/// The packet bytes a view describes (empty for a chained or inconsistent mbuf).
///
/// # Safety
/// `v` must describe an mbuf that stays owned, and is not written, for `'a` (callers tie
/// `'a` to a borrow of the mbuf's owner).
#[inline]
unsafe fn view_data<'a>(v: &sys::fiberlb_mbuf_view) -> &'a [u8] {
    let (off, len) = (usize::from(v.data_off), usize::from(v.data_len));
    if v.multi_seg != 0 || v.buf.is_null() || off + len > usize::from(v.buf_len) {
        return &[];
    }
    // SAFETY: buf[..buf_len] is the mbuf's data room, owned by the caller's mbuf for the
    // lifetime of the borrow; off + len <= buf_len was checked.
    unsafe { std::slice::from_raw_parts(v.buf.add(off), len) }
}

/// Up to [`BURST`] owned mbufs; those still held are freed on drop.
#[derive(Debug)]
pub struct MbufArray {
    pub(super) ptrs: [*mut sys::rte_mbuf; BURST],
    pub(super) len: usize,
}

// SAFETY: the array exclusively owns its mbufs, see Mbuf.
unsafe impl Send for MbufArray {}

impl Default for MbufArray {
    fn default() -> Self {
        MbufArray {
            ptrs: [std::ptr::null_mut(); BURST],
            len: 0,
        }
    }
}

impl MbufArray {
    /// Number of mbufs held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when full.
    pub fn is_full(&self) -> bool {
        self.len == BURST
    }

    /// Adds an mbuf; gives it back when full.
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.is_full() {
            return Err(m);
        }
        self.ptrs[self.len] = m.into_raw();
        self.len += 1;
        Ok(())
    }

    #[inline]
    pub(crate) fn push_raw(&mut self, p: *mut sys::rte_mbuf) {
        // Callers move at most BURST mbufs out of a BURST-sized array.
        debug_assert!(self.len < BURST);
        if self.len < BURST {
            self.ptrs[self.len] = p;
            self.len += 1;
        } else {
            // SAFETY: p is owned by the caller and would otherwise leak.
            unsafe { sys::fiberlb_pktmbuf_free(p) }
        }
    }

    /// Bytes of mbuf `i`.
    pub fn data(&self, i: usize) -> &[u8] {
        if i >= self.len {
            return &[];
        }
        let v = view(self.ptrs[i]);
        // SAFETY: the array owns mbuf i and is borrowed for the returned slice's lifetime.
        unsafe { view_data(&v) }
    }

    /// Drops the first `n` entries without freeing them (they were handed to DPDK).
    #[inline]
    pub(super) fn forget_front(&mut self, n: usize) {
        let n = n.min(self.len);
        self.ptrs.copy_within(n..self.len, 0);
        self.len -= n;
    }

    /// Frees every mbuf held.
    pub fn clear(&mut self) {
        if self.len > 0 {
            // SAFETY: the array owns these `len` mbufs; they are freed once and forgotten.
            unsafe { sys::fiberlb_pktmbuf_free_bulk(self.ptrs.as_mut_ptr(), self.len as u32) };
            self.len = 0;
        }
    }

    /// Takes the mbufs out (for a ring).
    pub fn raw_mut(&mut self) -> (&mut [*mut sys::rte_mbuf; BURST], &mut usize) {
        (&mut self.ptrs, &mut self.len)
    }
}

impl Drop for MbufArray {
    fn drop(&mut self) {
        self.clear();
    }
}

/// A received burst the pipeline reads and rewrites in place (see the module docs).
#[derive(Debug)]
pub struct RxBurst {
    pub(super) mbufs: MbufArray,
    pub(super) views: [sys::fiberlb_mbuf_view; BURST],
}

impl Default for RxBurst {
    fn default() -> Self {
        RxBurst {
            mbufs: MbufArray::default(),
            views: [sys::fiberlb_mbuf_view::default(); BURST],
        }
    }
}

impl RxBurst {
    /// The mbufs.
    pub fn mbufs(&mut self) -> &mut MbufArray {
        &mut self.mbufs
    }

    /// Reads the mbufs' layout once for the whole burst (one call into C).
    #[inline]
    pub(super) fn load_views(&mut self) {
        // SAFETY: ptrs[..len] are valid owned mbufs; views has room for BURST >= len entries.
        unsafe {
            sys::fiberlb_mbuf_views(
                self.mbufs.ptrs.as_ptr(),
                self.mbufs.len as u16,
                self.views.as_mut_ptr(),
            )
        }
    }
}

impl Burst for RxBurst {
    #[inline]
    fn len(&self) -> usize {
        self.mbufs.len
    }

    #[inline]
    fn data(&self, i: usize) -> &[u8] {
        assert!(i < self.mbufs.len, "packet index out of range");
        // SAFETY: the burst owns mbuf i and is borrowed for the returned slice's lifetime.
        unsafe { view_data(&self.views[i]) }
    }

    #[inline]
    fn with_buf<R>(&mut self, i: usize, f: impl FnOnce(&mut PacketBuf<'_>) -> R) -> R {
        assert!(i < self.mbufs.len, "packet index out of range");
        let v = self.views[i];
        let room = usize::from(v.buf_len);
        let (off, len) = (usize::from(v.data_off), usize::from(v.data_len));
        // `f` is called in one place only, so an inlined `f` (the whole per-packet path) is
        // not duplicated. A packet the pipeline cannot use is seen as empty (malformed).
        let usable = v.multi_seg == 0 && !v.buf.is_null() && off + len <= room;
        let mut pkt = if usable {
            // SAFETY: buf[..buf_len] is the data room of mbuf i, which this burst owns and
            // lends mutably only here, one packet at a time (&mut self).
            let room_slice = unsafe { std::slice::from_raw_parts_mut(v.buf, room) };
            // Always `Some`: off + len <= buf_len was checked.
            match PacketBuf::new(room_slice, off, len) {
                Some(pkt) => pkt,
                None => PacketBuf::empty(),
            }
        } else {
            PacketBuf::empty()
        };
        let r = f(&mut pkt);
        let (start, new_len) = (pkt.start(), pkt.len());
        if usable && (start != off || new_len != len) {
            // Both fit u16: start + len <= buf_len, a u16.
            let (s, l) = (start as u16, new_len as u16);
            // SAFETY: the mbuf is owned by this burst; the new range lies in its data room.
            unsafe { sys::fiberlb_mbuf_set(self.mbufs.ptrs[i], s, l) };
            self.views[i].data_off = s;
            self.views[i].data_len = l;
        }
        r
    }
}
