//! ICMP for IPv4 (RFC 792), with what the load balancer needs: echo, and "fragmentation
//! needed" (RFC 1191) whose payload embeds the original IP header and 8 bytes.

use super::checksum;
use super::{
    clamp_range, clamp_range_mut, read_u16, read_u32, write_u16, write_u32, Error, Result,
};

/// Echo reply.
pub const ECHO_REPLY: u8 = 0;
/// Destination unreachable.
pub const DEST_UNREACHABLE: u8 = 3;
/// Echo request.
pub const ECHO_REQUEST: u8 = 8;
/// Time exceeded.
pub const TIME_EXCEEDED: u8 = 11;
/// Destination unreachable code: fragmentation needed and DF set (next-hop MTU in the low
/// 16 bits of the rest of header).
pub const FRAG_NEEDED: u8 = 4;
/// Destination unreachable code: port unreachable.
pub const PORT_UNREACHABLE: u8 = 3;

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST: usize = 4;
}

/// Length of the ICMP header (type, code, checksum, rest of header).
pub const HEADER_LEN: usize = 8;

/// A view of an ICMPv4 message. The checksum covers the whole buffer, so slice it to the IP
/// payload first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps `buffer` without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
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

    /// The 4 bytes after the checksum (echo id/seq, next-hop MTU, ...).
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::REST)
    }

    /// Next-hop MTU of a "fragmentation needed" message (low 16 bits of the rest of header).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        self.rest_of_header() as u16
    }

    /// Echo identifier (high 16 bits of the rest of header).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        (self.rest_of_header() >> 16) as u16
    }

    /// Echo sequence number (low 16 bits of the rest of header).
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        self.rest_of_header() as u16
    }

    /// Whether this type carries the original datagram (unreachable, time exceeded, ...).
    #[inline]
    pub fn is_error(&self) -> bool {
        matches!(
            self.msg_type(),
            DEST_UNREACHABLE | TIME_EXCEEDED | 4 | 5 | 12
        )
    }

    /// Data after the header; for error messages, the original IP header and at least 8
    /// bytes of its payload (wrap it in an `Ipv4Packet` view with care: it is usually cut
    /// short, so `new_checked` reports `Truncated` — read its fixed header fields instead).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        clamp_range(data, HEADER_LEN, data.len())
    }

    /// Whether the checksum over the whole buffer is right (slow path).
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::ones_complement_sum(self.buffer.as_ref()) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
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

    /// Computes and stores the checksum over the whole buffer (slow path).
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::finish(checksum::ones_complement_sum(self.buffer.as_ref()));
        self.set_checksum(c);
    }
}

/// An ICMPv4 message header, for building. The data (echo payload or embedded original
/// datagram) is passed separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv4Repr {
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
    /// Destination unreachable, fragmentation needed (type 3 code 4).
    FragNeeded {
        /// Next-hop MTU.
        mtu: u16,
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

impl Icmpv4Repr {
    /// Reads a message header, checking the checksum ([`Error::Malformed`] if wrong).
    pub fn parse<T: AsRef<[u8]>>(p: &Icmpv4Packet<T>) -> Result<Self> {
        p.check_len()?;
        if !p.verify_checksum() {
            return Err(Error::Malformed);
        }
        Ok(match (p.msg_type(), p.code()) {
            (ECHO_REQUEST, 0) => Icmpv4Repr::EchoRequest {
                ident: p.echo_ident(),
                seq_no: p.echo_seq_no(),
            },
            (ECHO_REPLY, 0) => Icmpv4Repr::EchoReply {
                ident: p.echo_ident(),
                seq_no: p.echo_seq_no(),
            },
            (DEST_UNREACHABLE, FRAG_NEEDED) if p.rest_of_header() >> 16 == 0 => {
                Icmpv4Repr::FragNeeded {
                    mtu: p.next_hop_mtu(),
                }
            }
            (msg_type, code) => Icmpv4Repr::Other {
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

    /// Writes the header and `payload` (the buffer should be exactly
    /// `buffer_len(payload.len())` long) and fills the checksum.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Icmpv4Packet<T>, payload: &[u8]) {
        let (t, c, rest) = match *self {
            Icmpv4Repr::EchoRequest { ident, seq_no } => (
                ECHO_REQUEST,
                0,
                (u32::from(ident) << 16) | u32::from(seq_no),
            ),
            Icmpv4Repr::EchoReply { ident, seq_no } => {
                (ECHO_REPLY, 0, (u32::from(ident) << 16) | u32::from(seq_no))
            }
            Icmpv4Repr::FragNeeded { mtu } => (DEST_UNREACHABLE, FRAG_NEEDED, u32::from(mtu)),
            Icmpv4Repr::Other {
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
        p.fill_checksum();
    }
}

impl_into_payload!(Icmpv4Packet, p => (HEADER_LEN, p.buffer.len()));

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The classic Windows `ping` echo request, id 1 seq 1: checksum 0x4d5a.
    fn echo() -> Vec<u8> {
        let mut v = vec![0x08, 0x00, 0x4d, 0x5a, 0x00, 0x01, 0x00, 0x01];
        v.extend_from_slice(b"abcdefghijklmnopqrstuvwabcdefghi");
        v
    }

    #[test]
    fn parse_and_emit_golden_echo() {
        let buf = echo();
        let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            (p.msg_type(), p.code(), p.checksum()),
            (ECHO_REQUEST, 0, 0x4d5a)
        );
        assert!(p.verify_checksum() && !p.is_error());
        let r = Icmpv4Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Icmpv4Repr::EchoRequest {
                ident: 1,
                seq_no: 1
            }
        );
        let mut out = vec![0u8; r.buffer_len(32)];
        r.emit(
            &mut Icmpv4Packet::new_unchecked(&mut out[..]),
            b"abcdefghijklmnopqrstuvwabcdefghi",
        );
        assert_eq!(out, buf);
    }

    #[test]
    fn frag_needed_embeds_original() {
        // The classic IPv4 header plus 8 bytes of its UDP header.
        let inner: [u8; 28] = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7, 0x30, 0x39, 0x00, 0x35, 0x00, 0x5f, 0x00, 0x00,
        ];
        let r = Icmpv4Repr::FragNeeded { mtu: 1400 };
        let mut buf = vec![0u8; r.buffer_len(inner.len())];
        r.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]), &inner);
        assert_eq!(&buf[..8], &[3, 4, buf[2], buf[3], 0, 0, 0x05, 0x78]);
        let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert!(p.is_error() && p.verify_checksum());
        assert_eq!(p.next_hop_mtu(), 1400);
        assert_eq!(p.payload(), &inner);
        assert_eq!(Icmpv4Repr::parse(&p).unwrap(), r);
        let inner_ip = crate::wire::ipv4::Ipv4Packet::new_unchecked(p.payload());
        assert_eq!(inner_ip.dst_addr(), [192, 168, 0, 199]);
    }

    #[test]
    fn errors() {
        let buf = echo();
        for n in 0..8 {
            assert_eq!(
                Icmpv4Packet::new_checked(&buf[..n]).unwrap_err(),
                Error::Truncated
            );
        }
        let mut b = echo();
        b[9] ^= 1;
        assert_eq!(
            Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&b[..]).unwrap()).unwrap_err(),
            Error::Malformed
        );
    }

    proptest! {
        #[test]
        fn roundtrip(kind in 0u8..4, a: u16, b: u16, t: u8, c: u8, rest: u32, payload in proptest::collection::vec(any::<u8>(), 0..40)) {
            let r = match kind {
                0 => Icmpv4Repr::EchoRequest { ident: a, seq_no: b },
                1 => Icmpv4Repr::EchoReply { ident: a, seq_no: b },
                2 => Icmpv4Repr::FragNeeded { mtu: a },
                _ => Icmpv4Repr::Other { msg_type: t | 0x80, code: c, rest_of_header: rest },
            };
            let mut buf = vec![0u8; r.buffer_len(payload.len())];
            r.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]), &payload);
            let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(p.payload(), &payload[..]);
            prop_assert_eq!(Icmpv4Repr::parse(&p).unwrap(), r);
        }
    }
}
