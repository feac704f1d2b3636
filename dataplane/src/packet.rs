//! Packets in a backend's buffer area, as the pipeline sees them: [`Desc`] (where a packet
//! lives), [`PacketBuf`] (the mutable view of one frame), [`Burst`] (packets lent one at a
//! time) and [`AreaBurst`] (a burst over one area of fixed-size chunks).
//!
//! A leaf module: it imports nothing from the crate, so the pipeline (which reads and rewrites
//! packets) and the I/O backends in [`crate::nic`] (which own the buffer areas) both depend on
//! it and not on each other. Every backend hands the worker frames that live in a buffer area
//! it owns (an AF_XDP UMEM, DPDK mbufs, or plain memory). A frame is one fixed-size *chunk*
//! with headroom in front of the packet, so encapsulation can grow the packet at the front
//! without copying it.

/// Largest burst a backend receives and the pipeline processes at once.
pub const BURST: usize = 32;

/// Where a packet lives in a backend's buffer area: `addr` is the offset of the first byte of
/// the packet, `len` its length. The chunk that holds it starts at `addr - addr % chunk_size`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
}

/// A packet inside its chunk: `chunk[start..start + len]` is the packet; bytes before `start`
/// are headroom that [`PacketBuf::push_front`] can claim.
#[derive(Debug)]
pub struct PacketBuf<'a> {
    chunk: &'a mut [u8],
    start: usize,
    len: usize,
}

impl<'a> PacketBuf<'a> {
    /// A view of `chunk[start..start + len]`. `None` when that range is not inside the chunk.
    #[inline]
    pub fn new(chunk: &'a mut [u8], start: usize, len: usize) -> Option<Self> {
        let end = start.checked_add(len)?;
        (end <= chunk.len()).then_some(PacketBuf { chunk, start, len })
    }

    /// An empty packet in an empty chunk: what the pipeline sees for a descriptor a backend
    /// cannot place (dropped as malformed).
    #[inline]
    pub fn empty() -> PacketBuf<'static> {
        PacketBuf {
            chunk: &mut [],
            start: 0,
            len: 0,
        }
    }

    /// The packet bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        // SAFETY: the type's invariant, established by `new` and `empty` and kept by
        // `push_front`, `pull_front` and `set_len` (the only writers of `start` and `len`;
        // `chunk` is never replaced): start + len <= chunk.len(), so the range is inside the
        // chunk. Unchecked because the pipeline takes this view many times per packet.
        unsafe { self.chunk.get_unchecked(self.start..self.start + self.len) }
    }

    /// The packet bytes, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`: start + len <= chunk.len() is the type's invariant.
        unsafe {
            self.chunk
                .get_unchecked_mut(self.start..self.start + self.len)
        }
    }

    /// Packet length.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty packet.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Offset of the packet in its chunk (= free headroom).
    #[inline]
    pub fn start(&self) -> usize {
        self.start
    }

    /// Bytes available after the packet.
    #[inline]
    pub fn tailroom(&self) -> usize {
        self.chunk.len() - self.start - self.len
    }

    /// Grows the packet by `n` bytes at the front (for an outer header) and returns the whole
    /// new packet. `None`, with nothing changed, when the headroom is too small.
    #[inline]
    pub fn push_front(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.start {
            return None;
        }
        self.start -= n;
        self.len += n;
        Some(self.data_mut())
    }

    /// Removes `n` bytes from the front (decapsulation). `None` when the packet is shorter.
    #[inline]
    pub fn pull_front(&mut self, n: usize) -> Option<()> {
        if n > self.len {
            return None;
        }
        self.start += n;
        self.len -= n;
        Some(())
    }

    /// Sets the packet length (trims padding, or grows into tailroom). `None` if it does not fit.
    #[inline]
    pub fn set_len(&mut self, len: usize) -> Option<()> {
        // checked: a length taken from a packet field must not wrap past the check.
        if self.start.checked_add(len)? > self.chunk.len() {
            return None;
        }
        self.len = len;
        Some(())
    }
}

/// A burst of packets the pipeline can read and rewrite one at a time.
///
/// The pipeline needs each packet twice (parse, then rewrite) but never two at once, so a
/// backend only has to lend one mutable view at a time — which lets every backend keep its
/// packets in one buffer area without handing out overlapping `&mut` borrows.
pub trait Burst {
    /// Number of packets.
    fn len(&self) -> usize;
    /// True when there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes of packet `i`. Panics if `i >= len()`, like slice indexing.
    fn data(&self, i: usize) -> &[u8];
    /// Runs `f` on packet `i`; changes of its start and length are kept.
    fn with_buf<R>(&mut self, i: usize, f: impl FnOnce(&mut PacketBuf<'_>) -> R) -> R;
}

impl Burst for [PacketBuf<'_>] {
    #[inline]
    fn len(&self) -> usize {
        <[PacketBuf<'_>]>::len(self)
    }
    #[inline]
    fn data(&self, i: usize) -> &[u8] {
        self[i].data()
    }
    #[inline]
    fn with_buf<R>(&mut self, i: usize, f: impl FnOnce(&mut PacketBuf<'_>) -> R) -> R {
        f(&mut self[i])
    }
}

/// Packets described by [`Desc`]s in one buffer area of fixed-size chunks (a UMEM, or the
/// memory port's area). Descriptors are updated when a packet grows or shrinks.
#[derive(Debug)]
pub struct AreaBurst<'a> {
    area: &'a mut [u8],
    chunk: usize,
    /// `chunk - 1` when `chunk` is a power of two (every real chunk size): the chunk of an
    /// address is then found with a mask instead of a division.
    pow2_mask: Option<usize>,
    /// How many chunk bases fit: `base < base_limit` is `base + chunk <= area.len()`, one
    /// compare per packet instead of an overflow-checked add and a compare (0 when the area
    /// is smaller than a chunk: no base is valid).
    base_limit: usize,
    descs: &'a mut [Desc],
}

impl<'a> AreaBurst<'a> {
    /// A burst over `descs`, whose packets live in `area` cut in chunks of `chunk` bytes.
    /// A descriptor that does not lie inside one chunk of the area is treated as an empty
    /// packet (dropped as malformed), never trusted.
    pub fn new(area: &'a mut [u8], chunk: usize, descs: &'a mut [Desc]) -> Self {
        let chunk = chunk.max(1);
        AreaBurst {
            base_limit: (area.len() + 1).saturating_sub(chunk),
            area,
            chunk,
            pow2_mask: chunk.is_power_of_two().then(|| chunk - 1),
            descs,
        }
    }

    /// The chunk range holding `d`, if it is well-formed: `(base, start)` with
    /// base + chunk <= area.len() and start + d.len <= chunk (the unchecked views rely on it).
    #[inline]
    fn locate(&self, d: &Desc) -> Option<(usize, usize)> {
        let addr = usize::try_from(d.addr).ok()?;
        let base = match self.pow2_mask {
            Some(m) => addr & !m,
            None => addr - addr % self.chunk,
        };
        let start = addr - base;
        // base < base_limit: base + chunk <= area.len() (area.len() + 1 cannot overflow: a
        // slice is at most isize::MAX bytes). start < chunk and len < 2^32: no overflow.
        if base >= self.base_limit || start + d.len as usize > self.chunk {
            return None;
        }
        Some((base, start))
    }
}

impl Burst for AreaBurst<'_> {
    #[inline]
    fn len(&self) -> usize {
        self.descs.len()
    }

    #[inline]
    fn data(&self, i: usize) -> &[u8] {
        let d = self.descs[i];
        match self.locate(&d) {
            // SAFETY: `locate` checked base + chunk <= area.len() and start + len <= chunk, so
            // the range lies inside the area (and no sum overflows: both are below area.len()).
            Some((base, start)) => unsafe {
                self.area
                    .get_unchecked(base + start..base + start + d.len as usize)
            },
            None => &[],
        }
    }

    #[inline]
    fn with_buf<R>(&mut self, i: usize, f: impl FnOnce(&mut PacketBuf<'_>) -> R) -> R {
        let d = self.descs[i];
        let chunk = self.chunk;
        // A descriptor outside the area: the pipeline sees an empty (malformed) packet and
        // the descriptor is left as it was for the backend to reclaim. `f` is called in one
        // place only, so an inlined `f` is not duplicated.
        let (base, mut pkt) = match self.locate(&d) {
            Some((base, start)) => {
                // SAFETY: `locate` checked base + chunk <= area.len() (without overflow).
                let chunk = unsafe { self.area.get_unchecked_mut(base..base + chunk) };
                // The invariant of `PacketBuf` (start + len <= chunk.len()) is what `locate`
                // checked: start + len <= chunk.
                let pkt = PacketBuf {
                    chunk,
                    start,
                    len: d.len as usize,
                };
                (Some(base), pkt)
            }
            None => (None, PacketBuf::empty()),
        };
        let r = f(&mut pkt);
        if let Some(base) = base {
            self.descs[i] = Desc {
                addr: (base + pkt.start) as u64,
                len: pkt.len as u32,
            };
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `locate` accepts exactly the descriptors inside one chunk of the area, for power-of-two
    /// and other chunk sizes, and for an area smaller than a chunk.
    #[test]
    fn locate_accepts_exactly_the_packets_inside_one_chunk() {
        for (chunk, area_len) in [(64usize, 256usize), (48, 200), (64, 63), (64, 64), (1, 3)] {
            let mut area = vec![0u8; area_len];
            let mut descs = [Desc::default()];
            let b = AreaBurst::new(&mut area, chunk, &mut descs);
            for addr in 0..area_len as u64 + 2 * chunk as u64 {
                for len in 0..chunk as u32 + 2 {
                    let a = addr as usize;
                    let base = a - a % chunk;
                    let want = (base + chunk <= area_len && a - base + len as usize <= chunk)
                        .then_some((base, a - base));
                    assert_eq!(
                        b.locate(&Desc { addr, len }),
                        want,
                        "{chunk} {area_len} {addr} {len}"
                    );
                }
            }
            assert_eq!(
                b.locate(&Desc {
                    addr: u64::MAX,
                    len: 0
                }),
                None
            );
        }
    }
}
