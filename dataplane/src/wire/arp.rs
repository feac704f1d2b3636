//! ARP for Ethernet/IPv4 (RFC 826). Other hardware/protocol pairs are [`Error::Unsupported`].

use super::{read_array, read_u16, write_u16, Error, Result};

/// ARP operation codes.
pub mod operation {
    /// Request ("who has").
    pub const REQUEST: u16 = 1;
    /// Reply ("is at").
    pub const REPLY: u16 = 2;
}

mod field {
    use core::ops::Range;
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::TPA.end;
/// Hardware type Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps `buffer` without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps `buffer`: [`Error::Truncated`] if shorter than 28 bytes,
    /// [`Error::Unsupported`] unless hardware is Ethernet (1, len 6) and protocol IPv4
    /// (0x0800, len 4) — the fixed field offsets of this view assume exactly that.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        if p.hardware_type() != HTYPE_ETHERNET
            || p.protocol_type() != super::ethernet::ethertype::IPV4
            || p.hardware_len() != 6
            || p.protocol_len() != 4
        {
            return Err(Error::Unsupported);
        }
        Ok(p)
    }

    /// Checks that 28 bytes fit.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < PACKET_LEN {
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

    /// Hardware type (1 = Ethernet).
    #[inline]
    pub fn hardware_type(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::HTYPE)
    }

    /// Protocol type (0x0800 = IPv4).
    #[inline]
    pub fn protocol_type(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::PTYPE)
    }

    /// Hardware address length.
    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length.
    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Operation (see [`operation`]).
    #[inline]
    pub fn operation(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::OPER)
    }

    /// Sender MAC.
    #[inline]
    pub fn sender_hw_addr(&self) -> [u8; 6] {
        read_array(self.buffer.as_ref(), field::SHA.start)
    }

    /// Sender IPv4 address.
    #[inline]
    pub fn sender_proto_addr(&self) -> [u8; 4] {
        read_array(self.buffer.as_ref(), field::SPA.start)
    }

    /// Target MAC.
    #[inline]
    pub fn target_hw_addr(&self) -> [u8; 6] {
        read_array(self.buffer.as_ref(), field::THA.start)
    }

    /// Target IPv4 address.
    #[inline]
    pub fn target_proto_addr(&self) -> [u8; 4] {
        read_array(self.buffer.as_ref(), field::TPA.start)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes htype/ptype/hlen/plen for Ethernet/IPv4.
    #[inline]
    pub fn set_ethernet_ipv4(&mut self) {
        let d = self.buffer.as_mut();
        write_u16(d, field::HTYPE, HTYPE_ETHERNET);
        write_u16(d, field::PTYPE, super::ethernet::ethertype::IPV4);
        d[field::HLEN] = 6;
        d[field::PLEN] = 4;
    }

    /// Sets the operation.
    #[inline]
    pub fn set_operation(&mut self, op: u16) {
        write_u16(self.buffer.as_mut(), field::OPER, op);
    }

    /// Sets the sender MAC.
    #[inline]
    pub fn set_sender_hw_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&a);
    }

    /// Sets the sender IPv4 address.
    #[inline]
    pub fn set_sender_proto_addr(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&a);
    }

    /// Sets the target MAC.
    #[inline]
    pub fn set_target_hw_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&a);
    }

    /// Sets the target IPv4 address.
    #[inline]
    pub fn set_target_proto_addr(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&a);
    }
}

/// An Ethernet/IPv4 ARP packet, for building and answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ArpRepr {
    /// Operation (see [`operation`]).
    pub operation: u16,
    /// Sender MAC.
    pub sender_hw_addr: [u8; 6],
    /// Sender IPv4 address.
    pub sender_proto_addr: [u8; 4],
    /// Target MAC.
    pub target_hw_addr: [u8; 6],
    /// Target IPv4 address.
    pub target_proto_addr: [u8; 4],
}

impl ArpRepr {
    /// Reads a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> Result<Self> {
        p.check_len()?;
        Ok(ArpRepr {
            operation: p.operation(),
            sender_hw_addr: p.sender_hw_addr(),
            sender_proto_addr: p.sender_proto_addr(),
            target_hw_addr: p.target_hw_addr(),
            target_proto_addr: p.target_proto_addr(),
        })
    }

    /// Packet length (28).
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the packet (the buffer must hold 28 bytes).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut ArpPacket<T>) {
        p.set_ethernet_ipv4();
        p.set_operation(self.operation);
        p.set_sender_hw_addr(self.sender_hw_addr);
        p.set_sender_proto_addr(self.sender_proto_addr);
        p.set_target_hw_addr(self.target_hw_addr);
        p.set_target_proto_addr(self.target_proto_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // "Who has 192.168.1.1? Tell 192.168.1.100" as captured on a LAN.
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0xc0,
        0xa8, 0x01, 0x64, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xa8, 0x01, 0x01,
    ];

    fn repr() -> ArpRepr {
        ArpRepr {
            operation: operation::REQUEST,
            sender_hw_addr: [0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
            sender_proto_addr: [192, 168, 1, 100],
            target_hw_addr: [0; 6],
            target_proto_addr: [192, 168, 1, 1],
        }
    }

    #[test]
    fn parse_and_emit_golden() {
        let p = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(ArpRepr::parse(&p).unwrap(), repr());
        let mut buf = [0xffu8; 28];
        repr().emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
        assert_eq!(buf, REQUEST);
    }

    #[test]
    fn rejects_short_and_non_ethernet_ipv4() {
        for n in 0..PACKET_LEN {
            assert_eq!(
                ArpPacket::new_checked(&REQUEST[..n]).unwrap_err(),
                Error::Truncated
            );
        }
        let mut other = REQUEST;
        other[1] = 6; // IEEE 802 hardware
        assert_eq!(
            ArpPacket::new_checked(&other[..]).unwrap_err(),
            Error::Unsupported
        );
        let mut other = REQUEST;
        other[5] = 16;
        assert_eq!(
            ArpPacket::new_checked(&other[..]).unwrap_err(),
            Error::Unsupported
        );
    }

    proptest! {
        #[test]
        fn roundtrip(op: u16, sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]) {
            let r = ArpRepr { operation: op, sender_hw_addr: sha, sender_proto_addr: spa, target_hw_addr: tha, target_proto_addr: tpa };
            let mut buf = [0u8; 28];
            r.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
            prop_assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&buf[..]).unwrap()).unwrap(), r);
        }
    }
}
