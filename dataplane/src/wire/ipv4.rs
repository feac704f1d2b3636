//! IPv4 (RFC 791).

use super::checksum;
use super::{clamp_range, clamp_range_mut, read_array, read_u16, write_u16, Error, Result};

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;
/// Longest IPv4 header (IHL 15).
pub const MAX_HEADER_LEN: usize = 60;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet. The buffer may be longer than `total_len` (Ethernet padding);
/// [`Ipv4Packet::payload`] stops at `total_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer` after checking: at least 20 bytes, version 4, IHL >= 5, the header fits,
    /// `header_len <= total_len <= buffer length`. After this no getter panics.
    ///
    /// # Errors
    /// [`Error::Truncated`] when the buffer is shorter than the header or `total_len`;
    /// [`Error::Malformed`] for a wrong version, IHL < 5 or `total_len` < header length.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The checks of [`Ipv4Packet::new_checked`].
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::Malformed);
        }
        let hlen = self.header_len();
        if hlen < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if hlen > len {
            return Err(Error::Truncated);
        }
        let total = usize::from(self.total_len());
        if total < hlen {
            return Err(Error::Malformed);
        }
        if total > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Gives back the buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version field (4 after `new_checked`).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes, options included (IHL * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Differentiated services code point.
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// Explicit congestion notification bits.
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// Total length (header + payload) in bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT)
    }

    /// Don't Fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DF != 0
    }

    /// More Fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field times 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (read_u16(self.buffer.as_ref(), field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// Whether this is any fragment (MF set or non-zero offset). Only the first fragment
    /// (offset 0) carries the transport header.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Upper-layer protocol (see [`super::ip_protocol`]).
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 4] {
        read_array(self.buffer.as_ref(), field::SRC_ADDR.start)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 4] {
        read_array(self.buffer.as_ref(), field::DST_ADDR.start)
    }

    /// Options bytes (between byte 20 and `header_len`).
    #[inline]
    pub fn options(&self) -> &[u8] {
        clamp_range(self.buffer.as_ref(), HEADER_LEN, self.header_len())
    }

    /// The header bytes (`..header_len`).
    #[inline]
    pub fn header(&self) -> &[u8] {
        clamp_range(self.buffer.as_ref(), 0, self.header_len())
    }

    /// Payload: from `header_len` to `total_len` (padding beyond is excluded).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        clamp_range(
            self.buffer.as_ref(),
            self.header_len(),
            usize::from(self.total_len()),
        )
    }

    /// Whether the header checksum is right.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::ones_complement_sum(self.header()) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the version nibble.
    #[inline]
    pub fn set_version(&mut self, v: u8) {
        let d = self.buffer.as_mut();
        d[field::VER_IHL] = (d[field::VER_IHL] & 0x0f) | (v << 4);
    }

    /// Sets the header length in bytes (a multiple of 4, 20..=60).
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let d = self.buffer.as_mut();
        d[field::VER_IHL] = (d[field::VER_IHL] & 0xf0) | ((len / 4) as u8 & 0x0f);
    }

    /// Sets the DSCP (6 bits).
    #[inline]
    pub fn set_dscp(&mut self, dscp: u8) {
        let d = self.buffer.as_mut();
        d[field::DSCP_ECN] = (d[field::DSCP_ECN] & 0x03) | (dscp << 2);
    }

    /// Sets the ECN bits.
    #[inline]
    pub fn set_ecn(&mut self, ecn: u8) {
        let d = self.buffer.as_mut();
        d[field::DSCP_ECN] = (d[field::DSCP_ECN] & !0x03) | (ecn & 0x03);
    }

    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, ident: u16) {
        write_u16(self.buffer.as_mut(), field::IDENT, ident);
    }

    #[inline]
    fn set_flg_off(&mut self, mask: u16, value: u16) {
        let v = read_u16(self.buffer.as_ref(), field::FLG_OFF);
        write_u16(
            self.buffer.as_mut(),
            field::FLG_OFF,
            (v & !mask) | (value & mask),
        );
    }

    /// Sets the Don't Fragment flag.
    #[inline]
    pub fn set_dont_frag(&mut self, df: bool) {
        self.set_flg_off(FLAG_DF, if df { FLAG_DF } else { 0 });
    }

    /// Sets the More Fragments flag.
    #[inline]
    pub fn set_more_frags(&mut self, mf: bool) {
        self.set_flg_off(FLAG_MF, if mf { FLAG_MF } else { 0 });
    }

    /// Sets the fragment offset in bytes (must be a multiple of 8; lower bits are dropped).
    #[inline]
    pub fn set_frag_offset(&mut self, offset: u16) {
        self.set_flg_off(OFFSET_MASK, offset >> 3);
    }

    /// Sets the TTL.
    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets the protocol.
    #[inline]
    pub fn set_protocol(&mut self, p: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = p;
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, c);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a);
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a);
    }

    /// Computes and stores the header checksum over the whole header (options included).
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::finish(checksum::ones_complement_sum(self.header()));
        self.set_checksum(c);
    }

    /// Mutable options bytes.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        clamp_range_mut(self.buffer.as_mut(), HEADER_LEN, end)
    }

    /// Mutable payload (up to `total_len`).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), usize::from(self.total_len()));
        clamp_range_mut(self.buffer.as_mut(), start, end)
    }
}

/// An IPv4 header without options, for building packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
    /// Upper-layer protocol.
    pub protocol: u8,
    /// Payload length in bytes (total length minus the header).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// DSCP (6 bits).
    pub dscp: u8,
    /// ECN (2 bits).
    pub ecn: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment.
    pub dont_frag: bool,
}

impl Default for Ipv4Repr {
    fn default() -> Self {
        Ipv4Repr {
            src: [0; 4],
            dst: [0; 4],
            protocol: 0,
            payload_len: 0,
            ttl: 64,
            dscp: 0,
            ecn: 0,
            ident: 0,
            dont_frag: false,
        }
    }
}

impl Ipv4Repr {
    /// Reads a packet. Options are skipped (not kept); `payload_len` is `total_len -
    /// header_len`.
    ///
    /// # Errors
    /// Those of `check_len`; [`Error::Malformed`] for a bad checksum; [`Error::Unsupported`]
    /// for a fragment (this struct cannot describe one).
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Result<Self> {
        p.check_len()?;
        if !p.verify_checksum() {
            return Err(Error::Malformed);
        }
        if p.is_fragment() {
            return Err(Error::Unsupported);
        }
        Ok(Ipv4Repr {
            src: p.src_addr(),
            dst: p.dst_addr(),
            protocol: p.protocol(),
            payload_len: usize::from(p.total_len()) - p.header_len(),
            ttl: p.ttl(),
            dscp: p.dscp(),
            ecn: p.ecn(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
        })
    }

    /// Header length (20).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 20-byte header with its checksum. The buffer must hold at least
    /// [`HEADER_LEN`] bytes; the payload is not touched. `payload_len` is truncated to fit the
    /// 16-bit total length.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Ipv4Packet<T>) {
        p.set_version(4);
        p.set_header_len(HEADER_LEN);
        p.set_dscp(self.dscp);
        p.set_ecn(self.ecn);
        p.set_total_len((HEADER_LEN + self.payload_len) as u16);
        p.set_ident(self.ident);
        write_u16(
            p.buffer.as_mut(),
            field::FLG_OFF,
            if self.dont_frag { FLAG_DF } else { 0 },
        );
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src_addr(self.src);
        p.set_dst_addr(self.dst);
        p.fill_checksum();
    }
}

impl_into_payload!(Ipv4Packet, p => (p.header_len(), usize::from(p.total_len())));

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The classic example header (UDP, 192.168.0.1 -> 192.168.0.199, total length 115).
    const HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    fn packet() -> Vec<u8> {
        let mut v = HEADER.to_vec();
        v.extend((0..95).map(|i| i as u8));
        v
    }

    fn repr() -> Ipv4Repr {
        Ipv4Repr {
            src: [192, 168, 0, 1],
            dst: [192, 168, 0, 199],
            protocol: 17,
            payload_len: 95,
            ttl: 64,
            dscp: 0,
            ecn: 0,
            ident: 0,
            dont_frag: true,
        }
    }

    #[test]
    fn parse_golden() {
        let buf = packet();
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 115);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!((p.ttl(), p.protocol(), p.checksum()), (64, 17, 0xb861));
        assert_eq!(
            core::net::Ipv4Addr::from(p.src_addr()),
            core::net::Ipv4Addr::new(192, 168, 0, 1)
        );
        assert_eq!(p.dst_addr(), [192, 168, 0, 199]);
        assert!(p.verify_checksum());
        assert!(p.options().is_empty());
        assert_eq!(p.payload().len(), 95);
        assert_eq!(Ipv4Repr::parse(&p).unwrap(), repr());
    }

    #[test]
    fn emit_golden() {
        let mut buf = packet();
        buf[..20].fill(0xee);
        repr().emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, packet());
    }

    #[test]
    fn padding_is_allowed_and_excluded() {
        let mut buf = packet();
        buf.extend_from_slice(&[0; 6]);
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.payload().len(), 95);
    }

    #[test]
    fn check_errors() {
        let buf = packet();
        for n in 0..buf.len() {
            assert_eq!(
                Ipv4Packet::new_checked(&buf[..n]).unwrap_err(),
                Error::Truncated,
                "len {n}"
            );
        }
        let mut b = packet();
        b[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            Error::Malformed
        );
        let mut b = packet();
        b[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            Error::Malformed
        );
        let mut b = packet();
        b[0] = 0x4f; // 60-byte header, fits in the buffer, but total_len 115 is fine too
        assert!(Ipv4Packet::new_checked(&b[..]).is_ok());
        b[3] = 50; // total_len < header_len
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            Error::Malformed
        );
        let mut b = packet();
        b[10] ^= 1;
        assert_eq!(
            Ipv4Repr::parse(&Ipv4Packet::new_checked(&b[..]).unwrap()).unwrap_err(),
            Error::Malformed
        );
    }

    #[test]
    fn fragment_fields() {
        let mut buf = packet();
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        p.set_dont_frag(false);
        p.set_more_frags(true);
        p.set_frag_offset(1480);
        p.set_ident(0xbeef);
        p.fill_checksum();
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert!(p.more_frags() && !p.dont_frag() && p.is_fragment());
        assert_eq!((p.frag_offset(), p.ident()), (1480, 0xbeef));
        assert_eq!(&buf[6..8], &[0x20, 0xb9]); // MF | 185
        assert_eq!(Ipv4Repr::parse(&p).unwrap_err(), Error::Unsupported);
    }

    #[test]
    fn options_are_part_of_the_header() {
        // Header with a 4-byte option (NOP NOP NOP EOL), IHL 6.
        let mut buf = [0u8; 28];
        let r = Ipv4Repr {
            payload_len: 4,
            ..repr()
        };
        r.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        p.set_header_len(24);
        p.set_total_len(28);
        p.options_mut().copy_from_slice(&[1, 1, 1, 0]);
        p.payload_mut().copy_from_slice(b"abcd");
        p.fill_checksum();
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), b"abcd");
        assert!(p.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&p).unwrap().payload_len, 4);
    }

    proptest! {
        #[test]
        fn roundtrip(src: [u8; 4], dst: [u8; 4], protocol: u8, payload_len in 0usize..200, ttl: u8,
                     dscp in 0u8..64, ecn in 0u8..4, ident: u16, dont_frag: bool) {
            let r = Ipv4Repr { src, dst, protocol, payload_len, ttl, dscp, ecn, ident, dont_frag };
            let mut buf = vec![0u8; r.buffer_len() + payload_len];
            r.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
            let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum());
            prop_assert_eq!(Ipv4Repr::parse(&p).unwrap(), r);
        }

        /// NAT-style rewrites (address, TTL) updated incrementally give the full checksum.
        #[test]
        fn incremental_rewrite(src: [u8; 4], dst: [u8; 4], new_dst: [u8; 4], ttl in 1u8..=255, ident: u16) {
            let r = Ipv4Repr { src, dst, protocol: 6, payload_len: 0, ttl, ident, ..Default::default() };
            let mut buf = [0u8; 20];
            r.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
            let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
            let mut c = p.checksum();
            c = checksum::update_bytes(c, &p.dst_addr(), &new_dst);
            p.set_dst_addr(new_dst);
            let old_word = u16::from_be_bytes([p.ttl(), p.protocol()]);
            p.set_ttl(p.ttl() - 1);
            c = checksum::update_u16(c, old_word, u16::from_be_bytes([p.ttl(), p.protocol()]));
            p.set_checksum(c);
            let inc = p.checksum();
            p.fill_checksum();
            prop_assert_eq!(inc, p.checksum());
        }
    }
}
