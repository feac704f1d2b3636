//! IPv6 (RFC 8200): the fixed header, the Fragment header, and a bounded walk over extension
//! headers to the upper-layer protocol.

use super::ip_protocol;
use super::{
    clamp_range, clamp_range_mut, read_array, read_u16, read_u32, write_u16, write_u32, Error,
    Result,
};

mod field {
    use core::ops::Range;
    pub const VER_TC_FLOW: usize = 0;
    pub const LENGTH: usize = 4;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// Length of a Fragment header.
pub const FRAGMENT_HEADER_LEN: usize = 8;

/// Most extension headers [`walk_extension_headers`] will skip before giving up.
pub const MAX_EXT_HEADERS: usize = 8;

/// A view of an IPv6 packet. The buffer may be longer than `40 + payload_len`;
/// [`Ipv6Packet::payload`] stops at `payload_len`. Jumbograms (payload length 0 with a
/// Jumbo option) are not supported: their payload reads as empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps `buffer` without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps `buffer` after checking: 40-byte header present, version 6, `40 + payload_len`
    /// within the buffer.
    ///
    /// # Errors
    /// [`Error::Truncated`] for a short buffer, [`Error::Malformed`] for a wrong version.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The checks of [`Ipv6Packet::new_checked`].
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Error::Malformed);
        }
        if HEADER_LEN + usize::from(self.payload_len()) > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Gives back the buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version (6 after `new_checked`).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW] >> 4
    }

    /// Traffic class.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (read_u16(self.buffer.as_ref(), field::VER_TC_FLOW) >> 4) as u8
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::VER_TC_FLOW) & 0x000f_ffff
    }

    /// Payload length (everything after the fixed header, extension headers included).
    #[inline]
    pub fn payload_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Next header (first extension header or the upper-layer protocol).
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 16] {
        read_array(self.buffer.as_ref(), field::SRC_ADDR.start)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 16] {
        read_array(self.buffer.as_ref(), field::DST_ADDR.start)
    }

    /// Payload: the `payload_len` bytes after the fixed header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        clamp_range(
            self.buffer.as_ref(),
            HEADER_LEN,
            HEADER_LEN + usize::from(self.payload_len()),
        )
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets the version nibble.
    #[inline]
    pub fn set_version(&mut self, v: u8) {
        let d = self.buffer.as_mut();
        d[0] = (d[0] & 0x0f) | (v << 4);
    }

    /// Sets the traffic class.
    #[inline]
    pub fn set_traffic_class(&mut self, tc: u8) {
        let d = self.buffer.as_mut();
        let w = read_u16(d, 0);
        write_u16(d, 0, (w & 0xf00f) | (u16::from(tc) << 4));
    }

    /// Sets the flow label (low 20 bits).
    #[inline]
    pub fn set_flow_label(&mut self, fl: u32) {
        let d = self.buffer.as_mut();
        let w = read_u32(d, 0);
        write_u32(d, 0, (w & 0xfff0_0000) | (fl & 0x000f_ffff));
    }

    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the next header.
    #[inline]
    pub fn set_next_header(&mut self, nh: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = nh;
    }

    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, hl: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hl;
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, a: [u8; 16]) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a);
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, a: [u8; 16]) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a);
    }

    /// Mutable payload (up to `payload_len`).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        clamp_range_mut(self.buffer.as_mut(), HEADER_LEN, end)
    }
}

/// An IPv6 fixed header, for building packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Next header.
    pub next_header: u8,
    /// Payload length (extension headers included).
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Default for Ipv6Repr {
    fn default() -> Self {
        Ipv6Repr {
            src: [0; 16],
            dst: [0; 16],
            next_header: ip_protocol::IPV6_NO_NEXT,
            payload_len: 0,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        }
    }
}

impl Ipv6Repr {
    /// Reads the fixed header of a packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv6Packet<T>) -> Result<Self> {
        p.check_len()?;
        Ok(Ipv6Repr {
            src: p.src_addr(),
            dst: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: usize::from(p.payload_len()),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
        })
    }

    /// Header length (40).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 40-byte header (the buffer must hold it). `payload_len` is truncated to 16
    /// bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Ipv6Packet<T>) {
        write_u32(p.buffer.as_mut(), 0, 0x6000_0000);
        p.set_traffic_class(self.traffic_class);
        p.set_flow_label(self.flow_label);
        p.set_payload_len(self.payload_len as u16);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src_addr(self.src);
        p.set_dst_addr(self.dst);
    }
}

mod frag_field {
    pub const NXT_HDR: usize = 0;
    pub const RESERVED: usize = 1;
    pub const OFF_M: usize = 2;
    pub const IDENT: usize = 4;
}

/// A view of an IPv6 Fragment header (8 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FragmentHeader<T> {
    /// Wraps `buffer` without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        FragmentHeader { buffer }
    }

    /// Wraps `buffer`, [`Error::Truncated`] if shorter than 8 bytes.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < FRAGMENT_HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    /// Gives back the buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Next header after this one (of the fragmentable part).
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[frag_field::NXT_HDR]
    }

    /// Fragment offset in bytes.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        read_u16(self.buffer.as_ref(), frag_field::OFF_M) & 0xfff8
    }

    /// M flag: more fragments follow.
    #[inline]
    pub fn more_frags(&self) -> bool {
        read_u16(self.buffer.as_ref(), frag_field::OFF_M) & 1 != 0
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u32 {
        read_u32(self.buffer.as_ref(), frag_field::IDENT)
    }

    /// The fields as a [`FragmentInfo`].
    #[inline]
    pub fn info(&self) -> FragmentInfo {
        FragmentInfo {
            offset: self.frag_offset(),
            more: self.more_frags(),
            ident: self.ident(),
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> FragmentHeader<T> {
    /// Sets the next header (and zeroes the reserved byte).
    #[inline]
    pub fn set_next_header(&mut self, nh: u8) {
        let d = self.buffer.as_mut();
        d[frag_field::NXT_HDR] = nh;
        d[frag_field::RESERVED] = 0;
    }

    /// Sets the fragment offset in bytes (a multiple of 8) and the M flag.
    #[inline]
    pub fn set_frag_offset_and_more(&mut self, offset: u16, more: bool) {
        write_u16(
            self.buffer.as_mut(),
            frag_field::OFF_M,
            (offset & 0xfff8) | u16::from(more),
        );
    }

    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, ident: u32) {
        write_u32(self.buffer.as_mut(), frag_field::IDENT, ident);
    }
}

/// Fragment header fields found by [`walk_extension_headers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FragmentInfo {
    /// Offset of this fragment in bytes.
    pub offset: u16,
    /// More fragments follow.
    pub more: bool,
    /// Identification.
    pub ident: u32,
}

/// Where the extension header chain ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtWalk {
    /// Upper-layer protocol (or ESP, No Next Header, or an unknown header number).
    pub protocol: u8,
    /// Offset of that protocol's header within the IPv6 payload.
    pub offset: usize,
    /// The Fragment header's fields, if one was crossed.
    pub fragment: Option<FragmentInfo>,
}

/// Skips Hop-by-Hop (0, only first), Routing (43), Destination Options (60) and Fragment (44)
/// headers starting at `next_header` over `payload` (the IPv6 payload), and says where the
/// upper layer starts. At most [`MAX_EXT_HEADERS`] are skipped and every length is checked,
/// so crafted chains cost bounded time. For a non-first fragment the walk stops right after
/// the Fragment header: what follows is the middle of the upper-layer packet, and `protocol` is
/// the Fragment header's next header. ESP, No Next Header and unknown numbers end the walk.
/// On success `offset <= payload.len()`.
///
/// # Errors
/// [`Error::Truncated`] if a header runs past `payload`; [`Error::Malformed`] for a
/// Hop-by-Hop header that is not first or a second Fragment header; [`Error::Unsupported`]
/// for a chain longer than [`MAX_EXT_HEADERS`].
pub fn walk_extension_headers(next_header: u8, payload: &[u8]) -> Result<ExtWalk> {
    let mut protocol = next_header;
    let mut offset = 0usize;
    let mut fragment: Option<FragmentInfo> = None;
    for i in 0..=MAX_EXT_HEADERS {
        match protocol {
            ip_protocol::HOP_BY_HOP | ip_protocol::IPV6_ROUTING | ip_protocol::IPV6_DEST_OPTS => {
                if protocol == ip_protocol::HOP_BY_HOP && i != 0 {
                    return Err(Error::Malformed);
                }
                if i == MAX_EXT_HEADERS {
                    return Err(Error::Unsupported);
                }
                let hdr = payload.get(offset..offset + 2).ok_or(Error::Truncated)?;
                let len = (usize::from(hdr[1]) + 1) * 8;
                if offset + len > payload.len() {
                    return Err(Error::Truncated);
                }
                protocol = hdr[0];
                offset += len;
            }
            ip_protocol::IPV6_FRAGMENT => {
                if fragment.is_some() {
                    return Err(Error::Malformed);
                }
                if i == MAX_EXT_HEADERS {
                    return Err(Error::Unsupported);
                }
                let bytes = payload
                    .get(offset..offset + FRAGMENT_HEADER_LEN)
                    .ok_or(Error::Truncated)?;
                let fh = FragmentHeader::new_unchecked(bytes);
                let info = fh.info();
                protocol = fh.next_header();
                offset += FRAGMENT_HEADER_LEN;
                fragment = Some(info);
                if info.offset != 0 {
                    break;
                }
            }
            _ => break,
        }
    }
    Ok(ExtWalk {
        protocol,
        offset,
        fragment,
    })
}

impl_into_payload!(Ipv6Packet, p => (HEADER_LEN, HEADER_LEN + usize::from(p.payload_len())));

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // fe80::1 -> ff02::1, ICMPv6 echo request (8 bytes), hop limit 255, tc 0xb8, flow 0x12345.
    const PACKET: [u8; 48] = [
        0x6b, 0x81, 0x23, 0x45, 0x00, 0x08, 0x3a, 0xff, // ver/tc/flow, len 8, ICMPv6, 255
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // src
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // dst
        0x80, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x01, // payload
    ];

    fn repr() -> Ipv6Repr {
        Ipv6Repr {
            src: core::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1).octets(),
            dst: core::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets(),
            next_header: 58,
            payload_len: 8,
            hop_limit: 255,
            traffic_class: 0xb8,
            flow_label: 0x12345,
        }
    }

    #[test]
    fn parse_and_emit_golden() {
        let p = Ipv6Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.payload(), &PACKET[40..]);
        assert_eq!(Ipv6Repr::parse(&p).unwrap(), repr());
        let mut buf = PACKET;
        buf[..40].fill(0xaa);
        repr().emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, PACKET);
    }

    #[test]
    fn check_errors() {
        for n in 0..PACKET.len() {
            assert_eq!(
                Ipv6Packet::new_checked(&PACKET[..n]).unwrap_err(),
                Error::Truncated
            );
        }
        let mut b = PACKET;
        b[0] = 0x4b;
        assert_eq!(
            Ipv6Packet::new_checked(&b[..]).unwrap_err(),
            Error::Malformed
        );
        let mut padded = PACKET.to_vec();
        padded.extend_from_slice(&[0; 10]);
        assert_eq!(
            Ipv6Packet::new_checked(&padded[..])
                .unwrap()
                .payload()
                .len(),
            8
        );
    }

    fn opts(next: u8, len8: u8) -> Vec<u8> {
        let mut v = vec![0u8; (usize::from(len8) + 1) * 8];
        v[0] = next;
        v[1] = len8;
        v[2] = 1; // PadN
        v[3] = (v.len() - 4) as u8;
        v
    }

    fn frag(next: u8, offset: u16, more: bool, ident: u32) -> Vec<u8> {
        let mut v = vec![0u8; 8];
        let mut f = FragmentHeader::new_unchecked(&mut v[..]);
        f.set_next_header(next);
        f.set_frag_offset_and_more(offset, more);
        f.set_ident(ident);
        v
    }

    #[test]
    fn walk_chains() {
        // No extension headers.
        let w = walk_extension_headers(6, &[0; 20]).unwrap();
        assert_eq!(
            w,
            ExtWalk {
                protocol: 6,
                offset: 0,
                fragment: None
            }
        );

        // HbH -> Routing -> DstOpts -> TCP.
        let mut chain = opts(43, 0);
        chain.extend(opts(60, 1));
        chain.extend(opts(6, 0));
        let tcp_at = chain.len();
        chain.extend([0u8; 20]);
        let w = walk_extension_headers(0, &chain).unwrap();
        assert_eq!(
            w,
            ExtWalk {
                protocol: 6,
                offset: tcp_at,
                fragment: None
            }
        );

        // DstOpts -> first fragment -> UDP.
        let mut chain = opts(44, 0);
        chain.extend(frag(17, 0, true, 0xdeadbeef));
        chain.extend([0u8; 8]);
        let w = walk_extension_headers(60, &chain).unwrap();
        assert_eq!(w.protocol, 17);
        assert_eq!(w.offset, 16);
        assert_eq!(
            w.fragment,
            Some(FragmentInfo {
                offset: 0,
                more: true,
                ident: 0xdeadbeef
            })
        );

        // Non-first fragment: stop after the fragment header even if the next is an ext hdr.
        let mut chain = frag(60, 1448, false, 7);
        chain.extend(opts(6, 0));
        let w = walk_extension_headers(44, &chain).unwrap();
        assert_eq!(
            w,
            ExtWalk {
                protocol: 60,
                offset: 8,
                fragment: Some(FragmentInfo {
                    offset: 1448,
                    more: false,
                    ident: 7
                })
            }
        );

        // ESP, No Next Header and unknown numbers end the walk.
        for p in [50u8, 59, 51, 200] {
            let mut chain = opts(p, 0);
            chain.extend([0u8; 4]);
            assert_eq!(
                walk_extension_headers(60, &chain).unwrap(),
                ExtWalk {
                    protocol: p,
                    offset: 8,
                    fragment: None
                }
            );
        }
    }

    #[test]
    fn walk_malformed() {
        // Length byte says 16 bytes, only 8 present.
        let mut chain = opts(6, 0);
        chain[1] = 1;
        assert_eq!(
            walk_extension_headers(60, &chain).unwrap_err(),
            Error::Truncated
        );
        // Header cut after one byte; fragment header cut short; empty payload.
        assert_eq!(
            walk_extension_headers(43, &[6]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            walk_extension_headers(44, &frag(6, 0, true, 1)[..7]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            walk_extension_headers(0, &[]).unwrap_err(),
            Error::Truncated
        );
        // Length 255 -> 2048 bytes claimed.
        let mut chain = opts(6, 0);
        chain[1] = 255;
        assert_eq!(
            walk_extension_headers(0, &chain).unwrap_err(),
            Error::Truncated
        );
        // Hop-by-Hop not first.
        let mut chain = opts(0, 0);
        chain.extend(opts(6, 0));
        assert_eq!(
            walk_extension_headers(60, &chain).unwrap_err(),
            Error::Malformed
        );
        // Two fragment headers.
        let mut chain = frag(44, 0, true, 1);
        chain.extend(frag(6, 0, true, 1));
        assert_eq!(
            walk_extension_headers(44, &chain).unwrap_err(),
            Error::Malformed
        );
        // A chain of 8 DstOpts is fine, 9 is not.
        let mut chain = Vec::new();
        for _ in 0..7 {
            chain.extend(opts(60, 0));
        }
        chain.extend(opts(6, 0));
        assert_eq!(walk_extension_headers(60, &chain).unwrap().offset, 64);
        let mut chain = Vec::new();
        for _ in 0..8 {
            chain.extend(opts(60, 0));
        }
        chain.extend(opts(6, 0));
        assert_eq!(
            walk_extension_headers(60, &chain).unwrap_err(),
            Error::Unsupported
        );
        // A self-referencing loop of Routing headers is cut off by the bound.
        let mut chain = Vec::new();
        for _ in 0..20 {
            chain.extend(opts(43, 0));
        }
        assert_eq!(
            walk_extension_headers(43, &chain).unwrap_err(),
            Error::Unsupported
        );
    }

    proptest! {
        #[test]
        fn roundtrip(src: [u8; 16], dst: [u8; 16], nh: u8, payload_len in 0usize..100, hop_limit: u8, tc: u8, fl in 0u32..(1 << 20)) {
            let r = Ipv6Repr { src, dst, next_header: nh, payload_len, hop_limit, traffic_class: tc, flow_label: fl };
            let mut buf = vec![0u8; 40 + payload_len];
            r.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Ipv6Repr::parse(&Ipv6Packet::new_checked(&buf[..]).unwrap()).unwrap(), r);
        }

        #[test]
        fn walk_never_panics_and_stays_in_bounds(nh: u8, data in proptest::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(w) = walk_extension_headers(nh, &data) {
                prop_assert!(w.offset <= data.len());
            }
        }
    }
}
