//! Finds the system's DPDK with pkg-config, generates bindings for the few functions fiberlb
//! uses and compiles the C shim for the static-inline fast-path ones.
//!
//! Without the `link` feature (the default, so `cargo build --workspace` works on a machine
//! with no DPDK) this does nothing and the crate is empty.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "link")]
    link::run();
}

#[cfg(feature = "link")]
mod link {
    use std::path::PathBuf;

    const HINT: &str = "libdpdk was not found by pkg-config. Install DPDK (Debian 12: \
        libdpdk-dev 22.11) and the tools the bindings need with `sudo scripts/deps-dpdk.sh`, \
        or set PKG_CONFIG_PATH to the directory holding libdpdk.pc; or build without the \
        `dpdk` feature";

    pub fn run() {
        println!("cargo:rerun-if-changed=shim/shim.c");
        println!("cargo:rerun-if-changed=shim/shim.h");
        println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
        let lib = match pkg_config::Config::new()
            .atleast_version("21.11")
            .probe("libdpdk")
        {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: {HINT}\npkg-config said: {e}");
                panic!("{HINT} (pkg-config: {e})");
            }
        };
        // Flags pkg-config gives besides -I (e.g. `-include rte_config.h`, and the ISA
        // baseline the distribution built DPDK for, such as Debian's `-march=corei7`: the
        // headers' inline functions must be compiled for the ISA the library was built for.
        // Never -march=native, so the binary runs on any machine the distribution supports.)
        let extra = cflags_other(&lib);
        // rte_eth_from_rings (ring-backed ports for tests) lives in the net_ring PMD, which
        // pkg-config's shared-library list leaves to EAL's plugin loading.
        println!("cargo:rustc-link-lib=rte_net_ring");

        let mut build = cc::Build::new();
        build.file("shim/shim.c").warnings(true).opt_level(2);
        for p in &lib.include_paths {
            build.include(p);
        }
        for f in &extra {
            build.flag(f);
        }
        build.compile("fiberlb_dpdk_shim");

        let mut clang_args: Vec<String> = lib
            .include_paths
            .iter()
            .map(|p| format!("-I{}", p.display()))
            .collect();
        clang_args.extend(extra.iter().cloned());
        let bindings = bindgen::Builder::default()
            .header("shim/shim.h")
            .clang_args(&clang_args)
            .clang_arg("-DALLOW_EXPERIMENTAL_API")
            .allowlist_function("fiberlb_.*")
            .allowlist_var("fiberlb_.*")
            .allowlist_function("rte_eal_init")
            .allowlist_function("rte_eal_cleanup")
            .allowlist_function("rte_strerror")
            .allowlist_function("rte_socket_count")
            .allowlist_function("rte_socket_id_by_idx")
            .allowlist_function("rte_pktmbuf_pool_create")
            .allowlist_function("rte_mempool_free")
            .allowlist_function("rte_mempool_avail_count")
            .allowlist_function("rte_mempool_in_use_count")
            .allowlist_function("rte_eth_dev_get_port_by_name")
            .allowlist_function("rte_eth_dev_get_name_by_port")
            .allowlist_function("rte_eth_dev_socket_id")
            .allowlist_function("rte_eth_rx_queue_setup")
            .allowlist_function("rte_eth_tx_queue_setup")
            .allowlist_function("rte_eth_dev_start")
            .allowlist_function("rte_eth_dev_stop")
            .allowlist_function("rte_eth_dev_close")
            .allowlist_function("rte_eth_promiscuous_enable")
            .allowlist_function("rte_eth_macaddr_get")
            .allowlist_function("rte_eth_dev_default_mac_addr_set")
            .allowlist_function("rte_eth_dev_set_link_up")
            .allowlist_function("rte_eth_stats_get")
            .allowlist_function("rte_eth_stats_reset")
            .allowlist_function("rte_ring_create")
            .allowlist_function("rte_ring_free")
            .allowlist_function("rte_eth_from_rings")
            .allowlist_var("RING_F_SP_ENQ")
            .allowlist_var("RING_F_SC_DEQ")
            .opaque_type("rte_ring")
            .allowlist_type("rte_eth_stats")
            .allowlist_type("rte_ether_addr")
            .allowlist_type("fiberlb_.*")
            // Only passed by pointer: no layout needed, and rte_mbuf's unions and cache-line
            // alignment stay on the C side (read through the shim).
            .opaque_type("rte_mbuf")
            .opaque_type("rte_mempool")
            .opaque_type("rte_eth_rxconf")
            .opaque_type("rte_eth_txconf")
            .layout_tests(false)
            .derive_default(true)
            .generate_comments(false)
            .generate()
            .unwrap_or_else(|e| panic!("bindgen over shim/shim.h failed: {e}. Is libclang-dev installed? (scripts/deps-dpdk.sh)"));
        let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
        bindings
            .write_to_file(out.join("bindings.rs"))
            .expect("write bindings.rs");
    }

    /// The compile flags of libdpdk.pc that are not include paths (`-include rte_config.h`,
    /// `-march=...` baseline, defines).
    fn cflags_other(lib: &pkg_config::Library) -> Vec<String> {
        let out = std::process::Command::new("pkg-config")
            .args(["--cflags-only-other", "libdpdk"])
            .output();
        let mut flags = Vec::new();
        if let Ok(o) = out {
            let s = String::from_utf8_lossy(&o.stdout);
            let mut it = s.split_whitespace();
            while let Some(f) = it.next() {
                if f == "-include" {
                    if let Some(h) = it.next() {
                        flags.push("-include".to_string());
                        flags.push(h.to_string());
                    }
                } else if f == "-march=native" || f == "-mtune=native" {
                    // Never tie the binary to the build machine's CPU.
                } else {
                    flags.push(f.to_string());
                }
            }
        }
        for (k, v) in &lib.defines {
            match v {
                Some(v) => flags.push(format!("-D{k}={v}")),
                None => flags.push(format!("-D{k}")),
            }
        }
        flags
    }
}
