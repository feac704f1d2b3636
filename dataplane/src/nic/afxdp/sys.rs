//! Small system calls the AF_XDP setup needs and neither xdpilone nor aya offers.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::AfXdpError;

/// `if_nametoindex`, with the clear error for a missing interface.
pub(crate) fn ifindex(name: &str) -> Result<u32, AfXdpError> {
    let not_found = || AfXdpError::InterfaceNotFound {
        name: name.to_string(),
    };
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(not_found());
    }
    let c = CString::new(name).map_err(|_| not_found())?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(not_found());
    }
    Ok(idx)
}

/// `struct ethtool_channels` from <linux/ethtool.h>.
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// `struct ifreq` with the `ifr_data` member, padded to the kernel's 40 bytes.
#[repr(C)]
struct IfreqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// Number of receive queues of `ifname` as ethtool reports them (`max(rx, combined)`), or
/// `None` when the driver does not report channels (the bind then tells).
pub(crate) fn rx_queue_count(ifname: &str) -> Option<u32> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..EthtoolChannels::default()
    };
    let mut req = IfreqData {
        name: [0; libc::IFNAMSIZ],
        data: (&mut ch as *mut EthtoolChannels).cast(),
        _pad: [0; 16],
    };
    for (d, s) in req
        .name
        .iter_mut()
        .zip(ifname.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCETHTOOL reads `req` (name + pointer) and writes `ch` through the pointer;
    // both live on this stack frame for the duration of the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req as *mut IfreqData) };
    if rc != 0 {
        return None;
    }
    let n = ch.rx_count.max(ch.combined_count);
    (n > 0).then_some(n)
}

/// Raises RLIMIT_MEMLOCK to infinity, best effort: kernels before 5.11 charge BPF maps to it,
/// and the UMEM is always charged to it without CAP_IPC_LOCK.
pub(crate) fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid rlimit struct; failure is harmless (the later call that
    // needs the memory reports a Memlock error).
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
}

const SOL_XDP: libc::c_int = 283;
const XDP_OPTIONS: libc::c_int = 8;
const XDP_OPTIONS_ZEROCOPY: u32 = 1;

/// True when the bound socket runs in zero-copy mode (`XDP_OPTIONS`).
pub(crate) fn is_zerocopy(fd: RawFd) -> io::Result<bool> {
    let mut flags: u32 = 0;
    let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `flags`, which lives across the call.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_OPTIONS,
            (&mut flags as *mut u32).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(flags & XDP_OPTIONS_ZEROCOPY != 0)
}

const XDP_STATISTICS: libc::c_int = 7;

/// `struct xdp_statistics` from <linux/if_xdp.h> (the last three fields since Linux 5.9; an
/// older kernel fills the first three and leaves the rest zero).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct XdpStatistics {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

/// `XDP_STATISTICS` of the AF_XDP socket `fd`: one getsockopt, no state touched.
pub(crate) fn xdp_statistics(fd: RawFd) -> io::Result<XdpStatistics> {
    let mut st = XdpStatistics::default();
    let mut len = std::mem::size_of::<XdpStatistics>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes (the struct's size) into `st`, which lives
    // across the call; every bit pattern is a valid XdpStatistics (plain u64s).
    let rc = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_STATISTICS,
            (&mut st as *mut XdpStatistics).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// A duplicate of `fd` (close-on-exec), owned by the caller.
pub(crate) fn dup_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor the caller keeps open for the call; the result
    // is checked before use.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}
