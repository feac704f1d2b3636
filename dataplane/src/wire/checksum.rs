//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Conventions: a *sum* is the folded one's complement sum of some 16-bit words (what
//! [`ones_complement_sum`] returns); the *checksum* stored in a header is [`finish`] of the sum
//! of everything it covers (its own field counted as zero). A header whose checksum is right
//! sums to `0xFFFF` including the checksum field.
//!
//! # UDP zero checksum
//! In UDP over IPv4 a checksum of `0` means "not computed" and must be left as `0` when fields
//! change; a computed checksum of `0` is sent as `0xFFFF` (RFC 768). Use the `udp_*` helpers
//! for UDP checksums, which do both. Over IPv6 a zero UDP checksum is only allowed for
//! tunnels (RFC 6935); the same helpers keep it zero there too.

/// The address part of a TCP/UDP/ICMPv6 pseudo header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PseudoHeader {
    /// IPv4 source and destination.
    V4 {
        /// Source address.
        src: [u8; 4],
        /// Destination address.
        dst: [u8; 4],
    },
    /// IPv6 source and (final) destination.
    V6 {
        /// Source address.
        src: [u8; 16],
        /// Destination address.
        dst: [u8; 16],
    },
}

impl PseudoHeader {
    /// The folded sum of the pseudo header for an upper-layer packet of `len` bytes.
    #[inline]
    pub fn sum(&self, protocol: u8, len: u32) -> u16 {
        match self {
            PseudoHeader::V4 { src, dst } => pseudo_header_v4(src, dst, protocol, len),
            PseudoHeader::V6 { src, dst } => pseudo_header_v6(src, dst, protocol, len),
        }
    }
}

/// Adds `w` to `acc` with the carry out of bit 63 wrapped back in (end-around carry).
#[inline(always)]
fn add_carry(acc: u64, w: u64) -> u64 {
    let (s, carry) = acc.overflowing_add(w);
    // Cannot overflow: when `carry` is set, s <= 2^64 - 2.
    s + carry as u64
}

/// Folds a 64-bit accumulator of 16-bit (or 32-bit) words into 16 bits with end-around carry:
/// 0 only for 0, else the representative in `1..=0xFFFF` of `acc` modulo 0xFFFF. Two
/// add-with-carry steps (32 + 32 bits, then 16 + 16).
#[inline(always)]
pub fn fold64(acc: u64) -> u16 {
    let (s, c) = (acc as u32).overflowing_add((acc >> 32) as u32);
    // Cannot overflow: when `c` is set, s <= 2^32 - 2.
    let s = s + u32::from(c);
    let (t, c) = (s as u16).overflowing_add((s >> 16) as u16);
    t + u16::from(c)
}

/// The folded one's complement sum of `data` read as big-endian 16-bit words; an odd last byte
/// is padded with a zero byte (RFC 1071). Sums 8 bytes at a time, which gives the same result
/// as word-by-word summing because 2^16 ≡ 1 (mod 0xFFFF). Returns 0 only for all-zero data.
#[inline]
pub fn ones_complement_sum(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        if let Ok(bytes) = <[u8; 8]>::try_from(c) {
            acc = add_carry(acc, u64::from_be_bytes(bytes));
        }
    }
    let mut words = chunks.remainder().chunks_exact(2);
    for w in &mut words {
        acc = add_carry(acc, u64::from(u16::from_be_bytes([w[0], w[1]])));
    }
    if let [last] = words.remainder() {
        acc = add_carry(acc, u64::from(*last) << 8);
    }
    fold64(acc)
}

/// Folds a 32-bit accumulator of 16-bit words into 16 bits with end-around carry.
#[inline(always)]
pub fn fold(sum: u32) -> u16 {
    let (t, c) = (sum as u16).overflowing_add((sum >> 16) as u16);
    // Cannot overflow: when `c` is set, t <= 2^16 - 2.
    t + u16::from(c)
}

/// One's complement sum of several sums (e.g. pseudo header + header + payload).
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    let mut acc: u64 = 0;
    for &s in sums {
        acc += u64::from(s);
    }
    fold64(acc)
}

/// The checksum to store: the complement of the sum.
#[inline]
pub fn finish(sum: u16) -> u16 {
    !sum
}

/// Sum of the IPv4 pseudo header (RFC 793/768): addresses, zero + protocol, upper-layer length.
#[inline]
pub fn pseudo_header_v4(src: &[u8; 4], dst: &[u8; 4], protocol: u8, len: u32) -> u16 {
    let acc = u64::from(u32::from_be_bytes(*src))
        + u64::from(u32::from_be_bytes(*dst))
        + u64::from(protocol)
        + u64::from(len);
    fold64(acc)
}

/// Sum of the IPv6 pseudo header (RFC 8200 §8.1): addresses, 32-bit length, next header.
#[inline]
pub fn pseudo_header_v6(src: &[u8; 16], dst: &[u8; 16], next_header: u8, len: u32) -> u16 {
    fold64(addr_v6_acc(src) + addr_v6_acc(dst) + u64::from(next_header) + u64::from(len))
}

/// Sum of an IPv6 address's four 32-bit words (< 2^34, so no carry is lost).
#[inline]
fn addr_v6_acc(a: &[u8; 16]) -> u64 {
    let v = u128::from_be_bytes(*a);
    u64::from((v >> 96) as u32)
        + u64::from((v >> 64) as u32)
        + u64::from((v >> 32) as u32)
        + u64::from(v as u32)
}

/// RFC 1624 eqn. 3: the checksum after a 16-bit word covered by `csum` changes from `old` to
/// `new`: `HC' = ~(~HC + ~m + m')`. Unlike eqn. 2 it never turns a correct `0x0000` into the
/// equivalent-but-different `0xFFFF` (see RFC 1624 §4).
#[inline]
pub fn update_u16(csum: u16, old: u16, new: u16) -> u16 {
    !fold(u32::from(!csum) + u32::from(!old) + u32::from(new))
}

/// [`update_u16`] for an aligned 32-bit field (e.g. an IPv4 address, a TCP sequence number).
#[inline]
pub fn update_u32(csum: u16, old: u32, new: u32) -> u16 {
    let acc = u32::from(!csum)
        + u32::from(!(old >> 16) as u16)
        + u32::from(!(old as u16))
        + (new >> 16)
        + (new & 0xffff);
    !fold(acc)
}

/// [`update_u16`] for a field of several 16-bit words, such as an IPv6 address. `old` and
/// `new` must have the same length and start at an even offset of the covered data; an odd
/// length counts the last byte as the high byte of a word (correct only at the covered data's
/// end). Only the common length is used if the lengths differ.
#[inline]
pub fn update_bytes(csum: u16, old: &[u8], new: &[u8]) -> u16 {
    debug_assert_eq!(old.len(), new.len());
    let mut acc = u64::from(!csum);
    let mut o = old.chunks(2);
    let mut n = new.chunks(2);
    while let (Some(a), Some(b)) = (o.next(), n.next()) {
        let wa = u16::from_be_bytes([a[0], a.get(1).copied().unwrap_or(0)]);
        let wb = u16::from_be_bytes([b[0], b.get(1).copied().unwrap_or(0)]);
        acc += u64::from(!wa) + u64::from(wb);
    }
    !fold64(acc)
}

/// Applies an incremental update `f` to a UDP checksum with UDP's zero rule: a zero checksum
/// ("none", IPv4) stays zero, and a result of zero is written as `0xFFFF`.
///
/// ```
/// use fiberlb_dataplane::wire::checksum::{udp_update, update_u16};
/// assert_eq!(udp_update(0, |c| update_u16(c, 80, 8080)), 0);
/// ```
#[inline]
pub fn udp_update(csum: u16, f: impl FnOnce(u16) -> u16) -> u16 {
    if csum == 0 {
        return 0;
    }
    match f(csum) {
        0 => 0xffff,
        c => c,
    }
}

/// [`update_u16`] with UDP's zero rule (see [`udp_update`]).
#[inline]
pub fn udp_update_u16(csum: u16, old: u16, new: u16) -> u16 {
    udp_update(csum, |c| update_u16(c, old, new))
}

/// [`update_u32`] with UDP's zero rule (see [`udp_update`]).
#[inline]
pub fn udp_update_u32(csum: u16, old: u32, new: u32) -> u16 {
    udp_update(csum, |c| update_u32(c, old, new))
}

/// [`update_bytes`] with UDP's zero rule (see [`udp_update`]).
#[inline]
pub fn udp_update_bytes(csum: u16, old: &[u8], new: &[u8]) -> u16 {
    udp_update(csum, |c| update_bytes(c, old, new))
}

/// The UDP checksum to store for a full `sum`: its complement, with `0` sent as `0xFFFF`.
#[inline]
pub fn udp_finish(sum: u16) -> u16 {
    match finish(sum) {
        0 => 0xffff,
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Word-by-word reference implementation straight from RFC 1071.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for w in data.chunks(2) {
            let word = u16::from_be_bytes([w[0], w.get(1).copied().unwrap_or(0)]);
            acc += u32::from(word);
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        assert_eq!(
            ones_complement_sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn classic_ipv4_header() {
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(finish(ones_complement_sum(&hdr)), 0xb861);
        let mut with = hdr;
        with[10] = 0xb8;
        with[11] = 0x61;
        assert_eq!(ones_complement_sum(&with), 0xffff);
    }

    #[test]
    fn odd_length_and_empty() {
        assert_eq!(ones_complement_sum(&[]), 0);
        assert_eq!(ones_complement_sum(&[0xab]), 0xab00);
        assert_eq!(ones_complement_sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(ones_complement_sum(&[0xff; 9]), reference_sum(&[0xff; 9]));
    }

    #[test]
    fn rfc1624_section4_example() {
        // Sum of other octets 0xCD7A, m = 0x5555 -> m' = 0x3285. HC = 0xDD2F; the right new
        // checksum is 0x0000 (eqn 2 would give 0xFFFF).
        let hc = finish(combine(&[0xcd7a, 0x5555]));
        assert_eq!(hc, 0xdd2f);
        assert_eq!(update_u16(hc, 0x5555, 0x3285), 0x0000);
        assert_eq!(update_u32(hc, 0x0000_5555, 0x0000_3285), 0x0000);
        assert_eq!(update_bytes(hc, &[0x55, 0x55], &[0x32, 0x85]), 0x0000);
        // And back again, starting from a checksum of 0x0000.
        assert_eq!(update_u16(0x0000, 0x3285, 0x5555), 0xdd2f);
        assert_eq!(finish(combine(&[0xcd7a, 0x3285])), 0x0000);
    }

    #[test]
    fn pseudo_headers_match_plain_sums() {
        let (s, d) = ([10, 0, 0, 1], [192, 168, 1, 200]);
        let mut buf = Vec::new();
        buf.extend_from_slice(&s);
        buf.extend_from_slice(&d);
        buf.extend_from_slice(&[0, 17, 0x12, 0x34]);
        assert_eq!(pseudo_header_v4(&s, &d, 17, 0x1234), reference_sum(&buf));

        let s6 = [0xffu8; 16];
        let d6: [u8; 16] = core::array::from_fn(|i| (i * 37) as u8);
        let mut buf = Vec::new();
        buf.extend_from_slice(&s6);
        buf.extend_from_slice(&d6);
        buf.extend_from_slice(&0x0001_0203u32.to_be_bytes());
        buf.extend_from_slice(&[0, 0, 0, 6]);
        assert_eq!(
            pseudo_header_v6(&s6, &d6, 6, 0x0001_0203),
            reference_sum(&buf)
        );
    }

    #[test]
    fn udp_zero_rules() {
        assert_eq!(udp_update_u16(0, 1, 2), 0);
        // 0xdd2f updated as in RFC 1624 gives 0x0000, which UDP must send as 0xFFFF.
        assert_eq!(udp_update_u16(0xdd2f, 0x5555, 0x3285), 0xffff);
        assert_eq!(udp_finish(0xffff), 0xffff);
        assert_eq!(udp_finish(0x1234), !0x1234);
    }

    /// The folds as first written (one 16-bit round at a time), which the add-with-carry
    /// forms must equal bit for bit.
    fn reference_fold64(acc: u64) -> u16 {
        let mut s = (acc >> 32) + (acc & 0xffff_ffff);
        s = (s >> 16) + (s & 0xffff);
        s = (s >> 16) + (s & 0xffff);
        s = (s >> 16) + (s & 0xffff);
        s as u16
    }

    #[test]
    fn folds_at_the_edges() {
        for acc in [
            0,
            1,
            0xffff,
            0x1_0000,
            0xffff_ffff,
            0x1_0000_0000,
            u64::MAX,
            u64::MAX - 1,
        ] {
            assert_eq!(fold64(acc), reference_fold64(acc), "{acc:#x}");
        }
        for sum in [0, 1, 0xffff, 0x1_0000, 0x1_fffe, 0xffff_ffff, 0xfffe_ffff] {
            assert_eq!(fold(sum), reference_fold64(u64::from(sum)), "{sum:#x}");
        }
    }

    proptest! {
        #[test]
        fn folds_match_reference(acc: u64, sum: u32) {
            prop_assert_eq!(fold64(acc), reference_fold64(acc));
            prop_assert_eq!(fold(sum), reference_fold64(u64::from(sum)));
        }

        #[test]
        fn fast_sum_matches_reference(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(ones_complement_sum(&data), reference_sum(&data));
        }

        #[test]
        fn pseudo_v6_matches_reference(s in any::<[u8; 16]>(), d in any::<[u8; 16]>(), nh: u8, len: u32) {
            let mut buf = Vec::new();
            buf.extend_from_slice(&s);
            buf.extend_from_slice(&d);
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(&[0, 0, 0, nh]);
            prop_assert_eq!(pseudo_header_v6(&s, &d, nh, len), reference_sum(&buf));
        }

        /// Data whose first word is non-zero (as in every real header) so that the checksum
        /// has exactly one right value; change one word, one u32 or one 16-byte field.
        #[test]
        fn incremental_equals_full(
            mut data in proptest::collection::vec(any::<u8>(), 32..96),
            at in 0usize..4,
            new16: u16,
            new32: u32,
            new_bytes in any::<[u8; 16]>(),
            force in 0u8..3,
        ) {
            data[0] |= 0x40;
            // The checksum lives in bytes 2..4; fields change from offset 4.
            data[2] = 0;
            data[3] = 0;
            // Steer towards the 0x0000/0xFFFF corner: make the other words sum to 0xFFFF - m'.
            let csum = finish(ones_complement_sum(&data));
            data[2..4].copy_from_slice(&csum.to_be_bytes());
            let off = 4 + at * 2;

            let old16 = u16::from_be_bytes([data[off], data[off + 1]]);
            let new16 = if force == 1 {
                // Make the new full sum exactly 0xFFFF, i.e. new checksum 0x0000.
                let mut rest = data.clone();
                rest[2] = 0; rest[3] = 0; rest[off] = 0; rest[off + 1] = 0;
                !ones_complement_sum(&rest)
            } else { new16 };
            let mut d16 = data.clone();
            d16[off..off + 2].copy_from_slice(&new16.to_be_bytes());
            d16[2] = 0; d16[3] = 0;
            let full = finish(ones_complement_sum(&d16));
            prop_assert_eq!(update_u16(csum, old16, new16), full);
            prop_assert_eq!(update_bytes(csum, &old16.to_be_bytes(), &new16.to_be_bytes()), full);

            let old32 = u32::from_be_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]]);
            let mut d32 = data.clone();
            d32[off..off + 4].copy_from_slice(&new32.to_be_bytes());
            d32[2] = 0; d32[3] = 0;
            prop_assert_eq!(update_u32(csum, old32, new32), finish(ones_complement_sum(&d32)));

            let mut db = data.clone();
            let old_bytes: Vec<u8> = data[off..off + 16].to_vec();
            db[off..off + 16].copy_from_slice(&new_bytes);
            db[2] = 0; db[3] = 0;
            prop_assert_eq!(update_bytes(csum, &old_bytes, &new_bytes), finish(ones_complement_sum(&db)));
        }
    }
}
