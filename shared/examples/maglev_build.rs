//! Builds Maglev tables (M = 65537) for a profiler or a quick timing, outside criterion.
//!
//! `maglev_build once N [paper]`: one build of N equal-weight backends (fiberlb's builder, or the
//! paper's loop), for `valgrind --tool=callgrind` (instructions, deterministic).
//! `maglev_build time N [ROUNDS]`: alternates the two, prints the median time of each and the
//! ratio.

use std::hint::black_box;
use std::time::Instant;

use fiberlb_shared::maglev::paper::{equal_backends, population_loop};
use fiberlb_shared::maglev::{build_table, DEFAULT_TABLE_SIZE};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: maglev_build once N [paper] | time N [ROUNDS]";
    let n: u32 = args.get(2).and_then(|a| a.parse().ok()).expect(usage);
    let m = DEFAULT_TABLE_SIZE;
    let set = equal_backends(n);
    match args.get(1).map(String::as_str) {
        Some("once") => {
            let table = if args.get(3).map(String::as_str) == Some("paper") {
                population_loop(&set, m)
            } else {
                build_table(&set, m).expect("valid set")
            };
            println!("slot 0 -> {}", table[0]);
        }
        Some("time") => {
            let rounds: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(200);
            assert_eq!(
                build_table(&set, m).expect("valid set"),
                population_loop(&set, m)
            );
            let (mut ours, mut base) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                let t = Instant::now();
                black_box(build_table(black_box(&set), m).expect("valid set"));
                ours.push(t.elapsed().as_secs_f64() * 1e6);
                let t = Instant::now();
                black_box(population_loop(black_box(&set), m));
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
