//! The host's own IP addresses, for the XDP program's `local_addrs` map: a packet to one of
//! them belongs to the kernel (health-check replies, SSH, BGP), even when it comes from a nat
//! backend's address:port, unless it is for a VIP listener.
//!
//! Every address of the network namespace counts, not only the attached interface's: Linux
//! accepts a packet for any local address on any interface (a health check may well leave with
//! a loopback or management source address). Operators and DHCP add addresses after the start,
//! so [`LocalAddrRefresh`] re-reads them about once a second, from the main thread — never from
//! a worker.

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use super::XdpProgram;

/// How often [`LocalAddrRefresh::refresh_if_due`] re-reads the addresses.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// The IPv4 and IPv6 addresses of the calling thread's network namespace (`ifname: None`) or
/// of one interface, with getifaddrs(3).
///
/// # Errors
/// When getifaddrs fails (out of memory, netlink refused).
pub fn read_local_addrs(ifname: Option<&str>) -> io::Result<BTreeSet<IpAddr>> {
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
        if let Some(want) = ifname {
            if ifa.ifa_name.is_null() {
                continue;
            }
            // SAFETY: a non-null `ifa_name` is a NUL-terminated string owned by the list.
            let name = unsafe { CStr::from_ptr(ifa.ifa_name) };
            if name.to_bytes() != want.as_bytes() {
                continue;
            }
        }
        if let Some(ip) = sockaddr_ip(ifa.ifa_addr) {
            out.insert(ip);
        }
    }
    Ok(out)
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

/// What a refresh changed (over all programs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalAddrChanges {
    pub added: BTreeSet<IpAddr>,
    pub removed: BTreeSet<IpAddr>,
}

impl LocalAddrChanges {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// Keeps every program's `local_addrs` map equal to the host's addresses: call
/// [`Self::refresh_if_due`] from a slow loop (the main thread's); it logs changes, and logs a
/// failure once rather than every second.
#[derive(Debug)]
pub struct LocalAddrRefresh {
    next: Instant,
    last_error: Option<String>,
}

impl Default for LocalAddrRefresh {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalAddrRefresh {
    /// The first refresh is due one [`REFRESH_INTERVAL`] from now (attaching filled the maps).
    pub fn new() -> LocalAddrRefresh {
        LocalAddrRefresh {
            next: Instant::now() + REFRESH_INTERVAL,
            last_error: None,
        }
    }

    /// Whether a refresh is due (cheap: no system call besides reading the clock).
    pub fn is_due(&self) -> bool {
        Instant::now() >= self.next
    }

    /// Refreshes when due; see [`Self::refresh`].
    pub fn refresh_if_due(&mut self, programs: &mut [XdpProgram]) -> Option<LocalAddrChanges> {
        if !self.is_due() {
            return None;
        }
        Some(self.refresh(programs))
    }

    /// Reads the addresses now and brings every program's map in step, logging what changed.
    /// A failure is logged (once until it changes or clears) and retried next time.
    pub fn refresh(&mut self, programs: &mut [XdpProgram]) -> LocalAddrChanges {
        self.next = Instant::now() + REFRESH_INTERVAL;
        let mut changes = LocalAddrChanges::default();
        let addrs = match read_local_addrs(None) {
            Ok(a) => a,
            Err(e) => {
                self.note_error(format!(
                    "cannot read the host's addresses (getifaddrs): {e}; the XDP programs keep \
                     the addresses they had"
                ));
                return changes;
            }
        };
        let mut error = None;
        for p in programs.iter_mut() {
            match p.set_local_addrs(&addrs) {
                Ok(c) => {
                    changes.added.extend(c.added);
                    changes.removed.extend(c.removed);
                }
                Err(e) => {
                    error = Some(format!(
                        "XDP on {}: cannot update the local addresses: {e}; packets to the \
                         missing ones may be taken for fiberlb's",
                        p.ifname()
                    ));
                }
            }
        }
        for a in &changes.added {
            log::info!("local address {a} added: its traffic goes to the kernel");
        }
        for a in &changes.removed {
            log::info!("local address {a} removed");
        }
        match error {
            Some(e) => self.note_error(e),
            None => {
                if self.last_error.take().is_some() {
                    log::info!("local addresses are in step with the XDP programs again");
                }
            }
        }
        changes
    }

    fn note_error(&mut self, e: String) {
        if self.last_error.as_deref() != Some(e.as_str()) {
            log::error!("{e}");
            self.last_error = Some(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_its_addresses() {
        let lo = read_local_addrs(Some("lo")).expect("getifaddrs");
        assert!(lo.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{lo:?}");
        // ::1 is absent only where IPv6 is disabled on lo.
        let v6_off = std::fs::read_to_string("/proc/sys/net/ipv6/conf/lo/disable_ipv6")
            .map(|s| s.trim() != "0")
            .unwrap_or(true);
        assert!(
            v6_off || lo.contains(&IpAddr::V6(Ipv6Addr::LOCALHOST)),
            "{lo:?}"
        );
        // lo's addresses are among the namespace's.
        let all = read_local_addrs(None).expect("getifaddrs");
        assert!(lo.is_subset(&all), "{lo:?} not in {all:?}");
    }

    #[test]
    fn a_missing_interface_has_no_addresses() {
        assert!(read_local_addrs(Some("fla-nonexist0")).unwrap().is_empty());
    }

    #[test]
    fn refresh_is_due_after_the_interval_only() {
        let mut r = LocalAddrRefresh::new();
        assert!(!r.is_due());
        assert_eq!(r.refresh_if_due(&mut []), None);
        r.next = Instant::now();
        assert!(r.is_due());
        assert_eq!(r.refresh_if_due(&mut []), Some(LocalAddrChanges::default()));
        assert!(!r.is_due());
    }
}
