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

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn dpdk_installed() -> bool {
    Command::new("pkg-config")
        .args(["--exists", "libdpdk"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

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

#[test]
fn dpdk_end_to_end() {
    if !is_root() {
        eprintln!("skipping e2e_dpdk: needs root (network namespaces, DPDK EAL)");
        return;
    }
    if !dpdk_installed() {
        eprintln!("skipping e2e_dpdk: libdpdk not installed (run scripts/deps-dpdk.sh)");
        return;
    }
    let bins = bin_dir();
    let script = fiberlb_tests::workspace_root().join("tests/e2e/dpdk.sh");
    // Short (interface names) and this run's own, so the leftover check below is not confused
    // by other tests' namespaces.
    let prefix = format!("fd{}", std::process::id() % 100_000);
    let out = Command::new("bash")
        .arg(&script)
        .env("FE2E_PREFIX", &prefix)
        .env("FIBERLB_BIN_DIR", &bins)
        .env("FE2E_DPDK_MODES", "af_packet af_xdp")
        .env("FE2E_DPDK_HOST_MODES", "af_packet af_xdp")
        .output()
        .expect("run tests/e2e/dpdk.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        !lines.iter().any(|l| l.starts_with("SKIP")),
        "the script skipped although root and libdpdk are present"
    );
    let failed: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FAIL")).collect();
    assert!(failed.is_empty(), "failed checks: {failed:#?}");
    for mode in ["af_packet", "af_xdp"] {
        for check in [
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
            "stop",
            "restore",
            "host-interface",
            "host-ping",
            "host-tcp",
            "host-health-check",
            "host-to-host-counter",
            "host-persist",
        ] {
            let want = format!("PASS {mode}/{check}");
            assert!(
                lines.iter().any(|l| l.starts_with(&want)),
                "missing {want:?} in the report"
            );
        }
    }
    assert!(lines.contains(&"RESULT fails=0"), "no final result line");
    assert!(out.status.success(), "script exit status {:?}", out.status);
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left = String::from_utf8_lossy(&ns.stdout);
    assert!(
        !left.lines().any(|l| l.starts_with(&prefix)),
        "namespaces left behind: {left}"
    );
}
