//! The seeded flow hash.
//!
//! Every fiberlb node behind the same ECMP group must send a given flow to the same backend, so
//! the hash is a fixed, specified function (XXH3-64) keyed by a configured seed — never a
//! per-process random state. The control plane uses the same function to answer "which backend
//! does this 5-tuple get".

use std::net::IpAddr;

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Seed used when the configuration names none. Nodes that share traffic must share the seed.
pub const DEFAULT_SEED: u64 = 0x6669_6265_726c_6221; // "fiberlb!"

/// XXH3's default secret, bytes 24-31 xor bytes 32-39 and bytes 40-47 xor bytes 48-55
/// (little-endian): what its 9-16-byte path mixes the seed into (`xxh3_64_9to16`).
const SECRET_FLIP_LO: u64 = 0x6782_737b_ea42_39b9;
const SECRET_FLIP_HI: u64 = 0xaf56_bc3b_0996_523a;

/// Hashes flows with a fixed seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowHasher {
    seed: u64,
    /// The seed mixed with the secret as XXH3-64 does for a 9-16-byte input, computed once
    /// instead of per packet (see [`Self::hash_v4_words`]).
    flip_lo: u64,
    flip_hi: u64,
}

impl Default for FlowHasher {
    fn default() -> Self {
        FlowHasher::new(DEFAULT_SEED)
    }
}

impl FlowHasher {
    /// A hasher keyed by `seed`.
    pub const fn new(seed: u64) -> Self {
        FlowHasher {
            seed,
            flip_lo: SECRET_FLIP_LO.wrapping_add(seed),
            flip_hi: SECRET_FLIP_HI.wrapping_sub(seed),
        }
    }

    /// The seed.
    pub const fn seed(&self) -> u64 {
        self.seed
    }

    /// Hash of an IPv4 5-tuple (addresses in network byte order as 4-byte arrays): XXH3-64
    /// of the 13-byte key src|dst|sport|dport|proto (ports big-endian).
    #[inline]
    pub fn hash_v4(&self, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, proto: u8) -> u64 {
        let [s0, s1, s2, s3] = src;
        let [d0, d1, d2, d3] = dst;
        let [sp0, sp1] = sport.to_be_bytes();
        let [dp0, dp1] = dport.to_be_bytes();
        self.hash_v4_words(
            u64::from_le_bytes([s0, s1, s2, s3, d0, d1, d2, d3]),
            u64::from_le_bytes([d1, d2, d3, sp0, sp1, dp0, dp1, proto]),
        )
    }

    /// [`Self::hash_v4`] of the key given as the two little-endian words XXH3 reads from it:
    /// `lo` = key bytes 0-7 (src, dst), `hi` = key bytes 5-12 (dst's last three bytes, sport,
    /// dport, proto). An IPv4 frame without options holds both at fixed offsets (all but the
    /// protocol byte of `hi`), so the pipeline reads them straight from the frame: no key is
    /// assembled in memory. The same value as `xxh3_64_with_seed(key, seed)` (tested).
    #[inline(always)]
    pub fn hash_v4_words(&self, lo: u64, hi: u64) -> u64 {
        // XXH3-64's path for 9-16 bytes (len 13), with the seed's flips computed in `new`.
        let lo = lo ^ self.flip_lo;
        let hi = hi ^ self.flip_hi;
        let m = u128::from(lo) * u128::from(hi);
        let acc = 13u64
            .wrapping_add(lo.swap_bytes())
            .wrapping_add(hi)
            .wrapping_add(m as u64 ^ (m >> 64) as u64);
        // XXH3's avalanche.
        let acc = (acc ^ acc >> 37).wrapping_mul(0x1656_6791_9e37_79f9);
        acc ^ acc >> 32
    }

    /// Hash of an IPv6 5-tuple.
    #[inline]
    pub fn hash_v6(&self, src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, proto: u8) -> u64 {
        let mut key = [0u8; 37];
        key[0..16].copy_from_slice(&src);
        key[16..32].copy_from_slice(&dst);
        key[32..34].copy_from_slice(&sport.to_be_bytes());
        key[34..36].copy_from_slice(&dport.to_be_bytes());
        key[36] = proto;
        xxh3_64_with_seed(&key, self.seed)
    }

    /// Hash of a 5-tuple of either family. Mixed families hash as IPv6 with IPv4-mapped
    /// addresses (never produced by a real packet).
    pub fn hash(&self, src: IpAddr, dst: IpAddr, sport: u16, dport: u16, proto: u8) -> u64 {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                self.hash_v4(s.octets(), d.octets(), sport, dport, proto)
            }
            (s, d) => self.hash_v6(to_v6(s), to_v6(d), sport, dport, proto),
        }
    }

    /// Hash of a 3-tuple (ports zero): used for IP fragments, which carry no ports after the
    /// first, and for pools with source-IP affinity.
    pub fn hash_3tuple(&self, src: IpAddr, dst: IpAddr, proto: u8) -> u64 {
        self.hash(src, dst, 0, 0, proto)
    }
}

fn to_v6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// Maps a flow hash onto a table of `size` slots (a Maglev table).
///
/// Uses the high 32 bits with Lemire's multiply-shift range reduction instead of `%`: one
/// multiplication instead of a 64-bit division on the per-packet path, and no correlation with
/// the flow table, which indexes by the low bits. Every node and the control plane's `Lookup`
/// must use this same function.
#[inline]
pub const fn table_index(hash: u64, size: u32) -> u32 {
    (((hash >> 32) * size as u64) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_output_for_fixed_seed() {
        // Golden value: changing the hash function or key layout silently breaks ECMP
        // agreement between nodes running different versions, so it must be deliberate.
        // Values from an independent XXH3 implementation (Python `xxhash` 4.1:
        // `xxh3_64_intdigest(key, seed)` over the documented key layout).
        let h = FlowHasher::new(DEFAULT_SEED);
        let a = h.hash_v4([10, 0, 0, 1], [10, 10, 0, 100], 40000, 80, 6);
        assert_eq!(a, 0x21a8_b9de_176e_cf0a);
        let v6 = h.hash(
            "2001:db8::1".parse().unwrap(),
            "fd00::100".parse().unwrap(),
            40000,
            443,
            17,
        );
        assert_eq!(v6, 0x675b_dd20_ab2e_1b8b);
        assert_eq!(
            a,
            h.hash(
                "10.0.0.1".parse().unwrap(),
                "10.10.0.100".parse().unwrap(),
                40000,
                80,
                6
            )
        );
        assert_ne!(
            a,
            FlowHasher::new(1).hash_v4([10, 0, 0, 1], [10, 10, 0, 100], 40000, 80, 6)
        );
        assert_ne!(a, h.hash_v4([10, 0, 0, 1], [10, 10, 0, 100], 40001, 80, 6));
    }

    proptest::proptest! {
        /// `hash_v4` (XXH3's 9-16-byte path, written out with the seed's flips computed once)
        /// is XXH3-64 of the documented 13-byte key, for every key and seed.
        #[test]
        fn hash_v4_is_xxh3_of_the_key(
            seed: u64, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, proto: u8
        ) {
            let mut key = [0u8; 13];
            key[..4].copy_from_slice(&src);
            key[4..8].copy_from_slice(&dst);
            key[8..10].copy_from_slice(&sport.to_be_bytes());
            key[10..12].copy_from_slice(&dport.to_be_bytes());
            key[12] = proto;
            proptest::prop_assert_eq!(
                FlowHasher::new(seed).hash_v4(src, dst, sport, dport, proto),
                xxh3_64_with_seed(&key, seed)
            );
        }
    }
}
