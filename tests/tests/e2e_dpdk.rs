//! End to end on the DPDK backend: runs `tests/e2e/dpdk.sh` (client — fiberlb on two veths
//! driven through DPDK `net_af_packet` vdevs, then `net_af_xdp` vdevs — three real HTTP/UDP
//! backends, in network namespaces the script creates and always removes) and asserts on its
//! report for both vdev kinds — including the exception path: both ports have a
//! `host_interface` (net_tap) holding the lb's own addresses, and the client's ARP and ping,
//! a TCP service on the lb's address and health checks from the lb's kernel to the nat
//! backends go through it, while the VIP traffic runs as before.
//!
//! Skips, printing why, when not root or when libdpdk is not installed. `FIBERLB_DPDK_BIN_DIR`
//! names a directory with a `fiberlb-dataplane` built with `--features dpdk`; without it the
//! release binary is built into `target/dpdk` (its own target dir, so the feature does not
//! invalidate the main build).

use std::path::PathBuf;
use std::process::Command;

use fiberlb_tests::{run_e2e_script, E2eScript};

fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FIBERLB_DPDK_BIN_DIR") {
        return PathBuf::from(d);
    }
    let root = fiberlb_tests::workspace_root();
    let target = root.join("target/dpdk");
    let status = Command::new(env!("CARGO"))
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "build",
            "--release",
            "-p",
            "fiberlb-dataplane",
            "--features",
            "dpdk",
            "--bin",
            "fiberlb-dataplane",
        ])
        .status()
        .expect("run cargo build");
    assert!(
        status.success(),
        "cargo build --release --features dpdk failed"
    );
    target.join("release")
}

/// Every check of one vdev kind's run (the script prints them as `PASS <kind>/<check>`).
const CHECKS: [&str; 19] = [
    "start",
    "second-instance",
    "nat-http",
    "dsr-http",
    "nat-download",
    "dsr-download",
    "nat-udp",
    "dsr-udp",
    "reconfig",
    "stats",
    "port-stats",
    "stop",
    "restore",
    "host-interface",
    "host-ping",
    "host-tcp",
    "host-health-check",
    "host-to-host-counter",
    "host-persist",
];

#[test]
fn dpdk_end_to_end() {
    if !fiberlb_tests::is_root() {
        eprintln!("skipping e2e_dpdk: needs root (network namespaces, DPDK EAL)");
        return;
    }
    if !fiberlb_tests::dpdk_installed() {
        eprintln!("skipping e2e_dpdk: libdpdk not installed (run scripts/deps-dpdk.sh)");
        return;
    }
    let modes = ["af_packet", "af_xdp"];
    let required: Vec<String> = modes
        .iter()
        .flat_map(|mode| {
            CHECKS
                .iter()
                .map(move |check| format!("PASS {mode}/{check}"))
        })
        .collect();
    let required: Vec<&str> = required.iter().map(String::as_str).collect();
    run_e2e_script(&E2eScript {
        script: "dpdk.sh",
        bin_dir: &bin_dir(),
        // Short: the script names the tap interfaces after it.
        prefix_var: "FE2E_PREFIX",
        prefix_tag: "fd",
        env: &[
            ("FE2E_DPDK_MODES", "af_packet af_xdp"),
            ("FE2E_DPDK_HOST_MODES", "af_packet af_xdp"),
        ],
        required: &required,
    });
}
