//! The paper's population loop (NSDI 2016, pseudo-code 1) as usually transcribed: the in-run
//! baseline of `bench/benches/maglev.rs` and `shared/examples/maglev_build.rs`. Not used by
//! fiberlb itself ([`super::build_table`] builds the same tables faster); here so the two
//! timings share one copy.

use std::net::{IpAddr, Ipv4Addr};

use super::{permutation_params, MaglevBackend, EMPTY};

/// `n` equal-weight backends 10.0.0.0, 10.0.0.1, … port 8080: the benchmarks' pool.
pub fn equal_backends(n: u32) -> Vec<MaglevBackend> {
    (0..n)
        .map(|i| MaglevBackend {
            address: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
            port: 8080,
            weight: 1,
        })
        .collect()
}

/// The table of `backends` (equal weights; visited in `(address, port)` order, with the same
/// permutation parameters as [`super::build_table`], so both build the same table) by the
/// paper's loop: each permutation entry `(offset + j * skip) % m` computed per probe, probing
/// the table itself. `m` must be prime and `backends` non-empty.
#[allow(clippy::indexing_slicing)]
pub fn population_loop(backends: &[MaglevBackend], m: u32) -> Vec<u32> {
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
