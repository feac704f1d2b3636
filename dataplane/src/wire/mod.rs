//! Zero-copy packet header views, in the style of smoltcp's `src/wire`.
//!
//! Every header has a view `XPacket<T: AsRef<[u8]>>` over a borrowed or owned buffer:
//! - `new_unchecked` wraps without looking (the caller vouches for the length);
//! - `new_checked` validates every length field once, after which no getter panics;
//! - getters need `AsRef<[u8]>`, setters `AsMut<[u8]>`; all accessors are `#[inline]`;
//! - `into_inner` gives the buffer back.
//!
//! Addresses come back as plain arrays (`[u8; 4]`, `[u8; 16]`, `[u8; 6]`) because the
//! per-packet path compares and hashes them as bytes; `Ipv4Addr::from` converts when needed.
//! `XRepr` structs are for building packets in tests and on the slow path only.
//!
//! [`build`] assembles whole frames (it allocates) for tests and the slow path.
//!
//! Who uses which: the per-packet path ([`crate::pipeline::parse`]) walks Ethernet, VLAN,
//! IPv4 and IPv6 with these views, then reads and rewrites the TCP/UDP/ICMP headers at the
//! offsets it found (ports, flags, checksums: `pipeline::rewrite` with [`checksum`]). The
//! [`tcp`], [`udp`], [`icmpv4`] and [`icmpv6`] views are not on that path: [`build`] emits its
//! frames through them (tests, benchmarks' packet generator, examples) and the fuzz targets
//! check the fast path's results with them (checksums, embedded headers) — an independent
//! implementation to compare against, which is why they stay.

/// Adds `into_payload` to a view over `&'a [u8]`: the payload with the buffer's lifetime
/// instead of the view's, so a parse chain can step from header to header without keeping
/// every view alive.
macro_rules! impl_into_payload {
    ($ty:ident, $p:ident => $bounds:expr) => {
        impl<'a> $ty<&'a [u8]> {
            /// Like `payload()`, but borrowing from the underlying buffer rather than the view.
            #[inline]
            pub fn into_payload(self) -> &'a [u8] {
                let $p = &self;
                let (start, end): (usize, usize) = $bounds;
                $crate::wire::clamp_range(self.buffer, start, end)
            }
        }
    };
}

pub mod arp;
pub mod build;
pub mod checksum;
pub mod ethernet;
pub mod gue;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;
pub mod vlan;

#[cfg(test)]
mod tests;

pub use arp::{ArpPacket, ArpRepr};
pub use checksum::PseudoHeader;
pub use ethernet::{EthernetFrame, EthernetRepr};
pub use gue::{GueHeader, GueRepr};
pub use icmpv4::{Icmpv4Packet, Icmpv4Repr};
pub use icmpv6::{Icmpv6Packet, Icmpv6Repr};
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{ExtWalk, FragmentHeader, FragmentInfo, Ipv6Packet, Ipv6Repr};
pub use tcp::{TcpPacket, TcpRepr};
pub use udp::{UdpPacket, UdpRepr};
pub use vlan::{VlanHeader, VlanRepr};

/// Why a buffer could not be read as a header. `Copy` and allocation-free so the per-packet
/// path can return it and count it without cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the header or than a length field says it is.
    #[error("packet truncated: the buffer is shorter than the header or its length fields say")]
    Truncated,
    /// A field holds a value the protocol forbids (bad version, length too small, bad checksum).
    #[error("malformed packet: a header field holds a value the protocol does not allow")]
    Malformed,
    /// Valid on the wire but not something fiberlb handles (e.g. non-Ethernet ARP).
    #[error("unsupported packet: valid, but a kind fiberlb does not handle")]
    Unsupported,
}

/// Result of parsing a header.
pub type Result<T> = core::result::Result<T, Error>;

/// IP protocol numbers (IPv4 `protocol`, IPv6 `next_header`) fiberlb cares about.
pub mod ip_protocol {
    /// IPv6 Hop-by-Hop options.
    pub const HOP_BY_HOP: u8 = 0;
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// IPv4 in IP (IPIP).
    pub const IPIP: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 encapsulation (IP6IP6 / 6in4).
    pub const IPV6: u8 = 41;
    /// IPv6 Routing header.
    pub const IPV6_ROUTING: u8 = 43;
    /// IPv6 Fragment header.
    pub const IPV6_FRAGMENT: u8 = 44;
    /// Encapsulating Security Payload.
    pub const ESP: u8 = 50;
    /// Authentication Header.
    pub const AH: u8 = 51;
    /// ICMP for IPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 No Next Header.
    pub const IPV6_NO_NEXT: u8 = 59;
    /// IPv6 Destination Options.
    pub const IPV6_DEST_OPTS: u8 = 60;
}

/// Source and destination port of a TCP or UDP header at the start of `l4` (both keep them in
/// the first 4 bytes), without validating the rest. For what a full view rejects: the first
/// fragment of a datagram (whose UDP length covers all fragments) and the cut-short original
/// header embedded in an ICMP error.
#[inline]
pub fn ports(l4: &[u8]) -> Option<(u16, u16)> {
    match l4 {
        [a, b, c, d, ..] => Some((u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d]))),
        _ => None,
    }
}

/// Big-endian u16 at `at`. Callers have checked the length (in `new_checked`).
#[inline]
pub(crate) fn read_u16(data: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([data[at], data[at + 1]])
}

#[inline]
pub(crate) fn write_u16(data: &mut [u8], at: usize, value: u16) {
    data[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

#[inline]
pub(crate) fn read_u32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

#[inline]
pub(crate) fn write_u32(data: &mut [u8], at: usize, value: u32) {
    data[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

#[inline]
pub(crate) fn read_array<const N: usize>(data: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&data[at..at + N]);
    out
}

/// `data[start..end]` with both ends clamped to the buffer, so a view whose header fields were
/// changed after `new_checked` still cannot panic when asked for its payload.
#[inline]
pub(crate) fn clamp_range(data: &[u8], start: usize, end: usize) -> &[u8] {
    let end = end.min(data.len());
    let start = start.min(end);
    &data[start..end]
}

#[inline]
pub(crate) fn clamp_range_mut(data: &mut [u8], start: usize, end: usize) -> &mut [u8] {
    let end = end.min(data.len());
    let start = start.min(end);
    &mut data[start..end]
}
