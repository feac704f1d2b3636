//! Build time of a Maglev table (M = 65537) for 10, 100 and 1000 backends.
//!
//! The paper reports 1.8 ms for M = 65537, N = 1000. On a shared machine absolute numbers drift,
//! so each size also runs a baseline built in the same run: the paper's pseudo-code as usually
//! transcribed (permutation entry `(offset + j * skip) % M` computed per probe, probing the table
//! itself), with the same permutation parameters and visiting order, so it builds the same table.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use fiberlb_shared::maglev::{
    build_table, permutation_params, MaglevBackend, DEFAULT_TABLE_SIZE, EMPTY,
};

fn backends(n: u32) -> Vec<MaglevBackend> {
    (0..n)
        .map(|i| MaglevBackend {
            address: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
            port: 8080,
            weight: 1,
        })
        .collect()
}

/// The paper's population loop, equal weights, backends in `(address, port)` order.
fn paper_baseline(backends: &[MaglevBackend], m: u32) -> Vec<u32> {
    let mut order: Vec<usize> = (0..backends.len()).collect();
    order.sort_unstable_by_key(|&i| (backends[i].address, backends[i].port));
    let params: Vec<(u64, u64)> = order
        .iter()
        .map(|&i| {
            let (o, s) = permutation_params(backends[i].address, backends[i].port, m);
            (u64::from(o), u64::from(s))
        })
        .collect();
    let m64 = u64::from(m);
    let mut table = vec![EMPTY; m as usize];
    let mut next = vec![0u64; backends.len()];
    let mut filled = 0;
    loop {
        for (k, &(offset, skip)) in params.iter().enumerate() {
            let mut c = (offset + next[k] * skip) % m64;
            while table[c as usize] != EMPTY {
                next[k] += 1;
                c = (offset + next[k] * skip) % m64;
            }
            table[c as usize] = order[k] as u32;
            next[k] += 1;
            filled += 1;
            if filled == m {
                return table;
            }
        }
    }
}

fn bench_build(c: &mut Criterion) {
    let m = DEFAULT_TABLE_SIZE;
    let mut group = c.benchmark_group("maglev_build_m65537");
    for n in [10u32, 100, 1000] {
        let set = backends(n);
        assert_eq!(
            build_table(&set, m).expect("valid backend set"),
            paper_baseline(&set, m),
            "baseline must build the same table"
        );
        group.bench_with_input(BenchmarkId::new("fiberlb", n), &set, |b, set| {
            b.iter(|| build_table(black_box(set), m))
        });
        group.bench_with_input(BenchmarkId::new("paper_baseline", n), &set, |b, set| {
            b.iter(|| paper_baseline(black_box(set), m))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);
    targets = bench_build
}
criterion_main!(benches);
