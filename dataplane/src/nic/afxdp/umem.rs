//! The UMEM: one packet memory area per worker, shared by all its AF_XDP sockets.

use std::io;
use std::ptr::NonNull;

use super::sys;
use super::AfXdpError;
use crate::packet::{Desc, PacketBuf};

/// Bytes the kernel keeps free in front of every received packet (`XDP_PACKET_HEADROOM`).
/// Received packets start at `chunk + XDP_PACKET_HEADROOM + UmemConfig::extra_headroom`, so
/// even with no extra headroom there is room for encapsulation headers in front of them.
pub const XDP_PACKET_HEADROOM: u32 = 256;

/// The smallest headroom fiberlb needs in front of a packet (outer IPv6 + UDP + GUE headers).
const MIN_HEADROOM: u32 = 128;

const HUGE_PAGE: usize = 2 << 20;

/// Whether the UMEM lives in hugepages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HugePages {
    /// Hugepages when the system has them reserved, ordinary pages otherwise.
    #[default]
    Auto,
    /// Ordinary pages.
    Never,
    /// Hugepages or an error.
    Require,
}

/// Shape of a worker's UMEM and of the fill/completion rings of each of its sockets.
#[derive(Clone, Debug)]
pub struct UmemConfig {
    /// Number of chunks (frames). Must cover every socket's fill ring plus frames in flight.
    pub frame_count: u32,
    /// Chunk size: 2048 or 4096 (the kernel's aligned mode wants a power of two <= page size).
    pub chunk_size: u32,
    /// Headroom the kernel adds after its own [`XDP_PACKET_HEADROOM`] in front of received
    /// packets (`XdpUmemReg::headroom`). 0 is enough for fiberlb's encapsulations.
    pub extra_headroom: u32,
    /// Fill ring size of each socket (power of two).
    pub fill_size: u32,
    /// Completion ring size of each socket (power of two).
    pub completion_size: u32,
    pub hugepages: HugePages,
}

impl Default for UmemConfig {
    fn default() -> Self {
        UmemConfig {
            frame_count: 8192,
            chunk_size: 4096,
            extra_headroom: 0,
            fill_size: 2048,
            completion_size: 2048,
            hugepages: HugePages::Auto,
        }
    }
}

/// A worker's packet memory: an mmap'ed area registered with the kernel, cut into chunks, and
/// the stack of chunks the worker currently owns and has not handed to any ring.
///
/// Chunk ownership moves: free stack -> fill ring (kernel) -> RX ring -> worker ([`Desc`]) ->
/// TX ring (kernel) -> completion ring -> free stack; or worker -> [`Umem::free`].
pub struct Umem {
    area: NonNull<u8>,
    len: usize,
    hugepages: bool,
    chunk_size: u32,
    rx_headroom: u32,
    /// Chunk base addresses (offsets in the area); capacity = frame count, never grows.
    pub(super) free: Vec<u64>,
    pub(super) inner: xdpilone::Umem,
    /// Set once the socket that owns the UMEM's file descriptor is bound; later sockets bind
    /// with `XDP_SHARED_UMEM` and inherit its copy/zero-copy and need-wakeup flags.
    pub(super) owner: Option<OwnerFlags>,
    pub(super) config: UmemConfig,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct OwnerFlags {
    pub need_wakeup: bool,
}

// SAFETY: the only non-Send parts are the pointer to the area this struct owns exclusively and
// xdpilone's copy of that pointer, which it only uses to compute addresses (`Umem::frame`,
// which we never call). Nothing is tied to the creating thread: the sockets are file
// descriptors, usable from any thread.
unsafe impl Send for Umem {}

impl std::fmt::Debug for Umem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Umem")
            .field("len", &self.len)
            .field("hugepages", &self.hugepages)
            .field("chunk_size", &self.chunk_size)
            .field("rx_headroom", &self.rx_headroom)
            .field("free", &self.free.len())
            .finish()
    }
}

impl Umem {
    /// Maps and registers the area. Hugepages per `cfg.hugepages`; logs (`info!`) which kind
    /// was used — [`Umem::hugepages`] tells too.
    pub fn new(cfg: &UmemConfig) -> Result<Umem, AfXdpError> {
        if cfg.chunk_size != 2048 && cfg.chunk_size != 4096 {
            return Err(AfXdpError::InvalidConfig(format!(
                "UMEM chunk size {} must be 2048 or 4096",
                cfg.chunk_size
            )));
        }
        if cfg.frame_count == 0 || cfg.frame_count > (1 << 24) {
            return Err(AfXdpError::InvalidConfig(format!(
                "UMEM frame count {} must be between 1 and 16777216",
                cfg.frame_count
            )));
        }
        for (what, n) in [("fill", cfg.fill_size), ("completion", cfg.completion_size)] {
            if !n.is_power_of_two() {
                return Err(AfXdpError::InvalidConfig(format!(
                    "{what} ring size {n} must be a power of two"
                )));
            }
        }
        let rx_headroom = XDP_PACKET_HEADROOM + cfg.extra_headroom;
        if rx_headroom < MIN_HEADROOM || rx_headroom + 1514 > cfg.chunk_size {
            return Err(AfXdpError::InvalidConfig(format!(
                "extra headroom {} leaves no room for a 1514-byte frame in a {}-byte chunk",
                cfg.extra_headroom, cfg.chunk_size
            )));
        }

        let bytes = cfg.frame_count as usize * cfg.chunk_size as usize;
        let (area, len, hugepages) = map_area(bytes, cfg)?;

        sys::raise_memlock();
        let xcfg = xdpilone::UmemConfig {
            fill_size: cfg.fill_size,
            complete_size: cfg.completion_size,
            frame_size: cfg.chunk_size,
            headroom: cfg.extra_headroom,
            flags: 0,
        };
        let slice = NonNull::slice_from_raw_parts(area, bytes);
        // SAFETY: `slice` is a fresh page-aligned private mapping of `len >= bytes` bytes that
        // this Umem owns and unmaps only in Drop; xdpilone only registers it with the kernel.
        let inner = match unsafe { xdpilone::Umem::new(xcfg, slice) } {
            Ok(u) => u,
            Err(e) => {
                unmap(area, len);
                let cause = io::Error::from_raw_os_error(e.get_raw());
                return Err(match e.get_raw() {
                    libc::ENOBUFS | libc::ENOMEM => AfXdpError::Memlock {
                        action: "registering the UMEM",
                    },
                    libc::EPERM | libc::EACCES => AfXdpError::PermissionDenied {
                        action: "creating an AF_XDP socket",
                    },
                    _ => AfXdpError::UmemAlloc {
                        bytes,
                        frames: cfg.frame_count,
                        chunk_size: cfg.chunk_size,
                        pages: if hugepages {
                            "in hugepages"
                        } else {
                            "in ordinary pages"
                        },
                        cause,
                    },
                });
            }
        };

        let mut free = Vec::with_capacity(cfg.frame_count as usize);
        // Highest first so pops hand out low addresses first (nicer to read in traces).
        free.extend(
            (0..u64::from(cfg.frame_count))
                .rev()
                .map(|i| i * u64::from(cfg.chunk_size)),
        );
        log::info!(
            "AF_XDP UMEM: {} frames of {} bytes ({} KiB) in {}",
            cfg.frame_count,
            cfg.chunk_size,
            bytes / 1024,
            if hugepages {
                "2 MiB hugepages"
            } else {
                "ordinary pages"
            }
        );
        Ok(Umem {
            area,
            len,
            hugepages,
            chunk_size: cfg.chunk_size,
            rx_headroom,
            free,
            inner,
            owner: None,
            config: cfg.clone(),
        })
    }

    /// True when the area is in hugepages.
    pub fn hugepages(&self) -> bool {
        self.hugepages
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Headroom in front of received packets (and of [`Umem::alloc`]ed ones).
    pub fn rx_headroom(&self) -> u32 {
        self.rx_headroom
    }

    pub fn frame_count(&self) -> u32 {
        self.config.frame_count
    }

    /// Chunks on the free stack now.
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }

    #[inline]
    fn chunk_of(&self, addr: u64) -> Option<u64> {
        let base = addr & !(u64::from(self.chunk_size) - 1);
        (base < (self.config.frame_count as u64) * u64::from(self.chunk_size)).then_some(base)
    }

    /// The packet `d` describes, as a mutable view into its chunk. `None` when `d` does not lie
    /// inside one chunk of this UMEM. After `push_front`/`pull_front`, turn the view back into a
    /// descriptor with [`Umem::desc_for`] (addr = chunk base + `start()`).
    #[inline]
    pub fn packet_buf(&mut self, d: &Desc) -> Option<PacketBuf<'_>> {
        let base = self.chunk_of(d.addr)?;
        let start = (d.addr - base) as usize;
        // SAFETY: `chunk_of` checked base + chunk_size <= frame_count * chunk_size <= the mapped
        // length, so the range is inside the area we own; `&mut self` keeps any other Rust
        // reference into the area from existing meanwhile. The kernel writes only into chunks
        // sitting in a fill ring, which by the ownership rules the holder of `d` does not hold;
        // any byte value is a valid u8.
        let chunk = unsafe {
            std::slice::from_raw_parts_mut(
                self.area.as_ptr().add(base as usize),
                self.chunk_size as usize,
            )
        };
        PacketBuf::new(chunk, start, d.len as usize)
    }

    /// The packet bytes `d` describes, read-only. `None` when `d` is not inside one chunk.
    #[inline]
    pub fn data(&self, d: &Desc) -> Option<&[u8]> {
        let base = self.chunk_of(d.addr)?;
        let start = (d.addr - base) as usize;
        let end = start.checked_add(d.len as usize)?;
        if end > self.chunk_size as usize {
            return None;
        }
        // SAFETY: as in `packet_buf`: the range is inside the owned area; shared borrow of self.
        Some(unsafe {
            std::slice::from_raw_parts(self.area.as_ptr().add(d.addr as usize), d.len as usize)
        })
    }

    /// The descriptor of a packet that now starts `start` bytes into `d`'s chunk and is `len`
    /// bytes long (what a [`PacketBuf`] of `d` reports after push/pull).
    #[inline]
    pub fn desc_for(&self, d: &Desc, start: usize, len: usize) -> Desc {
        let base = d.addr & !(u64::from(self.chunk_size) - 1);
        Desc {
            addr: base + start as u64,
            len: len as u32,
        }
    }

    /// True when `d` lies inside one chunk of this UMEM (what the kernel accepts on TX).
    #[inline]
    pub fn is_valid(&self, d: &Desc) -> bool {
        match self.chunk_of(d.addr) {
            Some(base) => d.addr - base + u64::from(d.len) <= u64::from(self.chunk_size),
            None => false,
        }
    }

    /// Takes a free chunk for a packet the worker builds itself: `addr` leaves
    /// [`Umem::rx_headroom`] bytes in front, `len` is 0 (grow it with `PacketBuf::set_len`).
    #[inline]
    pub fn alloc(&mut self) -> Option<Desc> {
        let base = self.free.pop()?;
        Some(Desc {
            addr: base + u64::from(self.rx_headroom),
            len: 0,
        })
    }

    /// Gives the chunk of `d` back to the free stack (a dropped packet). Addresses outside the
    /// UMEM, and frees beyond the frame count (double frees), are ignored.
    #[inline]
    pub fn free(&mut self, d: &Desc) {
        self.free_addr(d.addr);
    }

    #[inline]
    pub(super) fn free_addr(&mut self, addr: u64) {
        if let Some(base) = self.chunk_of(addr) {
            if self.free.len() < self.free.capacity() {
                self.free.push(base);
            }
        }
    }
}

impl Drop for Umem {
    fn drop(&mut self) {
        // The kernel holds its own references to the registered pages until the last socket
        // using them closes, so unmapping here is safe even while sockets live on.
        unmap(self.area, self.len);
    }
}

fn unmap(area: NonNull<u8>, len: usize) {
    // SAFETY: `area`/`len` are exactly one mapping made by `map_area`, unmapped once.
    unsafe { libc::munmap(area.as_ptr().cast(), len) };
}

/// mmap the area: hugepages first when allowed, then ordinary pages.
fn map_area(bytes: usize, cfg: &UmemConfig) -> Result<(NonNull<u8>, usize, bool), AfXdpError> {
    let base = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE;
    let alloc_err = |pages, cause| AfXdpError::UmemAlloc {
        bytes,
        frames: cfg.frame_count,
        chunk_size: cfg.chunk_size,
        pages,
        cause,
    };
    if cfg.hugepages != HugePages::Never {
        let len = bytes.div_ceil(HUGE_PAGE) * HUGE_PAGE;
        match mmap(len, base | libc::MAP_HUGETLB) {
            Ok(p) => return Ok((p, len, true)),
            Err(e) if cfg.hugepages == HugePages::Require => {
                return Err(alloc_err(
                    "in hugepages (required; reserve some with vm.nr_hugepages)",
                    e,
                ));
            }
            Err(e) => {
                log::info!("AF_XDP UMEM: no hugepages ({e}), using ordinary pages");
            }
        }
    }
    let p = mmap(bytes, base).map_err(|e| alloc_err("in ordinary pages", e))?;
    Ok((p, bytes, false))
}

fn mmap(len: usize, flags: libc::c_int) -> io::Result<NonNull<u8>> {
    // SAFETY: anonymous mapping request with no address hint; the result is checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned NULL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small UMEM, or `None` (test skipped) without CAP_NET_RAW: registering needs an AF_XDP
    /// socket.
    fn small() -> Option<Umem> {
        match Umem::new(&UmemConfig {
            frame_count: 16,
            hugepages: HugePages::Never,
            ..Default::default()
        }) {
            Ok(u) => Some(u),
            Err(AfXdpError::PermissionDenied { .. }) => {
                eprintln!("skipping: AF_XDP sockets need root / CAP_NET_RAW");
                None
            }
            Err(e) => panic!("a small UMEM: {e}"),
        }
    }

    #[test]
    fn alloc_free_and_packet_buf_offsets() {
        let Some(mut u) = small() else { return };
        assert_eq!(u.free_frames(), 16);
        let d = u.alloc().expect("a frame");
        assert_eq!(d.addr % 4096, u64::from(XDP_PACKET_HEADROOM));
        assert_eq!(u.free_frames(), 15);
        let (start, len) = {
            let mut b = u.packet_buf(&Desc { len: 60, ..d }).expect("view");
            assert_eq!(b.start(), 256);
            b.data_mut().fill(0xab);
            let front = b.push_front(20).expect("headroom");
            front[..20].fill(0x11);
            (b.start(), b.len())
        };
        let nd = u.desc_for(&d, start, len);
        assert_eq!(nd.addr, d.addr - 20);
        assert_eq!(nd.len, 80);
        let bytes = u.data(&nd).expect("in range");
        assert_eq!(&bytes[..20], &[0x11; 20]);
        assert_eq!(&bytes[20..], &[0xab; 60]);
        assert!(u.is_valid(&nd));
        u.free(&nd);
        assert_eq!(u.free_frames(), 16);
        // Double free and out-of-range frees do not grow the stack.
        u.free(&nd);
        u.free(&Desc {
            addr: 1 << 40,
            len: 1,
        });
        assert_eq!(u.free_frames(), 16);
    }

    #[test]
    fn out_of_range_descs_are_rejected() {
        let Some(mut u) = small() else { return };
        assert!(u
            .packet_buf(&Desc {
                addr: 16 * 4096,
                len: 1
            })
            .is_none());
        assert!(u
            .packet_buf(&Desc {
                addr: 4000,
                len: 200
            })
            .is_none());
        assert!(!u.is_valid(&Desc {
            addr: 4000,
            len: 200
        }));
        assert!(u
            .data(&Desc {
                addr: 4000,
                len: 200
            })
            .is_none());
    }

    #[test]
    fn bad_configs_are_refused() {
        for cfg in [
            UmemConfig {
                chunk_size: 3000,
                ..Default::default()
            },
            UmemConfig {
                frame_count: 0,
                ..Default::default()
            },
            UmemConfig {
                fill_size: 1000,
                ..Default::default()
            },
            UmemConfig {
                chunk_size: 2048,
                extra_headroom: 512,
                ..Default::default()
            },
        ] {
            assert!(
                matches!(Umem::new(&cfg), Err(AfXdpError::InvalidConfig(_))),
                "{cfg:?}"
            );
        }
    }
}
