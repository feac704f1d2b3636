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
use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::nic::host_addrs::{interface_addrs, read_addrs};

use super::XdpProgram;

/// How often [`LocalAddrRefresh::refresh_if_due`] re-reads the addresses.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// The IPv4 and IPv6 addresses of the calling thread's network namespace (`ifname: None`) or
/// of one interface ([`crate::nic::host_addrs`]).
///
/// # Errors
/// When getifaddrs fails (out of memory, netlink refused).
pub fn read_local_addrs(ifname: Option<&str>) -> io::Result<BTreeSet<IpAddr>> {
    match ifname {
        None => read_addrs(|_| true),
        Some(name) => interface_addrs(&[name]),
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
    use std::net::{Ipv4Addr, Ipv6Addr};

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
