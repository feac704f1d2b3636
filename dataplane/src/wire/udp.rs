//! UDP headers (RFC 768). See [`super::checksum`] for the zero-checksum rules.

use super::checksum::{self, PseudoHeader};
use super::ip_protocol;
use super::{clamp_range, clamp_range_mut, read_u16, write_u16, Error, Result};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram. The buffer may be longer than the length field says;
/// [`UdpPacket::payload`] stops at `len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps `buffer` without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps `buffer` after checking: 8-byte header present, length field >= 8 and within
    /// the buffer.
    ///
    /// # Errors
    /// [`Error::Truncated`] for a short buffer, [`Error::Malformed`] for a length field < 8.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The checks of [`UdpPacket::new_checked`].
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let field_len = usize::from(self.len());
        if field_len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if field_len > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Gives back the buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Length field (header + payload).
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Checksum field (0 = none, IPv4 only).
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Payload, bounded by the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        clamp_range(self.buffer.as_ref(), HEADER_LEN, usize::from(self.len()))
    }

    /// The datagram as covered by the checksum: `..len`.
    #[inline]
    fn datagram(&self) -> &[u8] {
        clamp_range(self.buffer.as_ref(), 0, usize::from(self.len()))
    }

    /// Whether the checksum is right; a zero checksum ("none") counts as right.
    /// Reads the whole datagram: slow path and tests only.
    #[inline]
    pub fn verify_checksum(&self, pseudo: &PseudoHeader) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let d = self.datagram();
        let ph = pseudo.sum(ip_protocol::UDP, d.len() as u32);
        checksum::combine(&[ph, checksum::ones_complement_sum(d)]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    /// Sets the length field.
    #[inline]
    pub fn set_len(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, v);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Mutable payload (bounded by the length field).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        clamp_range_mut(self.buffer.as_mut(), HEADER_LEN, end)
    }

    /// Computes and stores the checksum over `pseudo` and `..len` (slow path); a computed
    /// zero is stored as `0xFFFF`.
    #[inline]
    pub fn fill_checksum(&mut self, pseudo: &PseudoHeader) {
        self.set_checksum(0);
        let d = self.datagram();
        let ph = pseudo.sum(ip_protocol::UDP, d.len() as u32);
        let c = checksum::udp_finish(checksum::combine(&[ph, checksum::ones_complement_sum(d)]));
        self.set_checksum(c);
    }
}

/// A UDP header, for building datagrams. The payload is passed separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl UdpRepr {
    /// Reads a datagram's header. With `pseudo`, also checks a non-zero checksum
    /// ([`Error::Malformed`] if wrong).
    pub fn parse<T: AsRef<[u8]>>(p: &UdpPacket<T>, pseudo: Option<&PseudoHeader>) -> Result<Self> {
        p.check_len()?;
        if let Some(ph) = pseudo {
            if !p.verify_checksum(ph) {
                return Err(Error::Malformed);
            }
        }
        Ok(UdpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
        })
    }

    /// Header length (8).
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus `payload_len`.
    pub const fn buffer_len(&self, payload_len: usize) -> usize {
        HEADER_LEN + payload_len
    }

    /// Writes header (length = 8 + `payload.len()`) and payload. With `pseudo` the checksum is
    /// filled in, otherwise it is zero ("none", IPv4 only).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        p: &mut UdpPacket<T>,
        payload: &[u8],
        pseudo: Option<&PseudoHeader>,
    ) {
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_len((HEADER_LEN + payload.len()) as u16);
        p.set_checksum(0);
        let out = p.payload_mut();
        let n = out.len().min(payload.len());
        out[..n].copy_from_slice(&payload[..n]);
        if let Some(ph) = pseudo {
            p.fill_checksum(ph);
        }
    }
}

impl_into_payload!(UdpPacket, p => (HEADER_LEN, usize::from(p.len())));

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: [u8; 4] = [192, 168, 1, 1];
    const DST: [u8; 4] = [192, 168, 1, 2];
    const PH: PseudoHeader = PseudoHeader::V4 { src: SRC, dst: DST };

    // smoltcp's golden datagram 48896 -> 53, 4 bytes; checksum 0x124d checked independently.
    const DATAGRAM: [u8; 12] = [
        0xbf, 0x00, 0x00, 0x35, 0x00, 0x0c, 0x12, 0x4d, 0xaa, 0x00, 0x00, 0xff,
    ];

    #[test]
    fn parse_and_emit_golden() {
        let p = UdpPacket::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!(
            (p.src_port(), p.dst_port(), p.len(), p.checksum()),
            (48896, 53, 12, 0x124d)
        );
        assert_eq!(p.payload(), &[0xaa, 0x00, 0x00, 0xff]);
        assert!(p.verify_checksum(&PH));
        let r = UdpRepr::parse(&p, Some(&PH)).unwrap();
        assert_eq!(
            r,
            UdpRepr {
                src_port: 48896,
                dst_port: 53
            }
        );
        let mut buf = [0u8; 12];
        r.emit(
            &mut UdpPacket::new_unchecked(&mut buf[..]),
            &[0xaa, 0x00, 0x00, 0xff],
            Some(&PH),
        );
        assert_eq!(buf, DATAGRAM);
    }

    #[test]
    fn check_errors_and_padding() {
        for n in 0..12 {
            assert_eq!(
                UdpPacket::new_checked(&DATAGRAM[..n]).unwrap_err(),
                Error::Truncated
            );
        }
        let mut b = DATAGRAM;
        b[5] = 7;
        assert_eq!(
            UdpPacket::new_checked(&b[..]).unwrap_err(),
            Error::Malformed
        );
        let mut padded = DATAGRAM.to_vec();
        padded.extend_from_slice(&[9, 9]);
        let p = UdpPacket::new_checked(&padded[..]).unwrap();
        assert_eq!(p.payload().len(), 4);
        assert!(p.verify_checksum(&PH));
    }

    #[test]
    fn zero_checksum_rules() {
        // No checksum: accepted, and incremental updates leave it at zero.
        let mut b = DATAGRAM;
        b[6] = 0;
        b[7] = 0;
        let mut p = UdpPacket::new_checked(&mut b[..]).unwrap();
        assert!(p.verify_checksum(&PH));
        let c = checksum::udp_update_u16(p.checksum(), p.dst_port(), 5353);
        assert_eq!(c, 0);
        // Find a payload word that makes the full sum 0xFFFF: UDP must send 0xFFFF.
        p.payload_mut().copy_from_slice(&[0, 0, 0, 0]);
        p.set_checksum(0);
        let ph = PH.sum(ip_protocol::UDP, 12);
        let rest = checksum::combine(&[ph, checksum::ones_complement_sum(&b)]);
        let word = !rest;
        b[8..10].copy_from_slice(&word.to_be_bytes());
        let mut p = UdpPacket::new_checked(&mut b[..]).unwrap();
        p.fill_checksum(&PH);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum(&PH));
    }

    proptest! {
        #[test]
        fn roundtrip(src_port: u16, dst_port: u16, payload in proptest::collection::vec(any::<u8>(), 0..64), s6: [u8; 16], d6: [u8; 16]) {
            let r = UdpRepr { src_port, dst_port };
            let ph = PseudoHeader::V6 { src: s6, dst: d6 };
            let mut buf = vec![0u8; r.buffer_len(payload.len())];
            r.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), &payload, Some(&ph));
            let p = UdpPacket::new_checked(&buf[..]).unwrap();
            prop_assert!(p.checksum() != 0);
            prop_assert_eq!(p.payload(), &payload[..]);
            prop_assert_eq!(UdpRepr::parse(&p, Some(&ph)).unwrap(), r);
        }

        /// Incremental NAT with the UDP helpers equals recomputation (modulo 0 -> 0xFFFF,
        /// which both apply).
        #[test]
        fn incremental_nat(payload in proptest::collection::vec(any::<u8>(), 0..32), new_dst: [u8; 4], new_port: u16) {
            let r = UdpRepr { src_port: 5000, dst_port: 53 };
            let mut buf = vec![0u8; r.buffer_len(payload.len())];
            let mut p = UdpPacket::new_unchecked(&mut buf[..]);
            r.emit(&mut p, &payload, Some(&PH));
            let mut c = checksum::udp_update_bytes(p.checksum(), &DST, &new_dst);
            c = checksum::udp_update_u16(c, p.dst_port(), new_port);
            p.set_dst_port(new_port);
            p.set_checksum(c);
            let new_ph = PseudoHeader::V4 { src: SRC, dst: new_dst };
            prop_assert!(p.verify_checksum(&new_ph));
            p.fill_checksum(&new_ph);
            prop_assert_eq!(p.checksum(), c);
        }
    }
}
