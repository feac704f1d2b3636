//! TCP headers (RFC 9293). The view covers one TCP segment: slice the buffer to the IP payload
//! before wrapping it, since the checksum covers the whole segment.

use super::checksum::{self, PseudoHeader};
use super::ip_protocol;
use super::{
    clamp_range, clamp_range_mut, read_u16, read_u32, write_u16, write_u32, Error, Result,
};

/// TCP flag bits as in the flags byte ([`TcpPacket::flags`]).
pub mod flags {
    /// No more data.
    pub const FIN: u8 = 0x01;
    /// Synchronize sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset.
    pub const RST: u8 = 0x04;
    /// Push.
    pub const PSH: u8 = 0x08;
    /// Acknowledgement field valid.
    pub const ACK: u8 = 0x10;
    /// Urgent pointer valid.
    pub const URG: u8 = 0x20;
    /// ECN echo.
    pub const ECE: u8 = 0x40;
    /// Congestion window reduced.
    pub const CWR: u8 = 0x80;
}

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ_NUM: usize = 4;
    pub const ACK_NUM: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;
/// Longest TCP header (data offset 15).
pub const MAX_HEADER_LEN: usize = 60;

/// A view of a TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps `buffer` without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps `buffer` after checking that the 20-byte header fits and that the data offset is
    /// 20..=60 bytes and within the buffer.
    ///
    /// # Errors
    /// [`Error::Truncated`] for a short buffer, [`Error::Malformed`] for data offset < 5.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The checks of [`TcpPacket::new_checked`].
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let hlen = self.header_len();
        if hlen < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if hlen > len {
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

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SEQ_NUM)
    }

    /// Acknowledgement number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::ACK_NUM)
    }

    /// Header length in bytes, options included (data offset * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The flags byte (see [`flags`]).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// FIN flag.
    #[inline]
    pub fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }

    /// SYN flag.
    #[inline]
    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }

    /// RST flag.
    #[inline]
    pub fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }

    /// PSH flag.
    #[inline]
    pub fn psh(&self) -> bool {
        self.flags() & flags::PSH != 0
    }

    /// ACK flag.
    #[inline]
    pub fn ack(&self) -> bool {
        self.flags() & flags::ACK != 0
    }

    /// URG flag.
    #[inline]
    pub fn urg(&self) -> bool {
        self.flags() & flags::URG != 0
    }

    /// Window size (unscaled).
    #[inline]
    pub fn window_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::WIN_SIZE)
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// Options bytes.
    #[inline]
    pub fn options(&self) -> &[u8] {
        clamp_range(self.buffer.as_ref(), HEADER_LEN, self.header_len())
    }

    /// Segment data after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        clamp_range(data, self.header_len(), data.len())
    }

    /// Whether the checksum over `pseudo` and the whole buffer is right. Reads the whole
    /// segment: slow path and tests only.
    #[inline]
    pub fn verify_checksum(&self, pseudo: &PseudoHeader) -> bool {
        let data = self.buffer.as_ref();
        let ph = pseudo.sum(ip_protocol::TCP, data.len() as u32);
        checksum::combine(&[ph, checksum::ones_complement_sum(data)]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
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

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, v: u32) {
        write_u32(self.buffer.as_mut(), field::SEQ_NUM, v);
    }

    /// Sets the acknowledgement number.
    #[inline]
    pub fn set_ack_number(&mut self, v: u32) {
        write_u32(self.buffer.as_mut(), field::ACK_NUM, v);
    }

    /// Sets the header length in bytes (a multiple of 4, 20..=60); clears the reserved bits.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[field::DATA_OFF] = ((len / 4) as u8) << 4;
    }

    /// Sets the flags byte.
    #[inline]
    pub fn set_flags(&mut self, f: u8) {
        self.buffer.as_mut()[field::FLAGS] = f;
    }

    /// Sets the window size.
    #[inline]
    pub fn set_window_len(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::WIN_SIZE, v);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent_at(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::URGENT, v);
    }

    /// Mutable options.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        clamp_range_mut(self.buffer.as_mut(), HEADER_LEN, end)
    }

    /// Mutable payload.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        let data = self.buffer.as_mut();
        let len = data.len();
        clamp_range_mut(data, start, len)
    }

    /// Computes and stores the checksum over `pseudo` and the whole buffer (slow path).
    #[inline]
    pub fn fill_checksum(&mut self, pseudo: &PseudoHeader) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let ph = pseudo.sum(ip_protocol::TCP, data.len() as u32);
        let c = checksum::finish(checksum::combine(&[
            ph,
            checksum::ones_complement_sum(data),
        ]));
        self.set_checksum(c);
    }
}

/// A TCP header without options, for building segments. The payload is passed separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgement number.
    pub ack_number: u32,
    /// Flags byte (see [`flags`]).
    pub flags: u8,
    /// Window size.
    pub window_len: u16,
}

impl TcpRepr {
    /// Reads a segment's header (options are skipped). With `pseudo`, also checks the
    /// checksum ([`Error::Malformed`] if wrong).
    pub fn parse<T: AsRef<[u8]>>(p: &TcpPacket<T>, pseudo: Option<&PseudoHeader>) -> Result<Self> {
        p.check_len()?;
        if let Some(ph) = pseudo {
            if !p.verify_checksum(ph) {
                return Err(Error::Malformed);
            }
        }
        Ok(TcpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq_number: p.seq_number(),
            ack_number: p.ack_number(),
            flags: p.flags(),
            window_len: p.window_len(),
        })
    }

    /// Header length (20).
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus `payload_len`.
    pub const fn buffer_len(&self, payload_len: usize) -> usize {
        HEADER_LEN + payload_len
    }

    /// Writes header and `payload`; the buffer should be exactly `buffer_len(payload.len())`
    /// long (the checksum covers the whole buffer). With `pseudo` the checksum is filled in,
    /// otherwise it is zero.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        p: &mut TcpPacket<T>,
        payload: &[u8],
        pseudo: Option<&PseudoHeader>,
    ) {
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_seq_number(self.seq_number);
        p.set_ack_number(self.ack_number);
        p.set_header_len(HEADER_LEN);
        p.set_flags(self.flags);
        p.set_window_len(self.window_len);
        p.set_checksum(0);
        p.set_urgent_at(0);
        let out = p.payload_mut();
        let n = out.len().min(payload.len());
        out[..n].copy_from_slice(&payload[..n]);
        if let Some(ph) = pseudo {
            p.fill_checksum(ph);
        }
    }
}

impl_into_payload!(TcpPacket, p => (p.header_len(), p.buffer.len()));

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: [u8; 4] = [192, 168, 1, 1];
    const DST: [u8; 4] = [192, 168, 1, 2];
    const PH: PseudoHeader = PseudoHeader::V4 { src: SRC, dst: DST };

    // smoltcp's golden TCP segment: FIN|RST|ACK|URG, window scale option, 4 payload bytes;
    // checksum 0x01b6 checked independently.
    const SEGMENT: [u8; 28] = [
        0xbf, 0x00, 0x00, 0x50, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x60, 0x35, 0x01,
        0x23, 0x01, 0xb6, 0x02, 0x01, 0x03, 0x03, 0x0c, 0x01, 0xaa, 0x00, 0x00, 0xff,
    ];

    #[test]
    fn parse_golden() {
        let p = TcpPacket::new_checked(&SEGMENT[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (48896, 80));
        assert_eq!((p.seq_number(), p.ack_number()), (0x0123_4567, 0x89ab_cdef));
        assert_eq!(p.header_len(), 24);
        assert!(p.fin() && p.rst() && p.ack() && p.urg() && !p.syn() && !p.psh());
        assert_eq!(p.flags(), 0x35);
        assert_eq!(
            (p.window_len(), p.checksum(), p.urgent_at()),
            (0x0123, 0x01b6, 0x0201)
        );
        assert_eq!(p.options(), &[0x03, 0x03, 0x0c, 0x01]);
        assert_eq!(p.payload(), &[0xaa, 0x00, 0x00, 0xff]);
        assert!(p.verify_checksum(&PH));
        let r = TcpRepr::parse(&p, Some(&PH)).unwrap();
        assert_eq!(r.flags, flags::FIN | flags::RST | flags::ACK | flags::URG);
    }

    #[test]
    fn emit_then_patch_options_reproduces_golden() {
        let r = TcpRepr::parse(&TcpPacket::new_checked(&SEGMENT[..]).unwrap(), None).unwrap();
        let mut buf = [0u8; 28];
        let mut p = TcpPacket::new_unchecked(&mut buf[..]);
        r.emit(&mut p, &[], None);
        p.set_header_len(24);
        p.set_urgent_at(0x0201);
        p.options_mut().copy_from_slice(&[0x03, 0x03, 0x0c, 0x01]);
        p.payload_mut().copy_from_slice(&[0xaa, 0x00, 0x00, 0xff]);
        p.fill_checksum(&PH);
        assert_eq!(buf, SEGMENT);
    }

    #[test]
    fn check_errors() {
        for n in 0..24 {
            assert_eq!(
                TcpPacket::new_checked(&SEGMENT[..n]).unwrap_err(),
                Error::Truncated,
                "len {n}"
            );
        }
        let mut b = SEGMENT;
        b[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&b[..]).unwrap_err(),
            Error::Malformed
        );
        b[12] = 0xf0;
        assert_eq!(
            TcpPacket::new_checked(&b[..]).unwrap_err(),
            Error::Truncated
        );
        let mut b = SEGMENT;
        b[27] ^= 0x10;
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(TcpRepr::parse(&p, Some(&PH)).unwrap_err(), Error::Malformed);
    }

    proptest! {
        #[test]
        fn roundtrip(src_port: u16, dst_port: u16, seq_number: u32, ack_number: u32, flags: u8, window_len: u16,
                     payload in proptest::collection::vec(any::<u8>(), 0..64), s6: [u8; 16], d6: [u8; 16], v6: bool) {
            let r = TcpRepr { src_port, dst_port, seq_number, ack_number, flags, window_len };
            let ph = if v6 { PseudoHeader::V6 { src: s6, dst: d6 } } else { PH };
            let mut buf = vec![0u8; r.buffer_len(payload.len())];
            r.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), &payload, Some(&ph));
            let p = TcpPacket::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(p.payload(), &payload[..]);
            prop_assert_eq!(TcpRepr::parse(&p, Some(&ph)).unwrap(), r);
        }

        /// NAT: port and pseudo-header address rewritten incrementally == full recomputation.
        #[test]
        fn incremental_nat(payload in proptest::collection::vec(any::<u8>(), 0..64), new_dst: [u8; 4], new_port: u16, seq: u32) {
            let r = TcpRepr { src_port: 1234, dst_port: 80, seq_number: seq, flags: flags::SYN, ..Default::default() };
            let mut buf = vec![0u8; r.buffer_len(payload.len())];
            let mut p = TcpPacket::new_unchecked(&mut buf[..]);
            r.emit(&mut p, &payload, Some(&PH));
            let mut c = checksum::update_bytes(p.checksum(), &DST, &new_dst);
            c = checksum::update_u16(c, p.dst_port(), new_port);
            p.set_dst_port(new_port);
            p.set_checksum(c);
            let new_ph = PseudoHeader::V4 { src: SRC, dst: new_dst };
            prop_assert!(p.verify_checksum(&new_ph));
            p.fill_checksum(&new_ph);
            prop_assert_eq!(p.checksum(), c);
        }
    }
}
