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

pub mod paper;

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
/// A claim probes `K` preferred slots per step (see [`Self::claim_probing`]), more as the table
/// fills. Probing costs about `size / free` steps per claim, so over half of all probes go to the
/// last 1% of slots. Once few slots are free (the "endgame"), a claim instead computes, for each
/// free slot `f`, its position `(f - next) / skip (mod size)` in the entry's permutation and
/// takes the nearest: the same slot the probe would reach, in `free` steps instead of
/// `size / free`.
struct Filler<'t> {
    /// Next preferred slot per entry.
    next: Vec<u32>,
    /// `j * skip (mod size)` for `j` in 1..=[`MAX_GROUP`], per entry: the offsets of a group's
    /// probes from its first one, and the last is the stride from one group to the next.
    strides: Vec<[u32; MAX_GROUP]>,
    index: Vec<u32>,
    /// Bit `s % 64` of word `s / 64` is set once slot `s` is taken; the length is a power of
    /// two, so that probes can index it with a mask.
    taken: Vec<u64>,
    table: &'t mut [u32],
    size: u32,
    free: u32,
    /// Probe 4 slots per step from this many free slots down, 8 from `.1` down.
    group_at: (u32, u32),
    /// Switch to the endgame when this many slots are free.
    endgame_at: u32,
    /// The free slots, once in the endgame.
    free_slots: Vec<u32>,
    /// Inverse of each entry's skip (mod size), once computed in the endgame; 0 until then.
    inverse: Vec<u32>,
}

/// Probes per step in the fullest part of the table.
const MAX_GROUP: usize = 8;

/// Free-slot count at which the endgame starts: an endgame step (one [`mul_mod`]) costs about
/// as much as a probe step, and the endgame takes `free` of them per claim against `size / free`
/// probes; measured at 65537 slots, thresholds 128 to 256 are equally fast (about 10% faster
/// than none), beyond 512 slower.
fn default_endgame(size: u32) -> u32 {
    (size / 4).isqrt()
}

/// Free-slot counts below which a probe step covers 4, then [`MAX_GROUP`], slots: while over
/// half the table is free, 2 probes mostly find one; wider steps cost more instructions but
/// mispredict fewer exits as the table fills. Measured at 65537 slots with 1000 backends: this
/// schedule builds about 10% faster than one probe per branch; 8 probes per step from the
/// start is no faster than one, 16 is 1.7 times slower.
fn group_thresholds(size: u32) -> (u32, u32) {
    (size / 2, size / 8)
}

/// `slot + step (mod size)` for `slot, step < size`, as a minimum, which compiles to a
/// conditional move: a branch there would mispredict as often as it is taken.
#[inline(always)]
fn add_mod(slot: u32, step: u32, size: u32) -> u32 {
    // size <= MAX_TABLE_SIZE < 2^31: no overflow, and a sum below size wraps above it.
    let sum = slot + step;
    sum.min(sum.wrapping_sub(size))
}

impl<'t> Filler<'t> {
    fn new(entries: &[Entry], size: u32, table: &'t mut [u32], endgame_at: u32) -> Self {
        Filler {
            next: entries.iter().map(|e| e.offset).collect(),
            strides: entries
                .iter()
                .map(|e| {
                    let mut strides = [0u32; MAX_GROUP];
                    let mut stride = 0;
                    for s in &mut strides {
                        stride = add_mod(stride, e.skip, size);
                        *s = stride;
                    }
                    strides
                })
                .collect(),
            index: entries.iter().map(|e| e.index).collect(),
            taken: vec![0u64; (size as usize).div_ceil(64).next_power_of_two()],
            table,
            size,
            free: size,
            group_at: group_thresholds(size),
            endgame_at,
            free_slots: Vec::new(),
            inverse: Vec::new(),
        }
    }

    /// Entry `e` takes its next free preferred slot. Returns true once the table is full.
    /// Terminates: a skip in 1..size with size prime visits every slot, and the caller stops
    /// at the first `true`, so a free slot always exists here.
    #[inline]
    fn claim(&mut self, e: usize) -> bool {
        let free = self.free;
        let slot = if free > self.group_at.0 {
            self.probe::<2>(e)
        } else if free > self.group_at.1 {
            self.probe::<4>(e)
        } else if free > self.endgame_at {
            self.probe::<MAX_GROUP>(e)
        } else {
            return self.claim_endgame(e);
        };
        self.taken[(slot >> 6) as usize] |= 1u64 << (slot & 63);
        self.take(e, slot)
    }

    /// Entry `e`'s first free preferred slot, probing `K` of them per step without a branch
    /// between them: their free bits go into a mask whose lowest set bit is the first free one.
    /// The `K` positions advance by `K * skip` each, so they form `K` independent chains rather
    /// than one chain of dependent additions.
    #[inline(always)]
    fn probe<const K: usize>(&self, e: usize) -> u32 {
        let size = self.size;
        let strides = &self.strides[e];
        let mut positions = [self.next[e]; K];
        for j in 1..K {
            positions[j] = add_mod(positions[0], strides[j - 1], size);
        }
        let stride = strides[K - 1];
        let all = (1u32 << K) - 1;
        // A power-of-two length and a masked index: no bounds check per probe (the mask never
        // changes an index, as slots are below size).
        let mask = self.taken.len() - 1;
        let bitmap = &self.taken[..=mask];
        loop {
            let mut taken = 0u32;
            for (j, &p) in positions.iter().enumerate() {
                taken |= ((bitmap[(p >> 6) as usize & mask] >> (p & 63)) as u32 & 1) << j;
            }
            let free = !taken & all;
            if free != 0 {
                return positions[free.trailing_zeros() as usize];
            }
            for p in &mut positions {
                *p = add_mod(*p, stride, size);
            }
        }
    }

    /// Records `slot` for entry `e` and moves its cursor past it.
    #[inline]
    fn take(&mut self, e: usize, slot: u32) -> bool {
        self.table[slot as usize] = self.index[e];
        self.next[e] = add_mod(slot, self.strides[e][0], self.size);
        self.free -= 1;
        self.free == 0
    }

    #[cold]
    fn claim_endgame(&mut self, e: usize) -> bool {
        let size = self.size;
        if self.free_slots.is_empty() {
            self.free_slots.reserve(self.free as usize);
            for (w, &word) in self.taken.iter().enumerate() {
                let mut free = !word;
                while free != 0 {
                    let slot = (w as u32) << 6 | free.trailing_zeros();
                    if slot < size {
                        self.free_slots.push(slot);
                    }
                    free &= free - 1;
                }
            }
            self.inverse = vec![0; self.next.len()];
        }
        let next = self.next[e];
        let reciprocal = 1.0 / f64::from(size);
        if self.inverse[e] == 0 {
            // size is prime and 0 < skip < size, so skip^(size-2) is its inverse (Fermat).
            self.inverse[e] = pow_mod(self.strides[e][0], size - 2, size, reciprocal);
        }
        let inverse = self.inverse[e];
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
        self.taken[(slot >> 6) as usize] |= 1u64 << (slot & 63);
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

/// `base^exp mod m` for `base < m <= 2^24`, `reciprocal = 1.0 / m`, by [`mul_mod`].
fn pow_mod(mut base: u32, mut exp: u32, m: u32, reciprocal: f64) -> u32 {
    let mut result = 1 % m;
    while exp > 0 {
        if exp & 1 == 1 {
            result = mul_mod(result, base, m, reciprocal);
        }
        base = mul_mod(base, base, m, reciprocal);
        exp >>= 1;
    }
    result
}

#[cfg(test)]
mod tests;
