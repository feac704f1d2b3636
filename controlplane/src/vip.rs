//! VIP allocation from configured CIDR ranges.
//!
//! The allocator keeps no state of its own: the VIPs in use are those of the stored load
//! balancers, so a deleted load balancer's VIP is free again at once and a restart cannot leak
//! addresses. The lowest free address is taken first, which keeps allocations predictable.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::model::Error;

/// An address family, to choose a range when allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// Why a range could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("VIP range {text:?}: {reason}; write it as CIDR, e.g. 192.0.2.0/24 or 2001:db8::/120")]
pub struct RangeError {
    text: String,
    reason: &'static str,
}

/// One CIDR range (`192.0.2.0/24`, `2001:db8::/120`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The network address (host bits zero), as a 128-bit number (IPv4 in the low 32 bits).
    network: u128,
    prefix: u8,
    v6: bool,
}

impl FromStr for Cidr {
    type Err = RangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| RangeError {
            text: s.to_string(),
            reason,
        };
        let text = s.trim();
        if !text.contains('/') {
            return Err(err("no /prefix"));
        }
        let net: ipnet::IpNet = text
            .parse()
            .map_err(|_| err("not an IP address with a prefix length that fits it"))?;
        if net.addr() != net.network() {
            return Err(err("host bits set; give the network address"));
        }
        let (v6, value) = match net.network() {
            IpAddr::V4(a) => (false, u128::from(u32::from(a))),
            IpAddr::V6(a) => (true, u128::from(a)),
        };
        let prefix = net.prefix_len();
        Ok(Cidr {
            network: value,
            prefix,
            v6,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", to_ip(self.network, self.v6), self.prefix)
    }
}

fn to_ip(v: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::from(std::net::Ipv6Addr::from(v))
    } else {
        // Only values derived from an IPv4 range (< 2^32) get here.
        IpAddr::from((v as u32).to_be_bytes())
    }
}

fn to_num(a: IpAddr) -> (u128, bool) {
    match a {
        IpAddr::V4(a) => (u128::from(u32::from(a)), false),
        IpAddr::V6(a) => (u128::from(a), true),
    }
}

impl Cidr {
    /// The address family.
    pub fn family(&self) -> Family {
        if self.v6 {
            Family::V6
        } else {
            Family::V4
        }
    }

    /// First and last allocatable address (as numbers). IPv4 ranges of /30 or wider skip the
    /// network and broadcast addresses; IPv6 ranges of /127 or wider skip the subnet-router
    /// anycast address (the network address).
    fn usable(&self) -> (u128, u128) {
        let host_bits = self.host_bits();
        let last = self.last();
        match (self.v6, host_bits) {
            (false, h) if h >= 2 => (self.network + 1, last - 1),
            (true, h) if h >= 1 => (self.network + 1, last),
            _ => (self.network, last),
        }
    }

    fn host_bits(&self) -> u32 {
        let bits = if self.v6 { 128u32 } else { 32 };
        bits - u32::from(self.prefix)
    }

    /// The range's last address (broadcast for IPv4).
    fn last(&self) -> u128 {
        let h = self.host_bits();
        self.network
            + if h >= 128 {
                u128::MAX
            } else {
                (1u128 << h) - 1
            }
    }

    /// True when `a` lies in the range.
    pub fn contains(&self, a: IpAddr) -> bool {
        let (v, v6) = to_num(a);
        v6 == self.v6 && v >= self.network && v <= self.last()
    }
}

/// Hands out VIPs from ranges in the order they are configured.
#[derive(Clone, Debug, Default)]
pub struct VipAllocator {
    ranges: Vec<Cidr>,
}

impl VipAllocator {
    /// An allocator over `ranges` (CIDR strings).
    ///
    /// # Errors
    /// [`RangeError`] for the first range that does not parse.
    pub fn new<S: AsRef<str>>(ranges: &[S]) -> Result<Self, RangeError> {
        Ok(VipAllocator {
            ranges: ranges
                .iter()
                .map(|r| r.as_ref().parse())
                .collect::<Result<_, _>>()?,
        })
    }

    /// The configured ranges.
    pub fn ranges(&self) -> &[Cidr] {
        &self.ranges
    }

    /// The lowest address of `family` in the configured ranges that is not in `used`.
    ///
    /// # Errors
    /// [`Error::FailedPrecondition`] when no range of that family is configured or every
    /// address is taken.
    pub fn allocate(&self, family: Family, used: &HashSet<IpAddr>) -> Result<IpAddr, Error> {
        let mut any = false;
        for r in self.ranges.iter().filter(|r| r.family() == family) {
            any = true;
            let (mut v, hi) = r.usable();
            // At most `used.len() + 1` steps: each step skips one used address.
            loop {
                let ip = to_ip(v, r.v6);
                if !used.contains(&ip) {
                    return Ok(ip);
                }
                if v >= hi {
                    break;
                }
                v += 1;
            }
        }
        let fam = match family {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        };
        if any {
            Err(Error::FailedPrecondition(format!(
                "vip: every {fam} VIP range is fully allocated; add a range to vip_ranges in the \
                 fiberlbd config or give an explicit vip"
            )))
        } else {
            Err(Error::FailedPrecondition(format!(
                "vip: no {fam} VIP range is configured; add one to vip_ranges in the fiberlbd \
                 config or give an explicit vip"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!(
            "192.0.2.0/24".parse::<Cidr>().unwrap().to_string(),
            "192.0.2.0/24"
        );
        assert!("192.0.2.1/24".parse::<Cidr>().is_err());
        assert!("192.0.2.0".parse::<Cidr>().is_err());
        assert!("192.0.2.0/33".parse::<Cidr>().is_err());
        assert!("2001:db8::/129".parse::<Cidr>().is_err());
        assert!("2001:db8::/0".parse::<Cidr>().is_err());
        assert!("::/0".parse::<Cidr>().is_ok());
    }

    #[test]
    fn lowest_free_first_then_reuse() {
        let a = VipAllocator::new(&["192.0.2.0/30", "198.51.100.8/31", "2001:db8::/126"]).unwrap();
        let mut used = HashSet::new();
        let mut got = vec![];
        for _ in 0..4 {
            let v = a.allocate(Family::V4, &used).unwrap();
            used.insert(v);
            got.push(v);
        }
        assert_eq!(
            got,
            vec![
                ip("192.0.2.1"),
                ip("192.0.2.2"),
                ip("198.51.100.8"),
                ip("198.51.100.9")
            ]
        );
        assert!(matches!(
            a.allocate(Family::V4, &used),
            Err(Error::FailedPrecondition(m)) if m.contains("fully allocated")
        ));
        used.remove(&ip("192.0.2.2"));
        assert_eq!(a.allocate(Family::V4, &used).unwrap(), ip("192.0.2.2"));
        assert_eq!(a.allocate(Family::V6, &used).unwrap(), ip("2001:db8::1"));
        let v4only = VipAllocator::new(&["10.0.0.0/24"]).unwrap();
        assert!(matches!(
            v4only.allocate(Family::V6, &used),
            Err(Error::FailedPrecondition(m)) if m.contains("no IPv6")
        ));
    }

    #[test]
    fn contains() {
        let c: Cidr = "10.0.0.0/24".parse().unwrap();
        assert!(c.contains(ip("10.0.0.7")));
        assert!(!c.contains(ip("10.0.1.7")));
        assert!(!c.contains(ip("::1")));
    }
}
