//! 802.1Q / 802.1ad VLAN tags: the 4 bytes after the MAC addresses' TPID, i.e. the Ethernet
//! payload of a frame whose ethertype is `VLAN` or `QINQ`: TCI then the inner EtherType.

use super::{clamp_range, clamp_range_mut, read_u16, write_u16, Error, Result};

mod field {
    pub const TCI: usize = 0;
    pub const ETHERTYPE: usize = 2;
    pub const PAYLOAD: usize = 4;
}

/// Length of a VLAN tag as seen from the Ethernet payload (TCI + inner EtherType).
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A view of a VLAN tag followed by its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanHeader<T> {
    /// Wraps `buffer` without checking its length.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        VlanHeader { buffer }
    }

    /// Wraps `buffer`, failing with [`Error::Truncated`] if the 4-byte tag does not fit.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let v = Self::new_unchecked(buffer);
        v.check_len()?;
        Ok(v)
    }

    /// Checks that the tag fits in the buffer.
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

    /// The whole Tag Control Information field.
    #[inline]
    pub fn tci(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::TCI)
    }

    /// Priority code point (3 bits).
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator.
    #[inline]
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN id (12 bits).
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// EtherType of what follows the tag (may be another tag for QinQ).
    #[inline]
    pub fn inner_ethertype(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// What follows the tag.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        clamp_range(data, HEADER_LEN, data.len())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanHeader<T> {
    /// Sets the whole TCI.
    #[inline]
    pub fn set_tci(&mut self, tci: u16) {
        write_u16(self.buffer.as_mut(), field::TCI, tci);
    }

    /// Sets the priority code point (low 3 bits of `pcp`).
    #[inline]
    pub fn set_pcp(&mut self, pcp: u8) {
        let tci = (self.tci() & 0x1fff) | (u16::from(pcp & 7) << 13);
        self.set_tci(tci);
    }

    /// Sets the drop eligible indicator.
    #[inline]
    pub fn set_dei(&mut self, dei: bool) {
        let tci = (self.tci() & !0x1000) | if dei { 0x1000 } else { 0 };
        self.set_tci(tci);
    }

    /// Sets the VLAN id (low 12 bits of `vid`).
    #[inline]
    pub fn set_vid(&mut self, vid: u16) {
        let tci = (self.tci() & 0xf000) | (vid & 0x0fff);
        self.set_tci(tci);
    }

    /// Sets the inner EtherType.
    #[inline]
    pub fn set_inner_ethertype(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ETHERTYPE, value);
    }

    /// Mutable payload.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let data = self.buffer.as_mut();
        let len = data.len();
        clamp_range_mut(data, HEADER_LEN, len)
    }
}

/// A VLAN tag, for building frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VlanRepr {
    /// Priority code point (0..=7).
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN id (0..=4095).
    pub vid: u16,
    /// EtherType after the tag.
    pub inner_ethertype: u16,
}

impl VlanRepr {
    /// Reads a checked tag.
    pub fn parse<T: AsRef<[u8]>>(tag: &VlanHeader<T>) -> Result<Self> {
        tag.check_len()?;
        Ok(VlanRepr {
            pcp: tag.pcp(),
            dei: tag.dei(),
            vid: tag.vid(),
            inner_ethertype: tag.inner_ethertype(),
        })
    }

    /// Tag length (4).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the tag (the buffer must hold [`HEADER_LEN`] bytes). Out-of-range `pcp`/`vid`
    /// bits are dropped.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, tag: &mut VlanHeader<T>) {
        tag.set_tci(
            (u16::from(self.pcp & 7) << 13)
                | if self.dei { 0x1000 } else { 0 }
                | (self.vid & 0x0fff),
        );
        tag.set_inner_ethertype(self.inner_ethertype);
    }
}

impl_into_payload!(VlanHeader, p => (HEADER_LEN, p.buffer.len()));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::{ethertype, EthernetFrame};
    use proptest::prelude::*;

    // dst, src, TPID 0x8100, TCI pcp=5 dei=0 vid=100 (0xa064), inner IPv6.
    const FRAME: [u8; 20] = [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x81, 0x00, 0xa0, 0x64, 0x86, 0xdd, 0x60, 0x00,
    ];

    #[test]
    fn parse_golden() {
        let eth = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(eth.ethertype(), ethertype::VLAN);
        let v = VlanHeader::new_checked(eth.payload()).unwrap();
        assert_eq!((v.pcp(), v.dei(), v.vid()), (5, false, 100));
        assert_eq!(v.inner_ethertype(), ethertype::IPV6);
        assert_eq!(v.payload(), &[0x60, 0x00]);
        let r = VlanRepr::parse(&v).unwrap();
        let mut buf = [0u8; 4];
        r.emit(&mut VlanHeader::new_unchecked(&mut buf[..]));
        assert_eq!(buf, FRAME[14..18]);
    }

    #[test]
    fn truncated() {
        for n in 0..4 {
            assert_eq!(
                VlanHeader::new_checked(&FRAME[14..14 + n]).unwrap_err(),
                Error::Truncated
            );
        }
    }

    proptest! {
        #[test]
        fn roundtrip(pcp in 0u8..8, dei: bool, vid in 0u16..4096, et: u16) {
            let r = VlanRepr { pcp, dei, vid, inner_ethertype: et };
            let mut buf = [0u8; 4];
            let mut v = VlanHeader::new_unchecked(&mut buf[..]);
            r.emit(&mut v);
            prop_assert_eq!(VlanRepr::parse(&VlanHeader::new_checked(&buf[..]).unwrap()).unwrap(), r);
        }
    }
}
