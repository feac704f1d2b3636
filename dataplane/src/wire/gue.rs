//! Generic UDP Encapsulation (draft-ietf-intarea-gue).
//!
//! The first two bits of the UDP payload give the variant:
//! - `00` — variant 0: a 4-byte header `|ver(2)|C(1)|hlen(5)|proto/ctype(8)|flags(16)|`
//!   followed by `hlen * 4` bytes of extension fields, then the payload ([`GueHeader`]);
//! - `01` — variant 1: no GUE header at all, an IP packet starts right after the UDP header:
//!   IPv4 if the first nibble is 4 (`0100`), IPv6 if it is 6 (`0110`). This is what fiberlb
//!   emits, as Katran and GLB do, because it adds no bytes and the backend's kernel (fou/gue
//!   receive) decapsulates it directly.

use super::{clamp_range, clamp_range_mut, read_u16, write_u16, Error, Result};

/// What the first byte of a GUE payload says follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Variant 0: a GUE header ([`GueHeader`]).
    Header,
    /// Variant 1, IPv4 packet directly after the UDP header.
    Ipv4,
    /// Variant 1, IPv6 packet directly after the UDP header.
    Ipv6,
    /// Variant 1 with another nibble, or the reserved variants 2 and 3.
    Unknown,
}

/// Classifies a GUE payload by its first byte.
#[inline]
pub fn variant(first_byte: u8) -> Variant {
    match first_byte >> 4 {
        0..=3 => Variant::Header,
        4 => Variant::Ipv4,
        6 => Variant::Ipv6,
        _ => Variant::Unknown,
    }
}

mod field {
    pub const VER_C_HLEN: usize = 0;
    pub const PROTO: usize = 1;
    pub const FLAGS: usize = 2;
}

/// Length of the fixed part of a variant-0 header.
pub const HEADER_LEN: usize = 4;

/// A view of a variant-0 GUE header and what follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GueHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GueHeader<T> {
    /// Wraps `buffer` without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        GueHeader { buffer }
    }

    /// Wraps `buffer` after checking: 4 bytes present, variant 0, and the extension fields
    /// (`hlen * 4` bytes) within the buffer.
    ///
    /// # Errors
    /// [`Error::Truncated`] for a short buffer; [`Error::Unsupported`] for a payload that is
    /// not variant 0 (use [`variant`] first: variant 1 has no header).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let h = Self::new_unchecked(buffer);
        h.check_len()?;
        Ok(h)
    }

    /// The checks of [`GueHeader::new_checked`].
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        let Some(&first) = data.first() else {
            return Err(Error::Truncated);
        };
        if first >> 6 != 0 {
            return Err(Error::Unsupported);
        }
        if data.len() < HEADER_LEN || self.header_len() > data.len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Gives back the buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version bits (0 after `new_checked`).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_C_HLEN] >> 6
    }

    /// C bit: a control message (proto/ctype is then a control type).
    #[inline]
    pub fn control(&self) -> bool {
        self.buffer.as_ref()[field::VER_C_HLEN] & 0x20 != 0
    }

    /// Raw hlen: length of the extension fields in 32-bit words.
    #[inline]
    pub fn hlen(&self) -> u8 {
        self.buffer.as_ref()[field::VER_C_HLEN] & 0x1f
    }

    /// Whole header length in bytes (4 + extension fields).
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + usize::from(self.hlen()) * 4
    }

    /// IP protocol number of the payload (data messages) or control type.
    #[inline]
    pub fn proto(&self) -> u8 {
        self.buffer.as_ref()[field::PROTO]
    }

    /// Flags.
    #[inline]
    pub fn flags(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FLAGS)
    }

    /// Extension fields.
    #[inline]
    pub fn extensions(&self) -> &[u8] {
        clamp_range(self.buffer.as_ref(), HEADER_LEN, self.header_len())
    }

    /// The encapsulated payload.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        clamp_range(data, self.header_len(), data.len())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> GueHeader<T> {
    /// Sets version 0, the C bit and hlen (in 32-bit words, low 5 bits).
    #[inline]
    pub fn set_first_byte(&mut self, control: bool, hlen: u8) {
        self.buffer.as_mut()[field::VER_C_HLEN] = if control { 0x20 } else { 0 } | (hlen & 0x1f);
    }

    /// Sets proto/ctype.
    #[inline]
    pub fn set_proto(&mut self, p: u8) {
        self.buffer.as_mut()[field::PROTO] = p;
    }

    /// Sets the flags.
    #[inline]
    pub fn set_flags(&mut self, f: u16) {
        write_u16(self.buffer.as_mut(), field::FLAGS, f);
    }

    /// Mutable extension fields.
    #[inline]
    pub fn extensions_mut(&mut self) -> &mut [u8] {
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
}

/// A variant-0 GUE header, for building. Extension fields are written as zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GueRepr {
    /// C bit.
    pub control: bool,
    /// Length of the extension fields in 32-bit words (0..=31).
    pub hlen: u8,
    /// Proto/ctype.
    pub proto: u8,
    /// Flags.
    pub flags: u16,
}

impl GueRepr {
    /// Reads a header.
    pub fn parse<T: AsRef<[u8]>>(h: &GueHeader<T>) -> Result<Self> {
        h.check_len()?;
        Ok(GueRepr {
            control: h.control(),
            hlen: h.hlen(),
            proto: h.proto(),
            flags: h.flags(),
        })
    }

    /// Header length including extension fields.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + (self.hlen as usize & 0x1f) * 4
    }

    /// Writes the header and zeroed extension fields (the buffer must hold `buffer_len()`).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, h: &mut GueHeader<T>) {
        h.set_first_byte(self.control, self.hlen);
        h.set_proto(self.proto);
        h.set_flags(self.flags);
        h.extensions_mut().fill(0);
    }
}

impl_into_payload!(GueHeader, p => (p.header_len(), p.buffer.len()));

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn variants() {
        assert_eq!(variant(0x00), Variant::Header);
        assert_eq!(variant(0x21), Variant::Header);
        assert_eq!(variant(0x45), Variant::Ipv4);
        assert_eq!(variant(0x60), Variant::Ipv6);
        assert_eq!(variant(0x50), Variant::Unknown);
        assert_eq!(variant(0x80), Variant::Unknown);
        assert_eq!(variant(0xc0), Variant::Unknown);
    }

    #[test]
    fn parse_and_emit_golden() {
        // Variant 0, data message, hlen 1 (one 4-byte extension), proto IPIP (4), flags 0x8000,
        // extension 0xdeadbeef, then an inner packet starting 0x45.
        let bytes = [0x01, 0x04, 0x80, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x45, 0x00];
        let h = GueHeader::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            (h.version(), h.control(), h.hlen(), h.header_len()),
            (0, false, 1, 8)
        );
        assert_eq!((h.proto(), h.flags()), (4, 0x8000));
        assert_eq!(h.extensions(), &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(h.payload(), &[0x45, 0x00]);
        let r = GueRepr::parse(&h).unwrap();
        assert_eq!(
            r,
            GueRepr {
                control: false,
                hlen: 1,
                proto: 4,
                flags: 0x8000
            }
        );
        let mut out = [0xffu8; 8];
        r.emit(&mut GueHeader::new_unchecked(&mut out[..]));
        assert_eq!(out, [0x01, 0x04, 0x80, 0x00, 0, 0, 0, 0]);
    }

    #[test]
    fn errors() {
        assert_eq!(
            GueHeader::new_checked(&[][..]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            GueHeader::new_checked(&[0x00, 4, 0][..]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            GueHeader::new_checked(&[0x02, 4, 0, 0, 1, 2, 3, 4][..]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            GueHeader::new_checked(&[0x45, 0, 0, 20][..]).unwrap_err(),
            Error::Unsupported
        );
        assert_eq!(
            GueHeader::new_checked(&[0x60][..]).unwrap_err(),
            Error::Unsupported
        );
    }

    proptest! {
        #[test]
        fn roundtrip(control: bool, hlen in 0u8..32, proto: u8, flags: u16) {
            let r = GueRepr { control, hlen, proto, flags };
            let mut buf = vec![0u8; r.buffer_len()];
            r.emit(&mut GueHeader::new_unchecked(&mut buf[..]));
            prop_assert_eq!(GueRepr::parse(&GueHeader::new_checked(&buf[..]).unwrap()).unwrap(), r);
        }
    }
}
