//! Second stage: rewrite or encapsulate a parsed frame in place.
//!
//! Every function here works on offsets found by [`super::parse`]. It does not re-validate
//! the headers, but every access is still bounds-checked, in the cheapest form: one length
//! check per header borrows it as a fixed-size array (`&mut [u8; 20]`), and constant indexes
//! into that array are checked at compile time. A range the parse stage proved present costs
//! one predictable branch; if it is absent anyway, the packet is dropped as
//! [`DropReason::Malformed`] instead of aborting the data plane. Checksums are updated
//! incrementally (RFC 1624) except for ICMP errors (rare, short) and IPv6 GUE (its UDP
//! checksum is mandatory and covers the payload, which was never summed before).

use super::parse::{chunk, chunk_mut, proto, Frag, Inner, Parsed};
use super::DropReason;
use crate::packet::PacketBuf;
use crate::wire::checksum;
use fiberlb_shared::model::{Encap, Mac};

const MALFORMED: DropReason = DropReason::Malformed;

/// Reads the big-endian `u16` at `off`.
#[inline(always)]
fn rd16(b: &[u8], off: usize) -> Result<u16, DropReason> {
    chunk(b, off)
        .copied()
        .map(u16::from_be_bytes)
        .ok_or(MALFORMED)
}

/// Writes `v` big-endian at `off`.
#[inline(always)]
fn wr16(b: &mut [u8], off: usize, v: u16) -> Result<(), DropReason> {
    *chunk_mut(b, off).ok_or(MALFORMED)? = v.to_be_bytes();
    Ok(())
}

/// Offset of the L4 checksum field, if the packet carries one in its L4 header.
#[inline]
fn l4_csum_at(p_proto: u8, l4: usize) -> Option<usize> {
    match p_proto {
        proto::TCP => Some(l4 + 16),
        proto::UDP => Some(l4 + 6),
        _ => None,
    }
}

/// Writes the Ethernet addresses.
#[inline]
pub fn set_macs(frame: &mut [u8], dst: &Mac, src: &Mac) -> Result<(), DropReason> {
    let (d, rest) = frame.split_first_chunk_mut::<6>().ok_or(MALFORMED)?;
    let s: &mut [u8; 6] = rest.first_chunk_mut().ok_or(MALFORMED)?;
    *d = *dst;
    *s = *src;
    Ok(())
}

/// `~m + m'` of RFC 1624 for an IPv4 TTL decrement (the word TTL|protocol m becomes
/// m - 0x100; m >= 0x200 as TTL > 1): 0xFEFF big-endian, here as read in the machine's order.
const TTL_DELTA: u16 = u16::from_ne_bytes(0xfeffu16.to_be_bytes());

/// Decrements the TTL / hop limit, as a router does.
#[inline]
pub fn dec_ttl(frame: &mut [u8], p: &Parsed) -> Result<(), DropReason> {
    dec_ttl_at(frame, p.l3, p.v6)
}

/// [`dec_ttl`] for the IP header at `l3` (IPv6 if `v6`).
#[inline]
pub fn dec_ttl_at(frame: &mut [u8], l3: usize, v6: bool) -> Result<(), DropReason> {
    if v6 {
        let ip: &mut [u8; 40] = chunk_mut(frame, l3).ok_or(MALFORMED)?;
        let hl = ip[7];
        if hl <= 1 {
            return Err(DropReason::TtlExceeded);
        }
        ip[7] = hl - 1;
    } else {
        let ip: &mut [u8; 20] = chunk_mut(frame, l3).ok_or(MALFORMED)?;
        let ttl = ip[8];
        if ttl <= 1 {
            return Err(DropReason::TtlExceeded);
        }
        ip[8] = ttl - 1;
        // RFC 1624 for the TTL word m (TTL, protocol) becoming m - 0x100: ~m + m' = 0xFEFF,
        // in the machine's byte order (see `nat_v4_dst_fused`).
        let hc = u16::from_ne_bytes([ip[10], ip[11]]);
        let c = !checksum::fold(u32::from(!hc) + u32::from(TTL_DELTA));
        ip[10..12].copy_from_slice(&c.to_ne_bytes());
    }
    Ok(())
}

/// Replaces an address (and optionally the port right after it in the L4 header) of a
/// TCP/UDP packet, fixing the IPv4 header checksum and the L4 checksum.
///
/// `dst` selects the destination fields (nat towards a backend) or the source fields (nat
/// replies back to the client).
#[inline]
pub fn nat(
    frame: &mut [u8],
    p: &Parsed,
    dst: bool,
    addr: &[u8; 16],
    port: u16,
) -> Result<(), DropReason> {
    let mut old = [0u8; 16];
    if p.v6 {
        let ip: &mut [u8; 40] = chunk_mut(frame, p.l3).ok_or(MALFORMED)?;
        let a = if dst { &mut ip[24..40] } else { &mut ip[8..24] };
        old.copy_from_slice(a);
        a.copy_from_slice(addr);
    } else {
        let ip: &mut [u8; 20] = chunk_mut(frame, p.l3).ok_or(MALFORMED)?;
        let a = if dst {
            &mut ip[16..20]
        } else {
            &mut ip[12..16]
        };
        old[..4].copy_from_slice(a);
        a.copy_from_slice(&addr[..4]);
        let c = checksum::update_bytes(u16::from_be_bytes([ip[10], ip[11]]), &old[..4], &addr[..4]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
    if p.frag == Frag::Later {
        // No L4 header here; the first fragment's L4 checksum covers the whole datagram and
        // is updated there.
        return Ok(());
    }
    let poff = if dst { p.l4 + 2 } else { p.l4 };
    let old_port = rd16(frame, poff)?;
    wr16(frame, poff, port)?;
    if let Some(coff) = l4_csum_at(p.proto, p.l4) {
        let c = rd16(frame, coff)?;
        if p.proto == proto::UDP && c == 0 && !p.v6 {
            return Ok(()); // IPv4 UDP without checksum stays without.
        }
        let (old, new) = if p.v6 {
            (&old[..], &addr[..])
        } else {
            (&old[..4], &addr[..4])
        };
        let c = checksum::update_bytes(c, old, new);
        let mut c = checksum::update_u16(c, old_port, port);
        if p.proto == proto::UDP && c == 0 {
            c = 0xffff;
        }
        wr16(frame, coff, c)?;
    }
    Ok(())
}

/// The hot nat case, fused: an IPv4 TCP/UDP packet (not a later fragment) whose TTL is
/// decremented and whose destination address and port become `addr`:`port`. One read and
/// one write of each checksum, no copies — this is the per-packet work of a nat listener.
/// Equivalent to [`dec_ttl`] followed by [`nat`] (tested against them).
///
/// The checksum arithmetic is done on words read in the machine's byte order, never swapped:
/// the one's complement sum is independent of byte order (RFC 1071 §2.B) — a byte swap of
/// a 16-bit word is a multiplication by 2^8 modulo 0xFFFF, and the sum is linear — so the
/// result is the same bytes, and 0 / 0xFFFF map to themselves, so the UDP zero rules hold.
#[inline(always)]
pub fn nat_v4_dst_fused(
    frame: &mut [u8],
    p: &Parsed,
    addr: [u8; 4],
    port: u16,
) -> Result<(), DropReason> {
    let ip: &mut [u8; 20] = chunk_mut(frame, p.l3).ok_or(MALFORMED)?;
    let ttl = ip[8];
    if ttl <= 1 {
        return Err(DropReason::TtlExceeded);
    }
    ip[8] = ttl - 1;
    let [o0, o1, o2, o3, ..] = ip[16..20] else {
        return Err(MALFORMED);
    };
    let old = u32::from_ne_bytes([o0, o1, o2, o3]);
    ip[16..20].copy_from_slice(&addr);
    // RFC 1624 (HC' = ~(~HC + ~m + m')) for both words of the address at once: a 32-bit
    // word counts as the sum of its halves, since 2^16 = 1 modulo 0xFFFF.
    let addr_delta = u64::from(!old) + u64::from(u32::from_ne_bytes(addr));
    let ttl_delta = u64::from(TTL_DELTA);
    let hc = u16::from_ne_bytes([ip[10], ip[11]]);
    let acc = u64::from(!hc) + ttl_delta + addr_delta;
    ip[10..12].copy_from_slice(&(!checksum::fold64(acc)).to_ne_bytes());
    match p.proto {
        proto::TCP => l4_dst_fused::<18>(frame, p.l4, addr_delta, port, false),
        _ => l4_dst_fused::<8>(frame, p.l4, addr_delta, port, true),
    }
}

/// The L4 part of [`nat_v4_dst_fused`]: the first `N` bytes of the L4 header (up to and
/// including the checksum, its last two bytes) at `l4`; the destination port becomes `port`
/// and the checksum takes `addr_delta` (the address change, as summed there) and the port's.
#[inline(always)]
fn l4_dst_fused<const N: usize>(
    frame: &mut [u8],
    l4: usize,
    addr_delta: u64,
    port: u16,
    udp: bool,
) -> Result<(), DropReason> {
    let h: &mut [u8; N] = chunk_mut(frame, l4).ok_or(MALFORMED)?;
    let (ports, rest) = h.split_first_chunk_mut::<4>().ok_or(MALFORMED)?;
    let csum: &mut [u8; 2] = rest.last_chunk_mut().ok_or(MALFORMED)?;
    let old_port = u16::from_ne_bytes([ports[2], ports[3]]);
    let new_port = port.to_be_bytes();
    ports[2..4].copy_from_slice(&new_port);
    let c = u16::from_ne_bytes(*csum);
    if udp && c == 0 {
        return Ok(()); // IPv4 UDP without checksum stays without.
    }
    let acc =
        u64::from(!c) + addr_delta + u64::from(!old_port) + u64::from(u16::from_ne_bytes(new_port));
    let mut c = !checksum::fold64(acc);
    if udp && c == 0 {
        c = 0xffff;
    }
    *csum = c.to_ne_bytes();
    Ok(())
}

/// Writes the Ethernet addresses of a frame going out: `dst`, and `src` or — when `None` —
/// the frame's own destination address (the port's MAC it arrived on).
#[inline(always)]
pub fn set_macs_reply_from(
    frame: &mut [u8],
    dst: &Mac,
    src: Option<&Mac>,
) -> Result<(), DropReason> {
    let (d, rest) = frame.split_first_chunk_mut::<6>().ok_or(MALFORMED)?;
    let s: &mut [u8; 6] = rest.first_chunk_mut().ok_or(MALFORMED)?;
    // The source first: without a configured one it is the old destination.
    *s = *src.unwrap_or(d);
    *d = *dst;
    Ok(())
}

/// Steers an ICMP error about a nat flow to the backend: the outer destination (the VIP)
/// and the quoted packet's source (VIP:port) become the backend's address and port, so the
/// backend's stack matches it to its own connection. Checksums of the quote are updated
/// incrementally; the ICMP checksum is recomputed (it covers the quote).
pub fn nat_icmp(
    frame: &mut [u8],
    p: &Parsed,
    inner: &Inner,
    addr: &[u8; 16],
    port: u16,
) -> Result<(), DropReason> {
    let outer = Parsed {
        frag: Frag::Later,
        ..*p
    };
    nat(frame, &outer, true, addr, port)?;
    // The quoted header: its source is the VIP.
    let mut old = [0u8; 16];
    if p.v6 {
        let a: &mut [u8; 16] = chunk_mut(frame, inner.l3 + 8).ok_or(MALFORMED)?;
        old = *a;
        *a = *addr;
    } else {
        let ip: &mut [u8; 20] = chunk_mut(frame, inner.l3).ok_or(MALFORMED)?;
        old[..4].copy_from_slice(&ip[12..16]);
        ip[12..16].copy_from_slice(&addr[..4]);
        let c = checksum::update_bytes(u16::from_be_bytes([ip[10], ip[11]]), &old[..4], &addr[..4]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let old_port = rd16(frame, inner.l4)?;
    wr16(frame, inner.l4, port)?;
    let end = p.l3 + p.ip_len;
    if let Some(coff) = l4_csum_at(inner.proto, inner.l4) {
        if coff + 2 <= end {
            let c = rd16(frame, coff)?;
            if !(inner.proto == proto::UDP && c == 0 && !p.v6) {
                let (old, new) = if p.v6 {
                    (&old[..], &addr[..])
                } else {
                    (&old[..4], &addr[..4])
                };
                let c = checksum::update_bytes(c, old, new);
                let c = checksum::update_u16(c, old_port, port);
                wr16(
                    frame,
                    coff,
                    if inner.proto == proto::UDP && c == 0 {
                        0xffff
                    } else {
                        c
                    },
                )?;
            }
        }
    }
    fill_icmp_checksum(frame, p)
}

/// Recomputes the ICMP / ICMPv6 checksum of a (short) ICMP error message.
fn fill_icmp_checksum(frame: &mut [u8], p: &Parsed) -> Result<(), DropReason> {
    let end = p.l3 + p.ip_len;
    wr16(frame, p.l4 + 2, 0)?;
    let body = checksum::ones_complement_sum(frame.get(p.l4..end).ok_or(MALFORMED)?);
    let sum = if p.v6 {
        let ip: &[u8; 40] = chunk(frame, p.l3).ok_or(MALFORMED)?;
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&ip[8..24]);
        dst.copy_from_slice(&ip[24..40]);
        let ph = checksum::pseudo_header_v6(&src, &dst, proto::ICMPV6, (end - p.l4) as u32);
        checksum::combine(&[ph, body])
    } else {
        body
    };
    wr16(frame, p.l4 + 2, !sum)
}

/// One's complement sum of an option-less IPv4 header, as five 32-bit words read in the
/// machine's byte order (no byte swaps; the sum is independent of byte order, RFC 1071 §2.B,
/// as in [`nat_v4_dst_fused`]): store it with `to_ne_bytes`. The bytes are those of
/// [`checksum::ones_complement_sum`]'s big-endian result (0 only for an all-zero header).
#[inline(always)]
fn ipv4_header_sum_ne(h: &[u8; 20]) -> u16 {
    let mut acc = 0u64;
    for w in h.chunks_exact(4) {
        if let [a, b, c, d] = *w {
            acc += u64::from(u32::from_ne_bytes([a, b, c, d]));
        }
    }
    checksum::fold64(acc)
}

/// Where to send an encapsulated packet.
#[derive(Clone, Copy, Debug)]
pub struct Outer<'a> {
    pub encap: Encap,
    /// Backend address (IPv4 in the first 4 bytes) and family.
    pub dst: &'a [u8; 16],
    pub dst_v6: bool,
    /// Outer source address of that family.
    pub src: &'a [u8; 16],
    pub gue_port: u16,
    /// Flow hash, for the GUE source port and the IPv6 flow label (ECMP/RSS entropy on the
    /// way to the backend).
    pub hash: u64,
    /// Largest outer IP packet allowed.
    pub mtu: u16,
}

/// Encapsulates the IP packet of a frame: IPIP / IP6IP6 (and the mixed 4in6 / 6in4) or GUE,
/// keeping the Ethernet header (and VLAN tags) in front. Trims Ethernet padding first.
/// The caller must write the Ethernet addresses afterwards (they are not carried over).
pub fn encapsulate(pkt: &mut PacketBuf<'_>, p: &Parsed, o: &Outer<'_>) -> Result<(), DropReason> {
    encapsulate_at(pkt, p.l3, p.ip_len, p.v6, o)
}

/// [`encapsulate`] for the IP packet at `l3` of `ip_len` bytes (IPv6 if `v6`), as parsed.
#[inline]
pub fn encapsulate_at(
    pkt: &mut PacketBuf<'_>,
    l3: usize,
    ip_len: usize,
    v6: bool,
    o: &Outer<'_>,
) -> Result<(), DropReason> {
    let inner_len = ip_len;
    let ip_hdr = if o.dst_v6 { 40 } else { 20 };
    let udp_hdr = if o.encap == Encap::Gue { 8 } else { 0 };
    let add = ip_hdr + udp_hdr;
    let outer_len = inner_len + add;
    if outer_len > usize::from(o.mtu) {
        return Err(DropReason::TooBigForTunnel);
    }
    // The L2 header ends with the ethertype: at least 14 bytes (parse found them).
    let et_at = l3.checked_sub(2).filter(|&e| e >= 12).ok_or(MALFORMED)?;
    pkt.set_len(l3 + inner_len).ok_or(MALFORMED)?;
    let (tos, df) = {
        // An IPv6 header is longer than 20 bytes too.
        let ip: &[u8; 20] = chunk(pkt.data(), l3).ok_or(MALFORMED)?;
        if v6 {
            (
                (((u16::from_be_bytes([ip[0], ip[1]]) >> 4) & 0xff) as u8),
                true,
            )
        } else {
            (ip[1], ip[6] & 0x40 != 0)
        }
    };
    let data = pkt.push_front(add).ok_or(DropReason::NoHeadroom)?;
    // Move the L2 header to the new front. The MAC addresses are rewritten by the caller and
    // the ethertype just below, so only VLAN tags (if any) have to be carried over; skipping
    // the general move saves a memmove call per packet. (`add` > 8 bytes of tags: the old
    // and the new place do not overlap.)
    if et_at > 12 {
        let (front, back) = data.split_at_mut_checked(add).ok_or(MALFORMED)?;
        let tags = back.get(12..et_at).ok_or(MALFORMED)?;
        front
            .get_mut(12..et_at)
            .ok_or(MALFORMED)?
            .copy_from_slice(tags);
    }
    let et: u16 = if o.dst_v6 { 0x86dd } else { 0x0800 };
    wr16(data, et_at, et)?;
    let inner_proto = if v6 { proto::IPV6 } else { proto::IPIP };
    let next = if udp_hdr != 0 {
        proto::UDP
    } else {
        inner_proto
    };
    if o.dst_v6 {
        let h: &mut [u8; 40] = chunk_mut(data, l3).ok_or(MALFORMED)?;
        let flow = (o.hash as u32) & 0x000f_ffff;
        let w0 = (6u32 << 28) | (u32::from(tos) << 20) | flow;
        h[0..4].copy_from_slice(&w0.to_be_bytes());
        h[4..6].copy_from_slice(&((outer_len - 40) as u16).to_be_bytes());
        h[6] = next;
        h[7] = 64;
        h[8..24].copy_from_slice(o.src);
        h[24..40].copy_from_slice(o.dst);
    } else {
        let h: &mut [u8; 20] = chunk_mut(data, l3).ok_or(MALFORMED)?;
        // Built and summed in registers (the constant words fold into the sum), then stored
        // once: no read-back of the frame for the checksum.
        let [len_hi, len_lo] = (outer_len as u16).to_be_bytes();
        let [s0, s1, s2, s3, ..] = *o.src;
        let [d0, d1, d2, d3, ..] = *o.dst;
        let df = if df { 0x40 } else { 0 };
        let mut hdr = [
            0x45, tos, len_hi, len_lo, 0, 0, df, 0, 64, next, 0, 0, s0, s1, s2, s3, d0, d1, d2, d3,
        ];
        let [c_hi, c_lo] = (!ipv4_header_sum_ne(&hdr)).to_ne_bytes();
        hdr[10] = c_hi;
        hdr[11] = c_lo;
        *h = hdr;
    }
    if udp_hdr != 0 {
        let u = l3 + ip_hdr;
        let ulen = (inner_len + 8) as u16;
        // Source port from the flow hash (never 0), like Katran's GUE: lets the backend's
        // NIC spread flows over its queues.
        let sport = 0x8000 | ((o.hash >> 16) as u16 & 0x7fff);
        let uh: &mut [u8; 8] = chunk_mut(data, u).ok_or(MALFORMED)?;
        uh[0..2].copy_from_slice(&sport.to_be_bytes());
        uh[2..4].copy_from_slice(&o.gue_port.to_be_bytes());
        uh[4..6].copy_from_slice(&ulen.to_be_bytes());
        uh[6..8].copy_from_slice(&[0, 0]);
        if o.dst_v6 {
            let ph = checksum::pseudo_header_v6(o.src, o.dst, proto::UDP, u32::from(ulen));
            let dgram = data
                .get(u..)
                .and_then(|d| d.get(..usize::from(ulen)))
                .ok_or(MALFORMED)?;
            let body = checksum::ones_complement_sum(dgram);
            let mut c = !checksum::combine(&[ph, body]);
            if c == 0 {
                c = 0xffff;
            }
            wr16(data, u + 6, c)?;
        }
    }
    Ok(())
}

#[cfg(test)]
// Tests may panic: the no-panic rule of the per-packet path (see `pipeline/mod.rs`) is for
// the code they test.
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable
)]
mod tests {
    use super::*;
    use crate::pipeline::parse::parse;
    use crate::wire::build::FrameBuilder;
    use proptest::prelude::*;

    /// Accepts what a rewrite of a cut frame may return: success (the cut spared the
    /// fields it writes) or Malformed — never a panic.
    fn ok_or_malformed(r: Result<(), DropReason>, what: &str, n: usize) {
        assert!(
            matches!(r, Ok(()) | Err(DropReason::Malformed)),
            "{what} at {n} bytes: {r:?}"
        );
    }

    /// Offsets found in a whole frame applied to every prefix of it (a check the parse
    /// stage forgot, a bug between the stages): every rewrite returns `Malformed` — these
    /// paths used to index past the end, which aborts the data plane. A cut inside the IP
    /// header always returns `Malformed`.
    #[test]
    fn rewrites_of_a_cut_frame_are_malformed_not_a_panic() {
        use crate::pipeline::parse::icmp_inner;
        use crate::wire::build::{icmpv4_frag_needed, icmpv6_packet_too_big};
        let (c4, v4) = ([192, 0, 2, 1], [10, 0, 0, 100]);
        let c6 = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).octets();
        let v6 = std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100).octets();
        let quote4 = FrameBuilder::tcp_v4(v4, c4, 80, 40000).build_ip();
        let quote6 = FrameBuilder::udp_v6(v6, c6, 53, 40000)
            .payload(&[1; 8])
            .build_ip();
        let frames = [
            FrameBuilder::tcp_v4(c4, v4, 40000, 80).vlan(7).build(),
            FrameBuilder::udp_v4(c4, v4, 40000, 53)
                .payload(&[1; 9])
                .build(),
            FrameBuilder::tcp_v6(c6, v6, 40000, 80).build(),
            FrameBuilder::udp_v6(c6, v6, 40000, 53)
                .vlan(9)
                .payload(&[1; 3])
                .build(),
            icmpv4_frag_needed([2; 6], [4; 6], [198, 51, 100, 1], v4, 1400, &quote4[..28]),
            icmpv6_packet_too_big([2; 6], [4; 6], c6, v6, 1280, &quote6),
        ];
        let new = [7u8; 16];
        for frame in &frames {
            let p = parse(frame).unwrap();
            let inner = icmp_inner(frame, &p);
            let ip_hdr = if p.v6 { 40 } else { 20 };
            for n in 0..frame.len() {
                let cut = || frame[..n].to_vec();
                let r = dec_ttl(&mut cut(), &p);
                if n < p.l3 + ip_hdr {
                    assert_eq!(r, Err(DropReason::Malformed), "dec_ttl at {n} bytes");
                }
                ok_or_malformed(r, "dec_ttl", n);
                ok_or_malformed(nat(&mut cut(), &p, true, &new, 1), "nat dst", n);
                ok_or_malformed(nat(&mut cut(), &p, false, &new, 1), "nat src", n);
                if !p.v6 {
                    let r = nat_v4_dst_fused(&mut cut(), &p, [7; 4], 1);
                    ok_or_malformed(r, "fused nat", n);
                }
                ok_or_malformed(set_macs(&mut cut(), &[1; 6], &[2; 6]), "set_macs", n);
                if let Some(inner) = &inner {
                    let r = nat_icmp(&mut cut(), &p, inner, &new, 1);
                    ok_or_malformed(r, "nat_icmp", n);
                }
                for (encap, dst_v6) in [(Encap::Ipip, false), (Encap::Gue, true)] {
                    let headroom = 64;
                    let mut buf = vec![0u8; headroom + n];
                    buf[headroom..].copy_from_slice(&frame[..n]);
                    let mut pkt = PacketBuf::new(&mut buf, headroom, n).unwrap();
                    let outer = Outer {
                        encap,
                        dst: &new,
                        dst_v6,
                        src: &new,
                        gue_port: 6080,
                        hash: 1,
                        mtu: 9000,
                    };
                    ok_or_malformed(encapsulate(&mut pkt, &p, &outer), "encapsulate", n);
                }
            }
            assert!(inner.is_some() || p.proto != proto::ICMP && p.proto != proto::ICMPV6);
        }
    }

    proptest! {
        /// The native-order IPv4 header sum stores the bytes of the general (big-endian) one.
        #[test]
        fn ipv4_header_sum_equals_general(h in any::<[u8; 20]>()) {
            prop_assert_eq!(
                ipv4_header_sum_ne(&h).to_ne_bytes(),
                checksum::ones_complement_sum(&h).to_be_bytes()
            );
        }

        /// dec_ttl's native-order checksum update is RFC 1624's big-endian one, for any
        /// header checksum (including 0x0000 and 0xFFFF) and TTL.
        #[test]
        fn dec_ttl_equals_rfc1624(csum: u16, ttl in 2u8..=255, proto: u8) {
            let mut frame = FrameBuilder::udp_v4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2).ttl(ttl).build();
            let p = parse(&frame).unwrap();
            frame[p.l3 + 9] = proto;
            frame[p.l3 + 10..p.l3 + 12].copy_from_slice(&csum.to_be_bytes());
            let old = u16::from_be_bytes([ttl, proto]);
            let want = checksum::update_u16(csum, old, old - 0x100);
            dec_ttl(&mut frame, &p).unwrap();
            prop_assert_eq!(frame[p.l3 + 8], ttl - 1);
            prop_assert_eq!(u16::from_be_bytes([frame[p.l3 + 10], frame[p.l3 + 11]]), want);
        }

        /// The fused nat path writes exactly what dec_ttl + nat write, for random packets,
        /// including the checksum corner cases the RFC 1624 equation exists for.
        #[test]
        fn fused_nat_equals_stepwise(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), new in any::<[u8; 4]>(),
            sp in any::<u16>(), dp in any::<u16>(), np in any::<u16>(), ttl in 2u8..=255,
            udp in any::<bool>(), nocsum in any::<bool>(), payload in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let b = if udp {
                let b = FrameBuilder::udp_v4(src, dst, sp, dp).payload(&payload).ttl(ttl);
                if nocsum { b.udp_no_checksum() } else { b }
            } else {
                FrameBuilder::tcp_v4(src, dst, sp, dp).payload(&payload).ttl(ttl)
            };
            let frame = b.build();
            let p = parse(&frame).unwrap();
            let mut a = frame.clone();
            nat_v4_dst_fused(&mut a, &p, new, np).unwrap();
            let mut s = frame.clone();
            dec_ttl(&mut s, &p).unwrap();
            let mut n16 = [0u8; 16];
            n16[..4].copy_from_slice(&new);
            nat(&mut s, &p, true, &n16, np).unwrap();
            prop_assert_eq!(a, s);
        }
    }
}
