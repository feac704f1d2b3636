//! Tests of [`super`].

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
    for m in [7u32, 65537, 655_373, MAX_TABLE_SIZE] {
        let reciprocal = 1.0 / f64::from(m);
        for a in [1, 2, 3, m / 2, m - 2, m - 1] {
            let inverse = pow_mod(a, m - 2, m, reciprocal);
            assert_eq!(
                u64::from(inverse) * u64::from(a) % u64::from(m),
                1,
                "{a} mod {m}"
            );
        }
    }
}

#[test]
fn add_mod_wraps_once() {
    for m in [7u32, 65537, MAX_TABLE_SIZE] {
        for (a, b) in [
            (0, 0),
            (0, m - 1),
            (m - 1, 1),
            (m - 1, m - 1),
            (m / 2, m / 2 + 1),
        ] {
            let want = ((u64::from(a) + u64::from(b)) % u64::from(m)) as u32;
            assert_eq!(add_mod(a, b, m), want, "{a} + {b} mod {m}");
        }
    }
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

/// XXH64 of a table's slots, little-endian: a fingerprint for pinning whole tables.
fn fingerprint(table: &[u32]) -> u64 {
    let bytes: Vec<u8> = table.iter().flat_map(|s| s.to_le_bytes()).collect();
    xxh64(&bytes, 0)
}

#[test]
fn tables_are_pinned() {
    // Fingerprints taken with the builder as of b274920 (before the probe-loop rewrite): any
    // change in which backend owns which slot fails here. Covers equal weights (the plain
    // round loop), mixed weights (the weighted round loop) and skewed weights (the heap), at
    // the default size and a small one, with the caller's order shuffled.
    let m = DEFAULT_TABLE_SIZE;
    let equal: Vec<_> = (0..1000).rev().map(|i| v4(i, 8080, 1)).collect();
    let mixed: Vec<_> = (0..1000).map(|i| v4(i, 80, 1 + i % 7)).collect();
    let skewed: Vec<_> = (0..300)
        .map(|i| v4(i, 443, if i % 50 == 0 { 10_000 } else { 1 + i % 3 }))
        .collect();
    let v6: Vec<_> = (0..10u16)
        .map(|i| MaglevBackend {
            address: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i + 1)),
            port: 443,
            weight: 1,
        })
        .collect();
    let got = [
        fingerprint(&build_table(&equal, m).unwrap()),
        fingerprint(&build_table(&equal[..100], m).unwrap()),
        fingerprint(&build_table(&mixed, m).unwrap()),
        fingerprint(&build_table(&skewed, m).unwrap()),
        fingerprint(&build_table(&v6, m).unwrap()),
        fingerprint(&build_table(&equal, 1009).unwrap()),
        fingerprint(&build_table(&equal[..500], 655_373).unwrap()),
    ];
    assert_eq!(
        got,
        [
            0x64ea_7b61_4107_0b35,
            0x5e29_fd07_cfca_57a3,
            0xb56c_c8de_def3_8fdf,
            0x1df5_b3e5_6572_65f6,
            0x78d1_b467_c27e_35f5,
            0x4a0c_f45a_a6f0_a343,
            0xbcf7_bcd5_3483_a881,
        ]
    );
}

proptest! {
    /// A table depends only on the ratios of the weights (every schedule compares credits or
    /// claim rounds scaled by the same factor): the data plane's table cache keys pools by
    /// weights divided by their gcd and relies on this.
    #[test]
    fn scaled_weights_build_the_same_table(
        weights in proptest::collection::vec(1u32..20, 1..12),
        k in 2u32..50,
    ) {
        let set: Vec<MaglevBackend> =
            weights.iter().enumerate().map(|(i, &w)| v4(i as u32, 80, w)).collect();
        let scaled: Vec<MaglevBackend> =
            set.iter().map(|b| MaglevBackend { weight: b.weight * k, ..*b }).collect();
        prop_assert_eq!(build_table(&set, 1009).unwrap(), build_table(&scaled, 1009).unwrap());
    }
}
