//! The host's own IP addresses, read with getifaddrs(3) — for the AF_XDP path's
//! `local_addrs` XDP map (every address of the namespace) and the DPDK path's `LocalAddrs`
//! table (the addresses of its `net_tap` host interfaces). Control-side only, never per packet.

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The IPv4 and IPv6 addresses of the interfaces `keep` accepts by name (`keep` sees `None`
/// for an entry without a name), in the calling thread's network namespace.
///
/// # Errors
/// When getifaddrs fails (out of memory, netlink refused).
pub fn read_addrs(keep: impl Fn(Option<&CStr>) -> bool) -> io::Result<BTreeSet<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid out-pointer; on success getifaddrs stores a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let list = IfAddrs(head);
    let mut out = BTreeSet::new();
    let mut cur = list.0.cast_const();
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, alive until `list` drops.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next.cast_const();
        let name = if ifa.ifa_name.is_null() {
            None
        } else {
            // SAFETY: a non-null `ifa_name` is a NUL-terminated string owned by the list.
            Some(unsafe { CStr::from_ptr(ifa.ifa_name) })
        };
        if !keep(name) {
            continue;
        }
        if let Some(ip) = sockaddr_ip(ifa.ifa_addr) {
            out.insert(ip);
        }
    }
    Ok(out)
}

/// The addresses of the interfaces named in `names`.
///
/// # Errors
/// As [`read_addrs`].
pub fn interface_addrs(names: &[&str]) -> io::Result<BTreeSet<IpAddr>> {
    read_addrs(|n| n.is_some_and(|n| names.iter().any(|w| n.to_bytes() == w.as_bytes())))
}

/// Frees getifaddrs' list on every path.
struct IfAddrs(*mut libc::ifaddrs);

impl Drop for IfAddrs {
    fn drop(&mut self) {
        // SAFETY: the pointer came from a successful getifaddrs and is freed exactly once.
        unsafe { libc::freeifaddrs(self.0) };
    }
}

/// The address of an AF_INET / AF_INET6 sockaddr; `None` for other families (AF_PACKET).
fn sockaddr_ip(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: `sa` points to a sockaddr from getifaddrs; every sockaddr starts with sa_family.
    let family = i32::from(unsafe { std::ptr::read_unaligned(sa) }.sa_family);
    match family {
        libc::AF_INET => {
            // SAFETY: family AF_INET: getifaddrs stored a whole sockaddr_in there.
            let sin = unsafe { std::ptr::read_unaligned(sa.cast::<libc::sockaddr_in>()) };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))))
        }
        libc::AF_INET6 => {
            // SAFETY: family AF_INET6: getifaddrs stored a whole sockaddr_in6 there.
            let sin6 = unsafe { std::ptr::read_unaligned(sa.cast::<libc::sockaddr_in6>()) };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}
