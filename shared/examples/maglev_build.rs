//! Builds Maglev tables (M = 65537) for a profiler or a quick timing, outside criterion.
//!
//! `maglev_build once N [paper]`: one build of N equal-weight backends (fiberlb's builder, or the
//! paper's loop), for `valgrind --tool=callgrind` (instructions, deterministic).
//! `maglev_build time N [ROUNDS]`: alternates the two, prints the median time of each and the
//! ratio.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

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

/// The paper's population loop, as in bench/benches/maglev.rs.
fn paper(backends: &[MaglevBackend], m: u32) -> Vec<u32> {
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: maglev_build once N [paper] | time N [ROUNDS]";
    let n: u32 = args.get(2).and_then(|a| a.parse().ok()).expect(usage);
    let m = DEFAULT_TABLE_SIZE;
    let set = backends(n);
    match args.get(1).map(String::as_str) {
        Some("once") => {
            let table = if args.get(3).map(String::as_str) == Some("paper") {
                paper(&set, m)
            } else {
                build_table(&set, m).expect("valid set")
            };
            println!("slot 0 -> {}", table[0]);
        }
        Some("time") => {
            let rounds: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(200);
            assert_eq!(build_table(&set, m).expect("valid set"), paper(&set, m));
            let (mut ours, mut base) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                let t = Instant::now();
                black_box(build_table(black_box(&set), m).expect("valid set"));
                ours.push(t.elapsed().as_secs_f64() * 1e6);
                let t = Instant::now();
                black_box(paper(black_box(&set), m));
                base.push(t.elapsed().as_secs_f64() * 1e6);
            }
            ours.sort_by(f64::total_cmp);
            base.sort_by(f64::total_cmp);
            let (a, b) = (ours[rounds / 2], base[rounds / 2]);
            println!(
                "N={n}: fiberlb {a:.0} us (min {:.0}), paper {b:.0} us (min {:.0}), ratio {:.3} (min/min {:.3})",
                ours[0],
                base[0],
                a / b,
                ours[0] / base[0]
            );
        }
        _ => panic!("{usage}"),
    }
}
