//! ICMP for IPv6 (RFC 4443): echo, "packet too big" (whose payload embeds as much of the
//! original packet as fits) and the neighbour discovery type numbers (RFC 4861).

use super::checksum::{self, PseudoHeader};
use super::ip_protocol;
use super::{
    clamp_range, clamp_range_mut, read_u16, read_u32, write_u16, write_u32, Error, Result,
};

/// Destination unreachable.
pub const DEST_UNREACHABLE: u8 = 1;
/// Packet too big (MTU in the rest of header).
pub const PACKET_TOO_BIG: u8 = 2;
/// Time exceeded.
pub const TIME_EXCEEDED: u8 = 3;
/// Parameter problem.
pub const PARAM_PROBLEM: u8 = 4;
/// Echo request.
pub const ECHO_REQUEST: u8 = 128;
/// Echo reply.
pub const ECHO_REPLY: u8 = 129;
/// Router solicitation.
pub const ROUTER_SOLICITATION: u8 = 133;
/// Router advertisement.
pub const ROUTER_ADVERTISEMENT: u8 = 134;
/// Neighbour solicitation.
pub const NEIGHBOR_SOLICITATION: u8 = 135;
/// Neighbour advertisement.
pub const NEIGHBOR_ADVERTISEMENT: u8 = 136;

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST: usize = 4;
}

/// Length of the ICMPv6 header (type, code, checksum, rest of header).
pub const HEADER_LEN: usize = 8;

/// A view of an ICMPv6 message. The checksum covers the IPv6 pseudo header and the whole
/// buffer, so slice it to the upper-layer data first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps `buffer` without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    /// Wraps `buffer`, [`Error::Truncated`] if shorter than 8 bytes.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the 8-byte header fits.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Gives back the buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Code.
    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The 4 bytes after the checksum.
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::REST)
    }

    /// MTU of a "packet too big" message.
    #[inline]
    pub fn mtu(&self) -> u32 {
        self.rest_of_header()
    }

    /// Echo identifier.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        (self.rest_of_header() >> 16) as u16
    }

    /// Echo sequence number.
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        self.rest_of_header() as u16
    }

    /// Whether this is an error message (type < 128), which carries the original packet.
    #[inline]
    pub fn is_error(&self) -> bool {
        self.msg_type() < 128
    }

    /// Data after the header (for errors: the start of the original packet).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        clamp_range(data, HEADER_LEN, data.len())
    }

    /// Whether the checksum over the pseudo header and the whole buffer is right (slow path).
    #[inline]
    pub fn verify_checksum(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        let data = self.buffer.as_ref();
        let ph = PseudoHeader::V6 {
            src: *src,
            dst: *dst,
        }
        .sum(ip_protocol::ICMPV6, data.len() as u32);
        checksum::combine(&[ph, checksum::ones_complement_sum(data)]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Sets the message type.
    #[inline]
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }

    /// Sets the code.
    #[inline]
    pub fn set_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Sets the rest of header.
    #[inline]
    pub fn set_rest_of_header(&mut self, v: u32) {
        write_u32(self.buffer.as_mut(), field::REST, v);
    }

    /// Mutable data after the header.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let data = self.buffer.as_mut();
        let len = data.len();
        clamp_range_mut(data, HEADER_LEN, len)
    }

    /// Computes and stores the checksum (slow path).
    #[inline]
    pub fn fill_checksum(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let ph = PseudoHeader::V6 {
            src: *src,
            dst: *dst,
        }
        .sum(ip_protocol::ICMPV6, data.len() as u32);
        let c = checksum::finish(checksum::combine(&[
            ph,
            checksum::ones_complement_sum(data),
        ]));
        self.set_checksum(c);
    }
}

/// An ICMPv6 message header, for building. The data is passed separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv6Repr {
    /// Echo request.
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
    },
    /// Echo reply.
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
    },
    /// Packet too big.
    PacketTooBig {
        /// MTU of the next hop.
        mtu: u32,
    },
    /// Any other message, kept raw.
    Other {
        /// Type.
        msg_type: u8,
        /// Code.
        code: u8,
        /// Rest of header.
        rest_of_header: u32,
    },
}

impl Icmpv6Repr {
    /// Reads a message header, checking the checksum ([`Error::Malformed`] if wrong).
    pub fn parse<T: AsRef<[u8]>>(
        p: &Icmpv6Packet<T>,
        src: &[u8; 16],
        dst: &[u8; 16],
    ) -> Result<Self> {
        p.check_len()?;
        if !p.verify_checksum(src, dst) {
            return Err(Error::Malformed);
        }
        Ok(match (p.msg_type(), p.code()) {
            (ECHO_REQUEST, 0) => Icmpv6Repr::EchoRequest {
                ident: p.echo_ident(),
                seq_no: p.echo_seq_no(),
            },
            (ECHO_REPLY, 0) => Icmpv6Repr::EchoReply {
                ident: p.echo_ident(),
                seq_no: p.echo_seq_no(),
            },
            (PACKET_TOO_BIG, 0) => Icmpv6Repr::PacketTooBig { mtu: p.mtu() },
            (msg_type, code) => Icmpv6Repr::Other {
                msg_type,
                code,
                rest_of_header: p.rest_of_header(),
            },
        })
    }

    /// Header plus `payload_len`.
    pub const fn buffer_len(&self, payload_len: usize) -> usize {
        HEADER_LEN + payload_len
    }

    /// Writes the header and `payload` (buffer exactly `buffer_len(payload.len())` long) and
    /// fills the checksum for `src` -> `dst`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        p: &mut Icmpv6Packet<T>,
        payload: &[u8],
        src: &[u8; 16],
        dst: &[u8; 16],
    ) {
        let (t, c, rest) = match *self {
            Icmpv6Repr::EchoRequest { ident, seq_no } => (
                ECHO_REQUEST,
                0,
                (u32::from(ident) << 16) | u32::from(seq_no),
            ),
            Icmpv6Repr::EchoReply { ident, seq_no } => {
                (ECHO_REPLY, 0, (u32::from(ident) << 16) | u32::from(seq_no))
            }
            Icmpv6Repr::PacketTooBig { mtu } => (PACKET_TOO_BIG, 0, mtu),
            Icmpv6Repr::Other {
                msg_type,
                code,
                rest_of_header,
            } => (msg_type, code, rest_of_header),
        };
        p.set_msg_type(t);
        p.set_code(c);
        p.set_rest_of_header(rest);
        let out = p.payload_mut();
        let n = out.len().min(payload.len());
        out[..n].copy_from_slice(&payload[..n]);
        p.fill_checksum(src, dst);
    }
}

impl_into_payload!(Icmpv6Packet, p => (HEADER_LEN, p.buffer.len()));

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const DST: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    /// Echo request fe80::1 -> ff02::1, id 0x1234 seq 1; checksum 0x7002 computed
    /// independently.
    const ECHO: [u8; 8] = [0x80, 0x00, 0x70, 0x02, 0x12, 0x34, 0x00, 0x01];

    #[test]
    fn parse_and_emit_golden() {
        let p = Icmpv6Packet::new_checked(&ECHO[..]).unwrap();
        assert!(p.verify_checksum(&SRC, &DST) && !p.is_error());
        let r = Icmpv6Repr::parse(&p, &SRC, &DST).unwrap();
        assert_eq!(
            r,
            Icmpv6Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 1
            }
        );
        let mut buf = [0u8; 8];
        r.emit(
            &mut Icmpv6Packet::new_unchecked(&mut buf[..]),
            &[],
            &SRC,
            &DST,
        );
        assert_eq!(buf, ECHO);
        let other_dst = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        assert!(!Icmpv6Packet::new_checked(&ECHO[..])
            .unwrap()
            .verify_checksum(&SRC, &other_dst));
    }

    #[test]
    fn packet_too_big() {
        let inner = [0x60u8; 48];
        let r = Icmpv6Repr::PacketTooBig { mtu: 1280 };
        let mut buf = vec![0u8; r.buffer_len(inner.len())];
        r.emit(
            &mut Icmpv6Packet::new_unchecked(&mut buf[..]),
            &inner,
            &SRC,
            &DST,
        );
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!((p.msg_type(), p.mtu()), (PACKET_TOO_BIG, 1280));
        assert!(p.is_error());
        assert_eq!(p.payload(), &inner);
        assert_eq!(Icmpv6Repr::parse(&p, &SRC, &DST).unwrap(), r);
        for n in 0..8 {
            assert_eq!(
                Icmpv6Packet::new_checked(&buf[..n]).unwrap_err(),
                Error::Truncated
            );
        }
        let mut bad = buf.clone();
        bad[20] ^= 1;
        assert_eq!(
            Icmpv6Repr::parse(&Icmpv6Packet::new_checked(&bad[..]).unwrap(), &SRC, &DST)
                .unwrap_err(),
            Error::Malformed
        );
    }

    proptest! {
        #[test]
        fn roundtrip(kind in 0u8..4, a: u16, b: u16, t: u8, rest: u32, src: [u8; 16], dst: [u8; 16],
                     payload in proptest::collection::vec(any::<u8>(), 0..40)) {
            let r = match kind {
                0 => Icmpv6Repr::EchoRequest { ident: a, seq_no: b },
                1 => Icmpv6Repr::EchoReply { ident: a, seq_no: b },
                2 => Icmpv6Repr::PacketTooBig { mtu: rest },
                _ => Icmpv6Repr::Other { msg_type: t | 0x80 | 0x04, code: 1, rest_of_header: rest },
            };
            let mut buf = vec![0u8; r.buffer_len(payload.len())];
            r.emit(&mut Icmpv6Packet::new_unchecked(&mut buf[..]), &payload, &src, &dst);
            let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(p.payload(), &payload[..]);
            prop_assert_eq!(Icmpv6Repr::parse(&p, &src, &dst).unwrap(), r);
        }
    }
}
