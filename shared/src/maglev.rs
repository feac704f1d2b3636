//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
//! Balancer", NSDI 2016, section 3.4): the lookup-table builder.
//!
//! A pool's table has a prime number `M` of slots; a flow goes to `table[hash % M]`. Each backend
//! has a permutation of the slots, `offset + j * skip (mod M)`, derived from two independent
//! seeded hashes of its stable id (address and port). Backends take turns claiming their next
//! free preferred slot until the table is full, which gives near-equal shares and moves few slots
//! when a backend comes or goes.
//!
//! Every fiberlb node behind the same ECMP group must build the same table for the same backend
//! set, so the hashes, seeds and byte encoding below are part of the protocol (the golden tests
//! pin them), and backends are visited in `(address, port)` order whatever order the caller
//! lists them in.
//!
//! Weights: in each round every backend adds its weight to a credit and claims one slot when the
//! credit reaches the largest weight (Katran's `MaglevV2` scheme), so shares follow weights within
//! one slot per backend, and equal weights reduce to the paper's plain round-robin.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::IpAddr;

use xxhash_rust::xxh64::xxh64;

/// Default lookup table size (prime). The paper recommends `M` at least 100 times the number of
/// backends so that shares differ by about 1% at most.
pub const DEFAULT_TABLE_SIZE: u32 = 65537;

/// Smallest accepted table size: the paper's worked example (Table 1) uses 7.
pub const MIN_TABLE_SIZE: u32 = 7;

/// Largest accepted table size: the largest prime below 2^24. A table of this size takes 64 MiB
/// (one `u32` per slot) and is built in about a second; anything larger is a configuration
/// mistake. It also keeps `slot + skip` far from `u32` overflow in the population loop.
pub const MAX_TABLE_SIZE: u32 = 16_777_213;

/// Table slot that refers to no backend: every slot is `EMPTY` when no backend has weight > 0.
pub const EMPTY: u32 = u32::MAX;

/// Seed of the hash that gives a backend's offset. Part of the cross-node protocol: never change.
const OFFSET_SEED: u64 = 0x6d61_676c_6576_6f66; // "maglevof"
/// Seed of the hash that gives a backend's skip. Part of the cross-node protocol: never change.
const SKIP_SEED: u64 = 0x6d61_676c_6576_736b; // "maglevsk"

/// Family tags of the canonical backend encoding, so that no IPv4 key equals an IPv6 one.
const TAG_V4: u8 = 4;
const TAG_V6: u8 = 6;

/// The weighted round loop visits every backend each round; when the largest weight dwarfs the
/// average, most visits claim nothing and the heap schedule (same order, O(M log N)) is cheaper.
/// This bounds the round loop's visits to this many per slot.
const ROUND_LOOP_VISITS_PER_SLOT: u64 = 16;

/// Why a table cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MaglevError {
    /// The size is not prime, so some skips would not visit every slot.
    #[error("table size {0} is not prime; use a prime such as 65537 (the default) or 655373")]
    NotPrime(u32),
    /// The size is below [`MIN_TABLE_SIZE`].
    #[error("table size {size} is too small; use a prime of at least {min} (65537 by default)")]
    TooSmall {
        /// The size asked for.
        size: u32,
        /// [`MIN_TABLE_SIZE`].
        min: u32,
    },
    /// The size is above [`MAX_TABLE_SIZE`].
    #[error("table size {size} is too large; use a prime of at most {max}")]
    TooLarge {
        /// The size asked for.
        size: u32,
        /// [`MAX_TABLE_SIZE`].
        max: u32,
    },
    /// Two backends share an address and port, so they would share a permutation.
    #[error("backend {address} port {port} is listed twice; list each address and port once")]
    DuplicateBackend {
        /// The repeated address.
        address: IpAddr,
        /// The repeated port.
        port: u16,
    },
    /// More backends with weight > 0 than slots: some could never get a slot.
    #[error(
        "{backends} backends with weight > 0 do not fit in a table of {size} slots; \
         use a table size at least 100 times the number of backends"
    )]
    TooManyBackends {
        /// Backends with weight > 0 (or all backends, when they cannot be indexed by `u32`).
        backends: usize,
        /// The table size.
        size: u32,
    },
    /// Explicit permutation parameters out of range (only from [`build_table_from_params`]).
    #[error(
        "permutation offset {offset} / skip {skip} invalid for table size {size}; \
         need offset < size and 1 <= skip < size"
    )]
    BadPermutation {
        /// The offset given.
        offset: u32,
        /// The skip given.
        skip: u32,
        /// The table size.
        size: u32,
    },
}

/// A backend as the table builder sees it: its stable id (address and port) and its weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MaglevBackend {
    /// The backend's address; part of its stable id.
    pub address: IpAddr,
    /// The backend's port; part of its stable id.
    pub port: u16,
    /// Relative share of the table; 0 means no slots.
    pub weight: u32,
}

/// Checks a table size: prime, and within [`MIN_TABLE_SIZE`]..=[`MAX_TABLE_SIZE`].
///
/// # Errors
/// [`MaglevError::TooSmall`], [`MaglevError::TooLarge`] or [`MaglevError::NotPrime`].
pub fn check_table_size(size: u32) -> Result<(), MaglevError> {
    if size < MIN_TABLE_SIZE {
        return Err(MaglevError::TooSmall {
            size,
            min: MIN_TABLE_SIZE,
        });
    }
    if size > MAX_TABLE_SIZE {
        return Err(MaglevError::TooLarge {
            size,
            max: MAX_TABLE_SIZE,
        });
    }
    if !is_prime(size) {
        return Err(MaglevError::NotPrime(size));
    }
    Ok(())
}

/// Trial division; sizes are below 2^24, so at most ~2000 odd divisors.
fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let n = u64::from(n);
    let mut d = 3u64;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}

/// The backend's permutation of a table of `size` slots: it prefers slots `offset`,
/// `offset + skip`, `offset + 2 * skip`, ... (mod `size`).
///
/// Both come from XXH64 over a canonical encoding of the backend's id — a family tag (4 or 6),
/// the address's 4 or 16 bytes, the port big-endian — under two fixed seeds, so every node
/// computes the same permutation. An IPv4-mapped IPv6 address is a different id from the IPv4
/// address. `offset = h1 % size`, `skip = h2 % (size - 1) + 1`.
///
/// Meaningful for sizes that pass [`check_table_size`]; never panics (sizes below 2 give
/// offset 0, skip 1).
pub fn permutation_params(address: IpAddr, port: u16, size: u32) -> (u32, u32) {
    let mut key = [0u8; 19];
    let len = match address {
        IpAddr::V4(a) => {
            key[0] = TAG_V4;
            key[1..5].copy_from_slice(&a.octets());
            key[5..7].copy_from_slice(&port.to_be_bytes());
            7
        }
        IpAddr::V6(a) => {
            key[0] = TAG_V6;
            key[1..17].copy_from_slice(&a.octets());
            key[17..19].copy_from_slice(&port.to_be_bytes());
            19
        }
    };
    let key = &key[..len];
    let m = u64::from(size.max(2));
    let offset = xxh64(key, OFFSET_SEED) % m;
    let skip = xxh64(key, SKIP_SEED) % (m - 1) + 1;
    // Both are below `m`, which came from a u32.
    (offset as u32, skip as u32)
}

/// Builds the lookup table: `size` slots, each the index in `backends` of the backend that owns
/// it, or [`EMPTY`] in every slot when no backend has weight > 0.
///
/// The result depends only on the set of backends (address, port, weight), not on their order in
/// the slice: the builder visits them in `(address, port)` order and only the returned indices
/// follow the caller's order. Backends with weight 0 get no slots. Each backend with weight
/// `w` gets about `size * w / total_weight` slots (within one slot per round-off); equal weights
/// give every backend `floor(size / n)` or `ceil(size / n)` slots.
///
/// # Errors
/// A bad `size` (see [`check_table_size`]), [`MaglevError::DuplicateBackend`] when two backends
/// share an address and port, [`MaglevError::TooManyBackends`] when more backends have
/// weight > 0 than there are slots.
pub fn build_table(backends: &[MaglevBackend], size: u32) -> Result<Vec<u32>, MaglevError> {
    check_table_size(size)?;
    // Indices must fit in a slot and differ from EMPTY.
    if u32::try_from(backends.len()).map_or(true, |n| n == u32::MAX) {
        return Err(MaglevError::TooManyBackends {
            backends: backends.len(),
            size,
        });
    }
    let mut order: Vec<u32> = (0..backends.len() as u32).collect();
    order.sort_unstable_by_key(|&i| {
        let b = &backends[i as usize];
        (b.address, b.port)
    });
    for pair in order.windows(2) {
        let (a, b) = (&backends[pair[0] as usize], &backends[pair[1] as usize]);
        if (a.address, a.port) == (b.address, b.port) {
            return Err(MaglevError::DuplicateBackend {
                address: a.address,
                port: a.port,
            });
        }
    }
    let entries: Vec<Entry> = order
        .iter()
        .filter_map(|&index| {
            let b = &backends[index as usize];
            (b.weight > 0).then(|| {
                let (offset, skip) = permutation_params(b.address, b.port, size);
                Entry {
                    offset,
                    skip,
                    weight: b.weight,
                    index,
                }
            })
        })
        .collect();
    if entries.len() > size as usize {
        return Err(MaglevError::TooManyBackends {
            backends: entries.len(),
            size,
        });
    }
    Ok(populate(&entries, size, Schedule::Auto))
}

/// Builds a table from explicit permutation parameters `(offset, skip, weight)`, visited in the
/// given order; slot values are positions in `params`. For golden tests (the paper's Table 1)
/// and comparisons with other implementations; not part of the stable API.
///
/// # Errors
/// A bad `size`, [`MaglevError::BadPermutation`] for an offset `>= size` or a skip outside
/// `1..size`, [`MaglevError::TooManyBackends`] for more entries with weight > 0 than slots.
#[doc(hidden)]
pub fn build_table_from_params(
    params: &[(u32, u32, u32)],
    size: u32,
) -> Result<Vec<u32>, MaglevError> {
    check_table_size(size)?;
    let mut entries = Vec::with_capacity(params.len());
    for (index, &(offset, skip, weight)) in params.iter().enumerate() {
        let index = u32::try_from(index).ok().filter(|&i| i != EMPTY).ok_or(
            MaglevError::TooManyBackends {
                backends: params.len(),
                size,
            },
        )?;
        if offset >= size || skip == 0 || skip >= size {
            return Err(MaglevError::BadPermutation { offset, skip, size });
        }
        if weight > 0 {
            entries.push(Entry {
                offset,
                skip,
                weight,
                index,
            });
        }
    }
    if entries.len() > size as usize {
        return Err(MaglevError::TooManyBackends {
            backends: entries.len(),
            size,
        });
    }
    Ok(populate(&entries, size, Schedule::Auto))
}

/// One backend with weight > 0, in visiting order.
#[derive(Clone, Copy, Debug)]
struct Entry {
    offset: u32,
    skip: u32,
    weight: u32,
    /// What its slots hold: its index in the caller's slice.
    index: u32,
}

/// How turns are scheduled; both give the same table (tested), they differ only in cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Schedule {
    Auto,
    Rounds,
    Heap,
}

/// The population loop of the paper, with weights. `entries` must be non-overlapping in id,
/// have weight > 0, offset < size, 1 <= skip < size, and number at most `size`.
fn populate(entries: &[Entry], size: u32, schedule: Schedule) -> Vec<u32> {
    populate_with(entries, size, schedule, default_endgame(size))
}

/// [`populate`] with the endgame threshold exposed, so tests can cover it from any fill level.
fn populate_with(entries: &[Entry], size: u32, schedule: Schedule, endgame_at: u32) -> Vec<u32> {
    let mut table = vec![EMPTY; size as usize];
    let Some(max_weight) = entries.iter().map(|e| e.weight).max() else {
        return table;
    };
    let total_weight: u64 = entries.iter().map(|e| u64::from(e.weight)).sum();
    // Rounds needed ~ size * max / total; each round visits every entry.
    let visits =
        (u64::from(size) * u64::from(max_weight)).div_ceil(total_weight) * entries.len() as u64;
    let schedule = match schedule {
        Schedule::Auto if visits <= ROUND_LOOP_VISITS_PER_SLOT * u64::from(size) => {
            Schedule::Rounds
        }
        Schedule::Auto => Schedule::Heap,
        s => s,
    };
    let mut filler = Filler::new(entries, size, &mut table, endgame_at);
    if max_weight == entries[0].weight && entries.iter().all(|e| e.weight == max_weight) {
        // Equal weights: the paper's loop, every backend claims once per round.
        'rounds: loop {
            for e in 0..entries.len() {
                if filler.claim(e) {
                    break 'rounds;
                }
            }
        }
    } else if schedule == Schedule::Rounds {
        // Each round an entry gains its weight in credit and claims a slot when the credit
        // reaches the largest weight; weight <= max, so at most one claim per round.
        let max = u64::from(max_weight);
        let mut credit = vec![0u64; entries.len()];
        'rounds: loop {
            for (e, (credit, entry)) in credit.iter_mut().zip(entries).enumerate() {
                *credit += u64::from(entry.weight);
                if *credit >= max {
                    *credit -= max;
                    if filler.claim(e) {
                        break 'rounds;
                    }
                }
            }
        }
    } else {
        // The same claims in the same order: the k-th claim of an entry of weight w happens in
        // round ceil(k * max / w) (the first round whose credit reaches k * max), and within a
        // round entries go in visiting order. Keys stay below 2^56 (k <= 2^24, max < 2^32).
        let max = u64::from(max_weight);
        let round_of = |claims: u64, weight: u32| (claims * max).div_ceil(u64::from(weight));
        let mut claims = vec![0u64; entries.len()];
        let mut heap: BinaryHeap<Reverse<(u64, u32)>> = entries
            .iter()
            .enumerate()
            .map(|(e, entry)| Reverse((round_of(1, entry.weight), e as u32)))
            .collect();
        while let Some(Reverse((_, e))) = heap.pop() {
            let e = e as usize;
            if filler.claim(e) {
                break;
            }
            claims[e] += 1;
            heap.push(Reverse((
                round_of(claims[e] + 1, entries[e].weight),
                e as u32,
            )));
        }
    }
    table
}

/// Population state: each entry's next preferred slot, advanced by `skip` with a conditional
/// subtraction instead of a modulo, and a bitmap of taken slots (8 KiB for 65537 slots, so the
/// probes hit L1 rather than the 256 KiB table).
///
/// Probing costs about `size / free` steps per claim, so over half of all probes go to the last
/// 1% of slots. Once few slots are free (the "endgame"), a claim instead computes, for each free
/// slot `f`, its position `(f - next) / skip (mod size)` in the entry's permutation and takes the
/// nearest: the same slot the probe would reach, in `free` steps instead of `size / free`.
struct Filler<'t> {
    /// `(next preferred slot, skip)` per entry.
    cursor: Vec<(u32, u32)>,
    index: Vec<u32>,
    taken: Vec<u64>,
    table: &'t mut [u32],
    size: u32,
    free: u32,
    /// Switch to the endgame when this many slots are free.
    endgame_at: u32,
    /// The free slots, once in the endgame.
    free_slots: Vec<u32>,
}

/// Free-slot count at which the endgame starts: an endgame step (one [`mul_mod`]) costs about
/// as much as a probe step, and the endgame takes `free` of them per claim against `size / free`
/// probes; measured at 65537 slots, thresholds 128 to 256 are equally fast (about 10% faster
/// than none), beyond 512 slower.
fn default_endgame(size: u32) -> u32 {
    (size / 4).isqrt()
}

impl<'t> Filler<'t> {
    fn new(entries: &[Entry], size: u32, table: &'t mut [u32], endgame_at: u32) -> Self {
        Filler {
            cursor: entries.iter().map(|e| (e.offset, e.skip)).collect(),
            index: entries.iter().map(|e| e.index).collect(),
            taken: vec![0u64; (size as usize).div_ceil(64)],
            table,
            size,
            free: size,
            endgame_at,
            free_slots: Vec::new(),
        }
    }

    /// Entry `e` takes its next free preferred slot. Returns true once the table is full.
    /// Terminates: a skip in 1..size with size prime visits every slot, and the caller stops
    /// at the first `true`, so a free slot always exists here.
    #[inline]
    fn claim(&mut self, e: usize) -> bool {
        if self.free <= self.endgame_at {
            return self.claim_endgame(e);
        }
        let (mut slot, skip) = self.cursor[e];
        let size = self.size;
        loop {
            let word = &mut self.taken[(slot >> 6) as usize];
            let bit = 1u64 << (slot & 63);
            if *word & bit == 0 {
                *word |= bit;
                break;
            }
            slot += skip;
            if slot >= size {
                slot -= size;
            }
        }
        self.take(e, slot)
    }

    /// Records `slot` for entry `e` and moves its cursor past it.
    #[inline]
    fn take(&mut self, e: usize, mut slot: u32) -> bool {
        self.table[slot as usize] = self.index[e];
        let skip = self.cursor[e].1;
        slot += skip;
        if slot >= self.size {
            slot -= self.size;
        }
        self.cursor[e].0 = slot;
        self.free -= 1;
        self.free == 0
    }

    #[cold]
    fn claim_endgame(&mut self, e: usize) -> bool {
        let size = self.size;
        if self.free_slots.is_empty() {
            self.free_slots = (0..size)
                .filter(|&s| self.taken[(s >> 6) as usize] & (1u64 << (s & 63)) == 0)
                .collect();
        }
        let (next, skip) = self.cursor[e];
        // size is prime and 0 < skip < size, so skip^(size-2) is its inverse (Fermat).
        let m = u64::from(size);
        let inverse = pow_mod(u64::from(skip), m - 2, m) as u32;
        let reciprocal = 1.0 / f64::from(size);
        let mut best = (u32::MAX, 0usize);
        for (k, &f) in self.free_slots.iter().enumerate() {
            let distance = if f >= next { f - next } else { f + size - next };
            let step = mul_mod(distance, inverse, size, reciprocal);
            if step < best.0 {
                best = (step, k);
            }
        }
        // Never empty here: free >= 1 and free_slots holds exactly the free slots.
        let slot = self.free_slots.swap_remove(best.1);
        self.take(e, slot)
    }
}

/// `a * b % m` for `a, b < m <= 2^24`, with `reciprocal = 1.0 / m`, several times cheaper than a
/// 64-bit division: the product is below 2^48, so exact as f64, and the estimated quotient is
/// off by at most one, which the two corrections fix.
#[inline]
fn mul_mod(a: u32, b: u32, m: u32, reciprocal: f64) -> u32 {
    let product = (u64::from(a) * u64::from(b)) as i64;
    let quotient = (product as f64 * reciprocal) as i64;
    let m = i64::from(m);
    let mut r = product - quotient * m;
    if r < 0 {
        r += m;
    } else if r >= m {
        r -= m;
    }
    r as u32
}

/// `base^exp mod m` for `m < 2^32`.
fn pow_mod(mut base: u64, mut exp: u64, m: u64) -> u64 {
    let mut result = 1 % m;
    base %= m;
    while exp > 0 {
        if exp & 1 == 1 {
            result = result * base % m;
        }
        base = base * base % m;
        exp >>= 1;
    }
    result
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    fn v4(i: u32, port: u16, weight: u32) -> MaglevBackend {
        MaglevBackend {
            address: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
            port,
            weight,
        }
    }

    fn counts(table: &[u32], n: usize) -> Vec<usize> {
        let mut c = vec![0usize; n];
        for &s in table {
            c[s as usize] += 1;
        }
        c
    }

    /// Straight from the paper's pseudo-code (permutation[i][j] = (offset + j * skip) % M,
    /// probing the table itself), with Katran-style weighted rounds: the reference that the
    /// incremental, bitmap-probing builder must match.
    fn reference(params: &[(u32, u32, u32)], m: u32) -> Vec<u32> {
        let mut table = vec![EMPTY; m as usize];
        let max = params.iter().map(|p| p.2).max().unwrap_or(0);
        if max == 0 {
            return table;
        }
        let mut next = vec![0u64; params.len()];
        let mut credit = vec![0u64; params.len()];
        let mut filled = 0;
        loop {
            for (i, &(offset, skip, weight)) in params.iter().enumerate() {
                if weight == 0 {
                    continue;
                }
                credit[i] += u64::from(weight);
                if credit[i] < u64::from(max) {
                    continue;
                }
                credit[i] -= u64::from(max);
                let perm = |j: u64| (u64::from(offset) + j * u64::from(skip)) % u64::from(m);
                let mut c = perm(next[i]);
                while table[c as usize] != EMPTY {
                    next[i] += 1;
                    c = perm(next[i]);
                }
                table[c as usize] = i as u32;
                next[i] += 1;
                filled += 1;
                if filled == m {
                    return table;
                }
            }
        }
    }

    fn entries_of(params: &[(u32, u32, u32)]) -> Vec<Entry> {
        params
            .iter()
            .enumerate()
            .filter(|(_, p)| p.2 > 0)
            .map(|(i, &(offset, skip, weight))| Entry {
                offset,
                skip,
                weight,
                index: i as u32,
            })
            .collect()
    }

    #[test]
    fn paper_table_1() {
        const B0: u32 = 0;
        const B1: u32 = 1;
        const B2: u32 = 2;
        let before = build_table_from_params(&[(3, 4, 1), (0, 2, 1), (3, 1, 1)], 7).unwrap();
        assert_eq!(before, [B1, B0, B1, B0, B2, B2, B0]);
        // B1 removed: the survivors keep their positions 0 and 1 in the list.
        let after = build_table_from_params(&[(3, 4, 1), (3, 1, 1)], 7).unwrap();
        assert_eq!(after, [B0, B0, B0, B0, 1, 1, 1]);
        // Same with B1 present but at weight 0.
        let drained = build_table_from_params(&[(3, 4, 1), (0, 2, 0), (3, 1, 1)], 7).unwrap();
        assert_eq!(drained, [B0, B0, B0, B0, B2, B2, B2]);
    }

    #[test]
    fn permutation_params_are_pinned() {
        // Nodes must agree on these: a change here reshuffles every table in a mixed cluster.
        let m = DEFAULT_TABLE_SIZE;
        let a = permutation_params(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 80, m);
        let b = permutation_params(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20)), 8080, m);
        let c = permutation_params(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            443,
            m,
        );
        // Cross-checked with Python's `xxhash` package (xxh64_intdigest over the same bytes).
        assert_eq!(a, (8382, 16748));
        assert_eq!(b, (24535, 2540));
        assert_eq!(c, (36671, 49160));
        // The family tag keeps an IPv4-mapped address apart from the IPv4 one.
        let mapped = permutation_params(
            IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()),
            80,
            m,
        );
        assert_ne!(mapped, a);
    }

    #[test]
    fn mul_mod_matches_integer_modulo() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for m in [7, 101, 65537, 655_373, MAX_TABLE_SIZE] {
            let reciprocal = 1.0 / f64::from(m);
            let edges = [0, 1, m / 2, m - 2, m - 1];
            for &a in &edges {
                for &b in &edges {
                    let want = (u64::from(a) * u64::from(b) % u64::from(m)) as u32;
                    assert_eq!(mul_mod(a, b, m, reciprocal), want, "{a} * {b} % {m}");
                }
            }
            for _ in 0..100_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let (a, b) = ((x % u64::from(m)) as u32, ((x >> 32) % u64::from(m)) as u32);
                let want = (u64::from(a) * u64::from(b) % u64::from(m)) as u32;
                assert_eq!(mul_mod(a, b, m, reciprocal), want, "{a} * {b} % {m}");
            }
        }
        assert_eq!(pow_mod(3, 65535, 65537) * 3 % 65537, 1);
    }

    #[test]
    fn table_size_checks() {
        for ok in [7, 11, 251, 65537, 655_373, MAX_TABLE_SIZE] {
            assert_eq!(check_table_size(ok), Ok(()), "{ok}");
        }
        for small in [0, 1, 2, 3, 5, 6] {
            assert_eq!(
                check_table_size(small),
                Err(MaglevError::TooSmall {
                    size: small,
                    min: 7
                })
            );
        }
        for not_prime in [9, 65536, 65535, 1_000_000, MAX_TABLE_SIZE - 2] {
            assert_eq!(
                check_table_size(not_prime),
                Err(MaglevError::NotPrime(not_prime))
            );
        }
        // The next prime after MAX_TABLE_SIZE, and u32::MAX.
        for large in [16_777_259, u32::MAX] {
            assert!(matches!(
                check_table_size(large),
                Err(MaglevError::TooLarge { .. })
            ));
        }
        assert_eq!(
            check_table_size(65536).unwrap_err().to_string(),
            "table size 65536 is not prime; use a prime such as 65537 (the default) or 655373"
        );
        assert!(build_table(&[v4(1, 80, 1)], 65536).is_err());
    }

    #[test]
    fn permutation_params_in_range() {
        for m in [7, 13, 65537, MAX_TABLE_SIZE] {
            for i in 0..500 {
                let b = v4(i, 80, 1);
                let (offset, skip) = permutation_params(b.address, b.port, m);
                assert!(offset < m && (1..m).contains(&skip), "{m} {offset} {skip}");
            }
        }
        // Never panics on sizes build_table would reject.
        for m in [0, 1, 2] {
            let (offset, skip) = permutation_params(v4(1, 1, 1).address, 1, m);
            assert_eq!((offset, skip), (0, 1));
        }
    }

    #[test]
    fn matches_the_papers_pseudo_code() {
        // Including skewed weights, where the heap schedule is chosen.
        let m = 1009;
        for (n, weights) in [
            (5, vec![1]),
            (40, vec![3]),
            (40, vec![1, 2, 3, 4, 5]),
            (30, vec![1, 10_000]),
            (200, vec![7, 0, 1]),
        ] {
            let params: Vec<(u32, u32, u32)> = (0..n)
                .map(|i| {
                    let b = v4(i, 80, 1);
                    let (o, s) = permutation_params(b.address, b.port, m);
                    (o, s, weights[i as usize % weights.len()])
                })
                .collect();
            let want = reference(&params, m);
            assert_eq!(build_table_from_params(&params, m).unwrap(), want);
            let entries = entries_of(&params);
            assert_eq!(populate(&entries, m, Schedule::Rounds), want);
            assert_eq!(populate(&entries, m, Schedule::Heap), want);
            // The endgame from the start, from the middle, and never.
            for endgame_at in [m, m / 2, 1, 0] {
                assert_eq!(populate_with(&entries, m, Schedule::Auto, endgame_at), want);
            }
        }
    }

    #[test]
    fn equal_weights_give_floor_or_ceil() {
        for (n, m, weight) in [
            (1, 7, 1),
            (3, 7, 1),
            (7, 7, 5),
            (3, 65537, 1),
            (10, 65537, 100),
            (100, 65537, 1),
            (1000, 65537, 10_000),
            (5000, 655_373, 1),
        ] {
            let backends: Vec<_> = (0..n).map(|i| v4(i, 443, weight)).collect();
            let table = build_table(&backends, m).unwrap();
            let (lo, hi) = (m as usize / n as usize, (m as usize).div_ceil(n as usize));
            for (i, c) in counts(&table, n as usize).into_iter().enumerate() {
                assert!(c == lo || c == hi, "n={n} m={m}: backend {i} has {c}");
            }
        }
    }

    #[test]
    fn weights_are_respected_within_one_percent() {
        let m = DEFAULT_TABLE_SIZE;
        // A seeded spread of weights 1..=100, a two-level set, and a wide ratio (heap schedule).
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let random: Vec<u32> = (0..20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 100) as u32 + 1
            })
            .collect();
        for weights in [
            random,
            vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
            vec![100, 100, 100, 50, 50, 1],
            vec![10_000, 100, 100, 100, 100],
            // One heavy backend among many light ones: the heap schedule.
            [10_000].into_iter().chain([100; 19]).collect(),
        ] {
            let backends: Vec<_> = weights
                .iter()
                .enumerate()
                .map(|(i, &w)| v4(i as u32, 80, w))
                .collect();
            let table = build_table(&backends, m).unwrap();
            let total: u32 = weights.iter().sum();
            for (i, c) in counts(&table, weights.len()).into_iter().enumerate() {
                let want = f64::from(m) * f64::from(weights[i]) / f64::from(total);
                let err = (c as f64 - want).abs() / want;
                assert!(
                    err < 0.01,
                    "weights {weights:?}: backend {i} has {c}, want {want:.1}"
                );
            }
        }
    }

    #[test]
    fn weight_zero_gets_nothing_and_all_zero_is_empty() {
        let mut backends: Vec<_> = (0..10).map(|i| v4(i, 80, 1)).collect();
        backends[3].weight = 0;
        let table = build_table(&backends, 65537).unwrap();
        assert!(table.iter().all(|&s| s != 3 && s < 10));
        for b in &mut backends {
            b.weight = 0;
        }
        let table = build_table(&backends, 65537).unwrap();
        assert_eq!(table.len(), 65537);
        assert!(table.iter().all(|&s| s == EMPTY));
        assert_eq!(build_table(&[], 7).unwrap(), vec![EMPTY; 7]);
    }

    #[test]
    fn rejects_duplicates_and_too_many_backends() {
        let backends = [v4(1, 80, 1), v4(2, 80, 1), v4(1, 81, 1), v4(1, 80, 0)];
        assert_eq!(
            build_table(&backends, 7),
            Err(MaglevError::DuplicateBackend {
                address: backends[0].address,
                port: 80
            })
        );
        let eight: Vec<_> = (0..8).map(|i| v4(i, 80, 1)).collect();
        assert_eq!(
            build_table(&eight, 7),
            Err(MaglevError::TooManyBackends {
                backends: 8,
                size: 7
            })
        );
        // Seven of them weighted fit: one slot each.
        let mut seven = eight.clone();
        seven[5].weight = 0;
        let table = build_table(&seven, 7).unwrap();
        let mut sorted = table.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2, 3, 4, 6, 7]);
        assert!(matches!(
            build_table_from_params(&[(7, 1, 1)], 7),
            Err(MaglevError::BadPermutation { .. })
        ));
        assert!(matches!(
            build_table_from_params(&[(0, 0, 1)], 7),
            Err(MaglevError::BadPermutation { .. })
        ));
    }

    /// Slots that changed owner without their old owner having been removed, as a fraction of
    /// all slots.
    fn disruption(before: &[MaglevBackend], after: &[MaglevBackend], m: u32) -> f64 {
        let old = build_table(before, m).unwrap();
        let new = build_table(after, m).unwrap();
        let id = |b: &MaglevBackend| (b.address, b.port);
        let kept: HashMap<_, _> = after.iter().enumerate().map(|(i, b)| (id(b), i)).collect();
        let moved = old
            .iter()
            .zip(&new)
            .filter(|&(&o, &n)| {
                kept.get(&id(&before[o as usize]))
                    .is_some_and(|&still| still != n as usize)
            })
            .count();
        moved as f64 / f64::from(m)
    }

    #[test]
    fn removing_one_of_1000_backends_moves_few_other_slots() {
        let m = DEFAULT_TABLE_SIZE;
        let backends: Vec<_> = (0..1000).map(|i| v4(i, 80, 1)).collect();
        let mut worst = 0f64;
        let mut sum = 0f64;
        let removed = [0usize, 1, 137, 500, 999];
        for &r in &removed {
            let mut after = backends.clone();
            after.remove(r);
            let d = disruption(&backends, &after, m);
            worst = worst.max(d);
            sum += d;
        }
        println!(
            "maglev disruption, M={m}, N=1000, one backend removed: mean {:.3}% worst {:.3}% \
             of slots moved between surviving backends (the removed backend's own share is 0.1%)",
            100.0 * sum / removed.len() as f64,
            100.0 * worst
        );
        assert!(worst < 0.01, "{worst}");
        // Bulk removal, as in the paper's resilience figure.
        for k in [10usize, 50, 100] {
            let after: Vec<_> = backends.iter().skip(k).copied().collect();
            let d = disruption(&backends, &after, m);
            println!(
                "maglev disruption, M={m}, N=1000, {k} backends removed: {:.2}% of slots moved \
                 between surviving backends",
                100.0 * d
            );
            assert!(d < 0.01 * k as f64, "{k}: {d}");
        }
    }

    fn backend_strategy() -> impl Strategy<Value = MaglevBackend> {
        (
            prop_oneof![
                any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
                any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
            ],
            any::<u16>(),
            1u32..=100,
        )
            .prop_map(|(address, port, weight)| MaglevBackend {
                address,
                port,
                weight,
            })
    }

    proptest! {
        #[test]
        fn order_does_not_matter(
            backends in prop::collection::hash_set(backend_strategy(), 1..50)
                .prop_map(|s| s.into_iter().collect::<Vec<_>>()),
            seed in any::<u64>(),
            size in prop::sample::select(vec![251u32, 1009, 65537]),
        ) {
            // hash_set dedups whole backends; make (address, port) unique too.
            let mut seen = std::collections::HashSet::new();
            let backends: Vec<_> =
                backends.into_iter().filter(|b| seen.insert((b.address, b.port))).collect();
            let mut shuffled = backends.clone();
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let a = build_table(&backends, size).unwrap();
            let b = build_table(&shuffled, size).unwrap();
            prop_assert!(a.iter().all(|&s| (s as usize) < backends.len()));
            let same = a.iter().zip(&b).all(|(&i, &j)| {
                let (p, q) = (&backends[i as usize], &shuffled[j as usize]);
                (p.address, p.port) == (q.address, q.port)
            });
            prop_assert!(same);
        }

        #[test]
        fn schedules_and_endgame_agree(
            weights in prop::collection::vec(0u32..=10_000, 1..40),
            size in prop::sample::select(vec![101u32, 1009]),
            endgame_at in 0u32..=1009,
        ) {
            let params: Vec<(u32, u32, u32)> = weights
                .iter()
                .enumerate()
                .map(|(i, &w)| {
                    let b = v4(i as u32, 80, w);
                    let (o, s) = permutation_params(b.address, b.port, size);
                    (o, s, w)
                })
                .collect();
            let entries = entries_of(&params);
            let rounds = populate(&entries, size, Schedule::Rounds);
            prop_assert_eq!(&rounds, &populate(&entries, size, Schedule::Heap));
            prop_assert_eq!(&rounds, &reference(&params, size));
            prop_assert_eq!(rounds.contains(&EMPTY), entries.is_empty());
            for schedule in [Schedule::Rounds, Schedule::Heap] {
                prop_assert_eq!(&rounds, &populate_with(&entries, size, schedule, endgame_at));
            }
        }
    }
}
