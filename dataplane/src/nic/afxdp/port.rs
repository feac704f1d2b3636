//! One AF_XDP socket on one (interface, queue), on its worker's shared UMEM.

use std::ffi::CString;
use std::io;
use std::num::NonZeroU32;

use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, User};

use super::umem::OwnerFlags;
use super::{sys, AfXdpError, Umem};
use crate::packet::Desc;

/// Refill the fill ring once this many slots are free (or when it runs low).
const REFILL_BATCH: u32 = 32;

/// Copy or zero-copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BindMode {
    /// Zero-copy when the driver supports it, copy otherwise (the kernel decides at bind).
    #[default]
    Auto,
    /// Always copy (works on every driver).
    Copy,
    /// Zero-copy or an error.
    ZeroCopy,
}

/// One socket's settings. Ring sizes are powers of two.
#[derive(Clone, Debug)]
pub struct XskConfig {
    pub ifname: String,
    pub queue: u32,
    pub rx_size: u32,
    pub tx_size: u32,
    /// Ignored for the second and later sockets of a UMEM: they inherit the first one's mode.
    pub bind: BindMode,
    /// `XDP_USE_NEED_WAKEUP`: the kernel says when it needs a syscall to make progress, so a
    /// busy-polling worker makes none otherwise. Inherited like `bind`.
    pub need_wakeup: bool,
}

impl Default for XskConfig {
    fn default() -> Self {
        XskConfig {
            ifname: String::new(),
            queue: 0,
            rx_size: 2048,
            tx_size: 2048,
            bind: BindMode::Auto,
            need_wakeup: true,
        }
    }
}

/// The socket's kernel statistics (`XDP_STATISTICS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Dropped for other reasons than ring full (e.g. frame too large for a chunk).
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    /// Dropped because the RX ring was full: the worker is too slow.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a packet arrived: too few free frames.
    pub rx_fill_ring_empty: u64,
    pub tx_ring_empty: u64,
}

impl From<sys::XdpStatistics> for XskStats {
    fn from(s: sys::XdpStatistics) -> Self {
        XskStats {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty: s.rx_fill_ring_empty_descs,
            tx_ring_empty: s.tx_ring_empty_descs,
        }
    }
}

/// Reads a socket's [`XskStats`] from another thread than its worker's (the data plane's main
/// thread publishes them once a second). It holds a duplicate of the socket's descriptor and
/// only ever makes the read-only `XDP_STATISTICS` getsockopt on it: no ring, UMEM or other
/// worker-owned state is touched, and the descriptor stays valid whenever the worker drops its
/// [`XskPort`] (the socket itself is then released when this reader is dropped too).
#[derive(Debug)]
pub struct XskStatsReader {
    fd: std::os::fd::OwnedFd,
    ifname: String,
    queue: u32,
}

impl XskStatsReader {
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// The kernel's statistics for the socket now.
    ///
    /// # Errors
    /// When the getsockopt fails.
    pub fn stats(&self) -> Result<XskStats, AfXdpError> {
        use std::os::fd::AsRawFd;
        sys::xdp_statistics(self.fd.as_raw_fd())
            .map(XskStats::from)
            .map_err(|cause| AfXdpError::Socket {
                ifname: self.ifname.clone(),
                queue: self.queue,
                op: "XDP_STATISTICS",
                cause,
            })
    }
}

/// An AF_XDP socket bound to one (interface, queue), with its own RX/TX and fill/completion
/// rings. Burst-oriented and allocation-free: [`Self::rx_burst`], [`Self::tx_burst`],
/// [`Self::complete`]. Closed on drop.
pub struct XskPort {
    dq: DeviceQueue,
    rx: RingRx,
    tx: RingTx,
    user: User,
    ifname: String,
    queue: u32,
    fill_size: u32,
    completion_size: u32,
    need_wakeup: bool,
    zerocopy: bool,
    tx_invalid: u64,
}

impl std::fmt::Debug for XskPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskPort")
            .field("ifname", &self.ifname)
            .field("queue", &self.queue)
            .field("fd", &self.fd())
            .field("zerocopy", &self.zerocopy)
            .field("need_wakeup", &self.need_wakeup)
            .finish()
    }
}

impl XskPort {
    /// Creates the socket in the calling thread's network namespace, binds it to
    /// `cfg.ifname`/`cfg.queue` on `umem` (sharing it with the UMEM's other sockets), and fills
    /// its fill ring from the free stack. Register [`Self::fd`] with
    /// [`super::XdpProgram::register_socket`] to start receiving.
    pub fn open(umem: &mut Umem, cfg: &XskConfig) -> Result<XskPort, AfXdpError> {
        let ifname = cfg.ifname.as_str();
        sys::ifindex(ifname)?;
        if let Some(count) = sys::rx_queue_count(ifname) {
            if cfg.queue >= count {
                return Err(AfXdpError::QueueOutOfRange {
                    ifname: ifname.to_string(),
                    queue: cfg.queue,
                    count,
                });
            }
        }
        let (rx_size, tx_size) = match (NonZeroU32::new(cfg.rx_size), NonZeroU32::new(cfg.tx_size))
        {
            (Some(r), Some(t)) if r.is_power_of_two() && t.is_power_of_two() => (r, t),
            _ => {
                return Err(AfXdpError::InvalidConfig(format!(
                    "RX/TX ring sizes {}/{} must be non-zero powers of two",
                    cfg.rx_size, cfg.tx_size
                )))
            }
        };

        let queue = cfg.queue;
        let sock_err = |op: &'static str, e: xdpilone::Errno| {
            let errno = e.get_raw().abs();
            match errno {
                libc::EPERM | libc::EACCES => AfXdpError::PermissionDenied {
                    action: "creating an AF_XDP socket",
                },
                libc::ENOBUFS => AfXdpError::Memlock {
                    action: "creating AF_XDP rings",
                },
                _ => AfXdpError::Socket {
                    ifname: ifname.to_string(),
                    queue,
                    op,
                    cause: io::Error::from_raw_os_error(errno),
                },
            }
        };

        let mut info = IfInfo::invalid();
        let cname = CString::new(ifname).map_err(|_| AfXdpError::InterfaceNotFound {
            name: ifname.to_string(),
        })?;
        info.from_name(&cname)
            .map_err(|_| AfXdpError::InterfaceNotFound {
                name: ifname.to_string(),
            })?;
        info.set_queue(queue);

        // The first socket of a UMEM is the UMEM's own file descriptor; later ones are new
        // sockets bound with XDP_SHARED_UMEM (xdpilone sets it when the fds differ).
        let first = umem.owner.is_none();
        let sock = if first {
            Socket::with_shared(&info, &umem.inner).map_err(|e| sock_err("socket", e))?
        } else {
            Socket::new(&info).map_err(|e| sock_err("socket", e))?
        };
        let dq = umem
            .inner
            .fq_cq(&sock)
            .map_err(|e| sock_err("fill/completion rings", e))?;

        let bind_flags = if first {
            let mode = match cfg.bind {
                BindMode::Auto => 0,
                BindMode::Copy => SocketConfig::XDP_BIND_COPY,
                BindMode::ZeroCopy => SocketConfig::XDP_BIND_ZEROCOPY,
            };
            let wake = if cfg.need_wakeup {
                SocketConfig::XDP_BIND_NEED_WAKEUP
            } else {
                0
            };
            mode | wake
        } else {
            // The kernel refuses mode flags with XDP_SHARED_UMEM: they come from the owner.
            0
        };
        let user = umem
            .inner
            .rx_tx(
                &sock,
                &SocketConfig {
                    rx_size: Some(rx_size),
                    tx_size: Some(tx_size),
                    bind_flags,
                },
            )
            .map_err(|e| sock_err("RX/TX rings", e))?;
        let rx = user
            .map_rx()
            .map_err(|e| sock_err("mapping the RX ring", e))?;
        let tx = user
            .map_tx()
            .map_err(|e| sock_err("mapping the TX ring", e))?;

        if let Err(e) = umem.inner.bind(&user) {
            let errno = e.get_raw().abs();
            let zc_forced = first && cfg.bind == BindMode::ZeroCopy;
            return Err(match errno {
                libc::EBUSY => AfXdpError::QueueBusy {
                    ifname: ifname.to_string(),
                    queue,
                },
                libc::EOPNOTSUPP | libc::EINVAL if zc_forced => AfXdpError::ZeroCopyUnsupported {
                    ifname: ifname.to_string(),
                    queue,
                    cause: io::Error::from_raw_os_error(errno),
                },
                _ => sock_err("bind", e),
            });
        }

        let zerocopy = sys::is_zerocopy(user.as_raw_fd()).unwrap_or(false);
        let need_wakeup = match umem.owner {
            Some(o) => o.need_wakeup,
            None => cfg.need_wakeup,
        };
        if first {
            umem.owner = Some(OwnerFlags { need_wakeup });
        }
        log::info!(
            "AF_XDP socket on {ifname} queue {queue}: {} mode{}{}",
            if zerocopy { "zero-copy" } else { "copy" },
            if need_wakeup { ", need_wakeup" } else { "" },
            if first { "" } else { ", shared UMEM" },
        );

        let mut port = XskPort {
            dq,
            rx,
            tx,
            user,
            ifname: ifname.to_string(),
            queue,
            fill_size: umem.config.fill_size,
            completion_size: umem.config.completion_size,
            need_wakeup,
            zerocopy,
            tx_invalid: 0,
        };
        port.refill(umem);
        Ok(port)
    }

    /// The socket's file descriptor, for [`super::XdpProgram::register_socket`]. Owned by the
    /// port: do not close it.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.user.as_raw_fd()
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// True when the socket runs in zero-copy mode.
    pub fn zerocopy(&self) -> bool {
        self.zerocopy
    }

    /// Frames in the fill ring that the kernel has not taken yet (for accounting: in copy mode
    /// every frame of the UMEM is on the free stack, in a fill ring, or held by the worker or a
    /// TX/RX ring).
    pub fn fill_level(&self) -> u32 {
        self.dq.pending()
    }

    /// Descriptors that [`Self::tx_burst`] refused because they were outside the UMEM.
    pub fn tx_invalid(&self) -> u64 {
        self.tx_invalid
    }

    /// Tops up the fill ring from the UMEM's free stack (in batches), waking the kernel when
    /// it asked for it.
    #[inline]
    fn refill(&mut self, umem: &mut Umem) {
        let pending = self.dq.pending();
        let room = self.fill_size.saturating_sub(pending);
        let avail = u32::try_from(umem.free.len()).unwrap_or(u32::MAX);
        let want = room.min(avail);
        if want == 0 || (want < REFILL_BATCH && pending >= REFILL_BATCH) {
            return;
        }
        {
            let mut w = self.dq.fill(want);
            let n = (w.capacity() as usize).min(umem.free.len());
            let start = umem.free.len() - n;
            // Exactly `n` items for `n` reserved slots: none is pulled from the stack and lost.
            w.insert(umem.free.drain(start..));
            w.commit();
        }
        if self.need_wakeup && self.dq.needs_wakeup() {
            self.dq.wake();
        }
    }

    /// Receives up to `out.len()` packets into `out` and returns how many. Their chunks now
    /// belong to the caller: each must go to `tx_burst` (of any port on this UMEM) or
    /// [`Umem::free`]. Refills the fill ring first.
    #[inline]
    pub fn rx_burst(&mut self, umem: &mut Umem, out: &mut [Desc]) -> usize {
        self.refill(umem);
        let max = u32::try_from(out.len()).unwrap_or(u32::MAX);
        if max == 0 {
            return 0;
        }
        let mut reader = self.rx.receive(max);
        let mut n = 0;
        for slot in out.iter_mut() {
            match reader.read() {
                Some(d) => {
                    *slot = Desc {
                        addr: d.addr,
                        len: d.len,
                    };
                    n += 1;
                }
                None => break,
            }
        }
        reader.release();
        n
    }

    /// Queues `descs` for transmission and returns how many were consumed from the front; the
    /// caller still owns `descs[n..]` (TX ring full). Descriptors outside the UMEM are consumed
    /// and dropped (counted in [`Self::tx_invalid`]). Kicks the kernel (one `sendto`) only
    /// when it needs it: always in copy mode, when flagged with need_wakeup.
    #[inline]
    pub fn tx_burst(&mut self, umem: &mut Umem, descs: &[Desc]) -> usize {
        if descs.is_empty() {
            return 0;
        }
        let want = u32::try_from(descs.len()).unwrap_or(u32::MAX);
        let mut w = self.tx.transmit(want);
        let cap = w.capacity();
        let mut used = 0u32;
        let mut consumed = 0usize;
        for d in descs {
            if used == cap {
                break;
            }
            consumed += 1;
            if !umem.is_valid(d) {
                umem.free(d);
                self.tx_invalid += 1;
                continue;
            }
            if w.insert_once(XdpDesc {
                addr: d.addr,
                len: d.len,
                options: 0,
            }) {
                used += 1;
            }
        }
        w.commit();
        drop(w);
        if used > 0 {
            self.kick_tx();
        }
        consumed
    }

    #[inline]
    fn kick_tx(&mut self) {
        if !self.need_wakeup || self.tx.needs_wakeup() {
            self.tx.wake();
        }
    }

    /// Moves transmitted frames from the completion ring to the free stack; kicks the kernel
    /// again if earlier transmissions are still waiting in the TX ring. Returns the number of
    /// frames freed.
    #[inline]
    pub fn complete(&mut self, umem: &mut Umem) -> usize {
        let mut n = 0;
        {
            let mut r = self.dq.complete(self.completion_size);
            while let Some(addr) = r.read() {
                umem.free_addr(addr);
                n += 1;
            }
            r.release();
        }
        if self.tx.pending() > 0 {
            self.kick_tx();
        }
        n
    }

    /// A reader of this socket's statistics for another thread (see [`XskStatsReader`]).
    ///
    /// # Errors
    /// When the descriptor cannot be duplicated (out of descriptors).
    pub fn stats_reader(&self) -> Result<XskStatsReader, AfXdpError> {
        let fd = sys::dup_fd(self.fd()).map_err(|cause| AfXdpError::Socket {
            ifname: self.ifname.clone(),
            queue: self.queue,
            op: "dup",
            cause,
        })?;
        Ok(XskStatsReader {
            fd,
            ifname: self.ifname.clone(),
            queue: self.queue,
        })
    }

    /// The kernel's statistics for this socket.
    pub fn stats(&self) -> Result<XskStats, AfXdpError> {
        let s = self.user.statistics_v2().map_err(|e| AfXdpError::Socket {
            ifname: self.ifname.clone(),
            queue: self.queue,
            op: "XDP_STATISTICS",
            cause: io::Error::from_raw_os_error(e.get_raw().abs()),
        })?;
        Ok(XskStats {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty: s.rx_fill_ring_empty_descs,
            tx_ring_empty: s.tx_ring_empty_descs,
        })
    }
}
