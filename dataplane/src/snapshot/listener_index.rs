//! The listener lookup of the per-packet path: (VIP, port, protocol, family) -> listener
//! index, in a small open-addressing table built with the snapshot and never changed.
//!
//! It answers exactly what [`super::Snapshot::listener_map`] answers (built from the same
//! pairs; a test holds them equal), for about half the instructions of the general hash map:
//! a key is three words (address, and port | protocol | family), hashed by one
//! multiply-shift, and in a table at most a quarter full a lookup usually reads one entry
//! (32 bytes per slot: 4096 listeners take 512 KiB). The first two probes are inline; a
//! longer chain continues out of line.

// Per-packet code: it never panics (docs/architecture.md, "Rules"), as in `pipeline/`.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented
)]

use super::ListenerKey;

/// One slot: the key as two words and the listener index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Slot {
    addr: u128,
    /// port | protocol << 16 | v6 << 24 | 1 << 31 (the occupied bit); 0 for an empty slot.
    meta: u32,
    listener: u32,
}

const OCCUPIED: u32 = 1 << 31;

/// Fibonacci hashing multiplier (2^64 / golden ratio).
const K: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline(always)]
fn words(key: &ListenerKey) -> (u128, u32) {
    (
        u128::from_ne_bytes(key.addr),
        u32::from(key.port) | u32::from(key.proto) << 16 | u32::from(key.v6) << 24 | OCCUPIED,
    )
}

/// Listener index by key, for the per-packet path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerIndex {
    /// A power of two of at least four times the number of keys (so there is always an
    /// empty slot to end a probe, and few keys share their first slot).
    slots: Box<[Slot]>,
    /// 64 - log2(slots.len()).
    shift: u32,
}

impl Default for ListenerIndex {
    fn default() -> Self {
        ListenerIndex::new(std::iter::empty())
    }
}

impl ListenerIndex {
    /// An index of `pairs` (a key given twice keeps its last index, as a map insert would).
    pub fn new(pairs: impl IntoIterator<Item = (ListenerKey, u32)>) -> Self {
        let pairs: Vec<(ListenerKey, u32)> = pairs.into_iter().collect();
        let len = (pairs.len() * 4).next_power_of_two().max(4);
        let mut index = ListenerIndex {
            slots: vec![Slot::default(); len].into_boxed_slice(),
            shift: 64 - len.trailing_zeros(),
        };
        for (key, listener) in pairs {
            index.insert(&key, listener);
        }
        index
    }

    #[inline(always)]
    fn home(&self, addr: u128, meta: u32) -> usize {
        let folded = addr as u64 ^ ((addr >> 64) as u64).rotate_left(32) ^ u64::from(meta);
        // shift >= 2 (at least four slots): the result is below slots.len().
        (folded.wrapping_mul(K) >> self.shift) as usize
    }

    fn insert(&mut self, key: &ListenerKey, listener: u32) {
        let (addr, meta) = words(key);
        let mask = self.slots.len() - 1;
        let mut i = self.home(addr, meta);
        for _ in 0..self.slots.len() {
            let Some(s) = self.slots.get_mut(i) else {
                return;
            };
            if s.meta == 0 || (s.meta == meta && s.addr == addr) {
                *s = Slot {
                    addr,
                    meta,
                    listener,
                };
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// The listener index of `key`, if it has one.
    #[inline]
    pub fn get(&self, key: &ListenerKey) -> Option<u32> {
        let (addr, meta) = words(key);
        let i = self.home(addr, meta);
        // The first two probes inline (in a table at most a quarter full, usually the only
        // ones); the slot after the last one is slot 0.
        let s = self.slots.get(i)?;
        if s.meta == meta && s.addr == addr {
            return Some(s.listener);
        }
        if s.meta == 0 {
            return None;
        }
        let i = (i + 1) & (self.slots.len() - 1);
        let s = self.slots.get(i)?;
        if s.meta == meta && s.addr == addr {
            return Some(s.listener);
        }
        if s.meta == 0 {
            return None;
        }
        self.probe_on(i, addr, meta)
    }

    /// [`Self::get`] after its inline probes found other keys (`first`: the last one probed).
    #[inline(never)]
    fn probe_on(&self, first: usize, addr: u128, meta: u32) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut i = first;
        // Bounded by the table size; an empty slot (there always is one) ends it sooner.
        for _ in 1..self.slots.len() {
            i = (i + 1) & mask;
            let s = self.slots.get(i)?;
            if s.meta == meta && s.addr == addr {
                return Some(s.listener);
            }
            if s.meta == 0 {
                return None;
            }
        }
        None
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.meta != 0).count()
    }

    /// True when there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn key(a: u8, b: u8, port: u16, proto: u8, v6: bool) -> ListenerKey {
        let mut addr = [0u8; 16];
        addr[0] = 10;
        addr[3] = a;
        if v6 {
            addr[15] = b;
        }
        ListenerKey {
            addr,
            port,
            proto,
            v6,
        }
    }

    #[test]
    fn empty_index_finds_nothing() {
        let i = ListenerIndex::default();
        assert!(i.is_empty());
        assert_eq!(i.get(&key(1, 0, 80, 6, false)), None);
        assert_eq!(i.get(&key(0, 0, 0, 0, false)), None);
    }

    proptest! {
        /// The same answers as a hash map of the same pairs, for keys in and out of it.
        #[test]
        fn answers_like_a_map(
            keys in proptest::collection::vec((0u8..8, 0u8..4, 78u16..84, prop_oneof![Just(6u8), Just(17u8)], any::<bool>()), 0..64),
            probes in proptest::collection::vec((0u8..8, 0u8..4, 78u16..84, prop_oneof![Just(6u8), Just(17u8)], any::<bool>()), 0..64),
        ) {
            let pairs: Vec<(ListenerKey, u32)> = keys
                .iter()
                .enumerate()
                .map(|(i, &(a, b, p, pr, v6))| (key(a, b, p, pr, v6), i as u32))
                .collect();
            let map: HashMap<ListenerKey, u32> = pairs.iter().copied().collect();
            let index = ListenerIndex::new(pairs.iter().copied());
            prop_assert_eq!(index.len(), map.len());
            for &(a, b, p, pr, v6) in keys.iter().chain(&probes) {
                let k = key(a, b, p, pr, v6);
                prop_assert_eq!(index.get(&k), map.get(&k).copied());
            }
        }
    }
}
