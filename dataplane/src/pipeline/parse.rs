//! First stage of the pipeline: find the headers of a frame, read-only.
//!
//! Produces a small [`Parsed`] record with offsets and the 5-tuple, so the second stage
//! (lookup and rewrite) does not parse again. Validation is done once here, through the
//! checked constructors of [`crate::wire`]; later stages rely on the offsets it found.

use crate::pipeline::DropReason;
use crate::wire;
use crate::wire::ethernet::{ethertype, EthernetFrame};
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv6::{self, Ipv6Packet};

/// IP protocol numbers the pipeline cares about.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const IPIP: u8 = 4;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const IPV6: u8 = 41;
    pub const ICMPV6: u8 = 58;
}

/// Fragment position of a packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Frag {
    /// Not a fragment.
    #[default]
    No,
    /// First fragment: carries the L4 header.
    First,
    /// A later fragment: no L4 header, no ports.
    Later,
}

/// What the parse stage found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Offset of the IP header in the frame.
    pub l3: usize,
    pub v6: bool,
    /// Length of the IP packet (header + payload) as its header says.
    pub ip_len: usize,
    /// Offset of the L4 header in the frame (after IPv6 extension headers).
    pub l4: usize,
    pub proto: u8,
    /// Source and destination addresses, IPv4 in the first 4 bytes.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub frag: Frag,
    pub tcp_flags: u8,
}

/// TCP flag bits.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// The `N` bytes of `b` at `off`, as an array: one length check, after which constant
/// indexes into the result are checked at compile time.
#[inline(always)]
pub(crate) fn chunk<const N: usize>(b: &[u8], off: usize) -> Option<&[u8; N]> {
    b.get(off..)?.first_chunk()
}

/// [`chunk`], writable.
#[inline(always)]
pub(crate) fn chunk_mut<const N: usize>(b: &mut [u8], off: usize) -> Option<&mut [u8; N]> {
    b.get_mut(off..)?.first_chunk_mut()
}

#[inline]
pub(crate) fn be16(b: &[u8], off: usize) -> Option<u16> {
    chunk(b, off).copied().map(u16::from_be_bytes)
}

/// Finds the L3 offset and ethertype after up to two VLAN tags (802.1Q, 802.1ad).
#[inline]
pub fn l2(frame: &[u8]) -> Result<(usize, u16), DropReason> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::Malformed)?;
    let mut et = eth.ethertype();
    let mut off = 14;
    for _ in 0..2 {
        if et != ethertype::VLAN && et != ethertype::QINQ {
            break;
        }
        et = be16(frame, off + 2).ok_or(DropReason::Malformed)?;
        off += 4;
    }
    Ok((off, et))
}

/// Parses a frame up to the L4 ports.
#[inline]
pub fn parse(frame: &[u8]) -> Result<Parsed, DropReason> {
    match parse_v4_fast(frame) {
        Some(p) => Ok(p),
        None => parse_full(frame),
    }
}

/// The common frame — Ethernet without VLAN tag, IPv4 without options and not a fragment,
/// TCP or UDP whose header lies inside the packet, at least 54 bytes — read with one length
/// check and a handful of compares. `None` for every other frame, which [`parse_full`] then
/// parses (and refuses, if it must). For a frame it accepts it returns exactly what
/// [`parse_full`] returns (a property test holds them equal).
#[inline(always)]
pub fn parse_v4_fast(frame: &[u8]) -> Option<Parsed> {
    parse_v4_fast_words(frame).map(|(p, _)| p)
}

/// [`parse_v4_fast`], and the flow key's two hash words read straight from the frame (see
/// [`fiberlb_shared::flow_hash::FlowHasher::hash_v4_words`]): bytes 26-33 (source and
/// destination address) and bytes 31-38 with the protocol as the top byte (the last three
/// bytes of the destination, the ports, then the protocol instead of byte 38).
#[inline(always)]
pub fn parse_v4_fast_words(frame: &[u8]) -> Option<(Parsed, (u64, u64))> {
    // Ethernet (14), IPv4 (20), and the 20 bytes of a TCP header (UDP's 8 and then some).
    let h: &[u8; 54] = frame.first_chunk()?;
    // IPv4 ethertype and version 4 / IHL 5 in one compare; then the fragment field without
    // the DF (and reserved) bit: no offset, no MF.
    if u32::from_be_bytes([h[12], h[13], h[14], 0]) != 0x0800_4500
        || u16::from_be_bytes([h[20], h[21]]) & 0x3fff != 0
    {
        return None;
    }
    let ip_len = usize::from(u16::from_be_bytes([h[16], h[17]]));
    // total_len must cover the header and lie inside the frame: l4_len = ip_len - 20 >= 0.
    let l4_len = ip_len.checked_sub(20)?;
    if ip_len > frame.len() - 14 {
        return None;
    }
    let proto = h[23];
    let tcp_flags = match proto {
        proto::TCP => {
            let doff = usize::from(h[46] >> 4) * 4;
            if l4_len < 20 || doff < 20 || doff > l4_len {
                return None;
            }
            h[47]
        }
        proto::UDP => {
            let ulen = usize::from(u16::from_be_bytes([h[38], h[39]]));
            if ulen < 8 || ulen > l4_len {
                return None;
            }
            0
        }
        _ => return None,
    };
    v4_fast_record(h, ip_len, proto, tcp_flags)
}

/// The record and hash words of a frame [`parse_v4_fast_words`] accepts, once its checks
/// passed: the fields it reads from the 54 bytes.
#[inline(always)]
fn v4_fast_record(
    h: &[u8; 54],
    ip_len: usize,
    proto: u8,
    tcp_flags: u8,
) -> Option<(Parsed, (u64, u64))> {
    // Addresses and ports from two 8-byte words (bytes 26-33: the addresses; 30-37: the
    // destination and the ports), which are also the flow key's hash words. (`chunk` of the
    // 54-byte array: the checks are constant and fold away, so `None` never comes; whole-word
    // loads, where an array of 8 indexed bytes is assembled byte by byte.)
    let lo = u64::from_le_bytes(*chunk::<8>(h, 26)?);
    let w30 = u64::from_le_bytes(*chunk::<8>(h, 30)?);
    let hi = w30 >> 8 | u64::from(proto) << 56;
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src[..4].copy_from_slice(&(lo as u32).to_le_bytes());
    dst[..4].copy_from_slice(&((lo >> 32) as u32).to_le_bytes());
    let p = Parsed {
        l3: 14,
        v6: false,
        ip_len,
        l4: 34,
        proto,
        src,
        dst,
        sport: ((w30 >> 32) as u16).swap_bytes(),
        dport: ((w30 >> 48) as u16).swap_bytes(),
        frag: Frag::No,
        tcp_flags,
    };
    Some((p, (lo, hi)))
}

/// The record [`parse_v4_fast`] gave for this frame, read again without its checks: for
/// the burst's second pass, which then needs no copy of the record from the first — only
/// the fields it uses are loaded, and the constant ones (offsets 14 and 34, IPv4, not a
/// fragment, TCP or UDP) let the compiler drop every branch about other frames. Only for a
/// frame `parse_v4_fast` accepted (unchanged since): for any other it returns a record of
/// the same bytes that was never validated (`None` only below 54 bytes). A property test
/// holds it equal to `parse_v4_fast` on every frame that accepts.
#[inline(always)]
pub fn v4_fast_trusted(frame: &[u8]) -> Option<Parsed> {
    let h: &[u8; 54] = frame.first_chunk()?;
    // TCP or UDP (the fast parse accepts no other), said so the compiler knows it.
    let (proto, tcp_flags) = if h[23] == proto::TCP {
        (proto::TCP, h[47])
    } else {
        (proto::UDP, 0)
    };
    let ip_len = usize::from(u16::from_be_bytes([h[16], h[17]]));
    v4_fast_record(h, ip_len, proto, tcp_flags).map(|(p, _)| p)
}

/// [`parse`] for every frame: VLAN tags, IPv4 options and fragments, IPv6 and its extension
/// headers, other protocols, and every way a frame can be malformed.
#[inline]
pub fn parse_full(frame: &[u8]) -> Result<Parsed, DropReason> {
    let (l3, et) = l2(frame)?;
    let rest = frame.get(l3..).ok_or(DropReason::Malformed)?;
    let mut p = Parsed {
        l3,
        ..Parsed::default()
    };
    match et {
        ethertype::IPV4 => {
            let ip = Ipv4Packet::new_checked(rest).map_err(|_| DropReason::Malformed)?;
            p.ip_len = usize::from(ip.total_len());
            p.l4 = l3 + ip.header_len();
            p.proto = ip.protocol();
            p.src[..4].copy_from_slice(&ip.src_addr());
            p.dst[..4].copy_from_slice(&ip.dst_addr());
            if ip.frag_offset() != 0 {
                p.frag = Frag::Later;
            } else if ip.more_frags() {
                p.frag = Frag::First;
            }
        }
        ethertype::IPV6 => {
            let ip = Ipv6Packet::new_checked(rest).map_err(|_| DropReason::Malformed)?;
            p.v6 = true;
            p.ip_len = 40 + usize::from(ip.payload_len());
            p.src = ip.src_addr();
            p.dst = ip.dst_addr();
            let walk = ipv6::walk_extension_headers(ip.next_header(), ip.payload()).map_err(
                |e| match e {
                    // A chain longer than the walk's bound: valid IPv6, not ours to walk.
                    wire::Error::Unsupported => DropReason::UnsupportedExtension,
                    wire::Error::Truncated | wire::Error::Malformed => DropReason::Malformed,
                },
            )?;
            p.proto = walk.protocol;
            p.l4 = l3 + 40 + walk.offset;
            if let Some(f) = walk.fragment {
                p.frag = if f.offset != 0 {
                    Frag::Later
                } else if f.more {
                    Frag::First
                } else {
                    Frag::No
                };
            }
        }
        _ => return Err(DropReason::NotIp),
    }
    if p.frag == Frag::Later {
        return Ok(p);
    }
    let end = p.l3 + p.ip_len;
    let l4 = frame.get(p.l4..end).ok_or(DropReason::Malformed)?;
    match p.proto {
        proto::TCP => {
            let t: &[u8; 20] = l4.first_chunk().ok_or(DropReason::Malformed)?;
            let doff = usize::from(t[12] >> 4) * 4;
            if doff < 20 || (p.frag == Frag::No && doff > l4.len()) {
                return Err(DropReason::Malformed);
            }
            p.sport = u16::from_be_bytes([t[0], t[1]]);
            p.dport = u16::from_be_bytes([t[2], t[3]]);
            p.tcp_flags = t[13];
        }
        proto::UDP => {
            let u: &[u8; 8] = l4.first_chunk().ok_or(DropReason::Malformed)?;
            let ulen = usize::from(u16::from_be_bytes([u[4], u[5]]));
            if ulen < 8 || (p.frag == Frag::No && ulen > l4.len()) {
                return Err(DropReason::Malformed);
            }
            p.sport = u16::from_be_bytes([u[0], u[1]]);
            p.dport = u16::from_be_bytes([u[2], u[3]]);
        }
        proto::ICMP | proto::ICMPV6 if l4.len() < 8 => return Err(DropReason::Malformed),
        _ => {}
    }
    Ok(p)
}

/// An IP packet embedded in an ICMP error: the part of the original datagram the router
/// quoted back.
#[derive(Clone, Copy, Debug, Default)]
pub struct Inner {
    /// Offset of the inner IP header in the frame.
    pub l3: usize,
    /// Offset of the inner L4 header in the frame.
    pub l4: usize,
    pub proto: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
}

/// ICMP types that report a path MTU problem.
const ICMP4_DEST_UNREACH: u8 = 3;
const ICMP4_FRAG_NEEDED: u8 = 4;
const ICMP6_PACKET_TOO_BIG: u8 = 2;

/// Parses the packet quoted by an ICMP "fragmentation needed" (v4) or "packet too big" (v6)
/// message. Returns `None` for any other ICMP message or a quote too short to name a flow.
pub fn icmp_inner(frame: &[u8], p: &Parsed) -> Option<Inner> {
    let icmp = frame.get(p.l4..p.l3 + p.ip_len)?;
    let (ty, code) = (*icmp.first()?, *icmp.get(1)?);
    let quoted_at = p.l4 + 8;
    let quoted = icmp.get(8..)?;
    let mut inner = Inner {
        l3: quoted_at,
        ..Inner::default()
    };
    if !p.v6 {
        if ty != ICMP4_DEST_UNREACH || code != ICMP4_FRAG_NEEDED || p.frag != Frag::No {
            return None;
        }
        // The quote is a truncated datagram: read the header fields directly, since its
        // total length field describes the original, not the quote.
        let h: &[u8; 20] = quoted.first_chunk()?;
        let vihl = h[0];
        let hl = usize::from(vihl & 0x0f) * 4;
        if vihl >> 4 != 4 || hl < 20 || quoted.len() < hl + 4 {
            return None;
        }
        inner.proto = h[9];
        inner.src[..4].copy_from_slice(&h[12..16]);
        inner.dst[..4].copy_from_slice(&h[16..20]);
        inner.l4 = quoted_at + hl;
    } else {
        if ty != ICMP6_PACKET_TOO_BIG || p.frag != Frag::No {
            return None;
        }
        let (h, rest) = quoted.split_first_chunk::<40>()?;
        if rest.len() < 4 || h[0] >> 4 != 6 {
            return None;
        }
        inner.src.copy_from_slice(&h[8..24]);
        inner.dst.copy_from_slice(&h[24..40]);
        let walk = ipv6::walk_extension_headers(h[6], rest).ok()?;
        if walk.fragment.is_some_and(|f| f.offset != 0) {
            return None;
        }
        inner.proto = walk.protocol;
        inner.l4 = quoted_at + 40 + walk.offset;
    }
    if inner.proto != proto::TCP && inner.proto != proto::UDP {
        return None;
    }
    let ports: &[u8; 4] = chunk(frame, inner.l4)?;
    inner.sport = u16::from_be_bytes([ports[0], ports[1]]);
    inner.dport = u16::from_be_bytes([ports[2], ports[3]]);
    // The quote must lie inside the outer packet.
    (inner.l4 + 4 <= p.l3 + p.ip_len).then_some(inner)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::wire::build::{FrameBuilder, Ipv6Ext};
    use proptest::prelude::*;

    /// Frames near the fast path's edges: TCP/UDP over IPv4, cut, padded and with header
    /// bytes overwritten.
    fn frame_strategy() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<bool>(),
            any::<[u8; 4]>(),
            any::<u16>(),
            0usize..40,
            proptest::collection::vec((0usize..60, any::<u8>()), 0..4),
            0usize..80,
            0usize..24,
        )
            .prop_map(|(udp, a, port, payload, pokes, cut, pad)| {
                let b = if udp {
                    FrameBuilder::udp_v4(a, [10, 0, 0, 1], port, 80)
                } else {
                    FrameBuilder::tcp_v4(a, [10, 0, 0, 1], port, 80)
                };
                let mut f = b.payload(&vec![7; payload]).build();
                f.extend(std::iter::repeat_n(0, pad));
                for (at, v) in pokes {
                    if let Some(x) = f.get_mut(at) {
                        *x = v;
                    }
                }
                f.truncate(f.len().saturating_sub(cut % 8 * (cut / 8 % 2)));
                f
            })
    }

    proptest! {
        /// Whatever the fast path accepts, the full parse parses to the same record.
        #[test]
        fn fast_path_equals_full_parse(f in frame_strategy()) {
            if let Some(fast) = parse_v4_fast(&f) {
                prop_assert_eq!(Ok(fast), parse_full(&f));
                // The second pass's unchecked reading gives the same record.
                prop_assert_eq!(v4_fast_trusted(&f), Some(fast));
            }
            prop_assert_eq!(parse(&f), parse_full(&f));
        }

        /// The hash words the fast path reads from the frame hash like the parsed 5-tuple.
        #[test]
        fn fast_path_hash_words_hash_the_5_tuple(f in frame_strategy(), seed: u64) {
            if let Some((p, (lo, hi))) = parse_v4_fast_words(&f) {
                let h = fiberlb_shared::flow_hash::FlowHasher::new(seed);
                let [s0, s1, s2, s3, ..] = p.src;
                let [d0, d1, d2, d3, ..] = p.dst;
                prop_assert_eq!(
                    h.hash_v4_words(lo, hi),
                    h.hash_v4([s0, s1, s2, s3], [d0, d1, d2, d3], p.sport, p.dport, p.proto)
                );
            }
        }
    }

    #[test]
    fn fast_path_takes_the_common_frames() {
        let udp = FrameBuilder::udp_v4([192, 0, 2, 1], [10, 0, 0, 1], 4000, 53)
            .payload(&[1; 18])
            .build();
        let tcp = FrameBuilder::tcp_v4([192, 0, 2, 1], [10, 0, 0, 1], 4000, 80).build();
        for f in [&udp, &tcp] {
            assert_eq!(parse_v4_fast(f), Some(parse_full(f).unwrap()));
        }
        let vlan = FrameBuilder::tcp_v4([192, 0, 2, 1], [10, 0, 0, 1], 4000, 80)
            .vlan(7)
            .build();
        assert_eq!(parse_v4_fast(&vlan), None);
        assert!(parse(&vlan).is_ok());
    }

    #[test]
    fn a_too_long_extension_chain_is_unsupported_not_malformed() {
        let frame = |headers: usize| {
            let mut b = FrameBuilder::tcp_v6([0xfd; 16], [0xfe; 16], 1000, 80);
            for _ in 0..headers {
                b = b.ext(Ipv6Ext::DestOptions(vec![]));
            }
            b.build()
        };
        let ok = parse(&frame(ipv6::MAX_EXT_HEADERS)).expect("the longest walked chain");
        assert_eq!(ok.proto, crate::wire::ip_protocol::TCP);
        assert_eq!(
            parse(&frame(ipv6::MAX_EXT_HEADERS + 1)).err(),
            Some(DropReason::UnsupportedExtension)
        );
        // A truncated chain is still malformed.
        let mut cut = frame(2);
        cut.truncate(14 + 40 + 4);
        assert_eq!(parse(&cut).err(), Some(DropReason::Malformed));
    }
}
