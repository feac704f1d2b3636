//! Build time of a Maglev table (M = 65537) for 10, 100 and 1000 backends.
//!
//! The paper reports 1.8 ms for M = 65537, N = 1000. On a shared machine absolute numbers drift,
//! so each size also runs a baseline built in the same run: the paper's pseudo-code as usually
//! transcribed (permutation entry `(offset + j * skip) % M` computed per probe, probing the table
//! itself), with the same permutation parameters and visiting order, so it builds the same table.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use fiberlb_shared::maglev::paper::{equal_backends, population_loop};
use fiberlb_shared::maglev::{build_table, DEFAULT_TABLE_SIZE};

fn bench_build(c: &mut Criterion) {
    let m = DEFAULT_TABLE_SIZE;
    let mut group = c.benchmark_group("maglev_build_m65537");
    for n in [10u32, 100, 1000] {
        let set = equal_backends(n);
        assert_eq!(
            build_table(&set, m).expect("valid backend set"),
            population_loop(&set, m),
            "baseline must build the same table"
        );
        group.bench_with_input(BenchmarkId::new("fiberlb", n), &set, |b, set| {
            b.iter(|| build_table(black_box(set), m))
        });
        group.bench_with_input(BenchmarkId::new("paper_baseline", n), &set, |b, set| {
            b.iter(|| population_loop(black_box(set), m))
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
