//! The DPDK backend (fiberlb-dataplane's `dpdk` feature), through its examples, since one
//! process can initialise DPDK's EAL only once and this crate does not enable the feature:
//! - `dpdk_counters`: a fixed number of packets through two DPDK workers on ring-backed ports;
//!   every counter must add up (nothing lost, nothing double-counted, every mbuf returned).
//! - `dpdk_host_path`: the exception path of a DPDK worker (a ring port standing in for the
//!   `net_tap` host port): what is not fiberlb's reaches the host queue unchanged, the host's
//!   frames go out of the port unchanged, a full host queue drops and counts, counters add up.
//! - `dpdk_probe`: bad setups (unknown vdev, missing PCI device or port, too many queues, not
//!   enough hugepages) must end in a clear error, not a crash.
//!
//! Skips, printing why, when not root or when libdpdk is not installed (`scripts/deps-dpdk.sh`).
//! `FIBERLB_DPDK_EXAMPLES` names a directory with the built examples; otherwise they are built
//! (release) with cargo.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use fiberlb_tests::is_root;

use fiberlb_tests::dpdk_installed;

fn skip_reason() -> Option<&'static str> {
    if !is_root() {
        return Some("needs root (DPDK EAL, hugepages)");
    }
    if !dpdk_installed() {
        return Some("libdpdk not installed (run scripts/deps-dpdk.sh)");
    }
    None
}

fn examples_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(d) = std::env::var_os("FIBERLB_DPDK_EXAMPLES") {
            return PathBuf::from(d);
        }
        let root = fiberlb_tests::workspace_root();
        let status = Command::new(env!("CARGO"))
            .current_dir(&root)
            .args([
                "build",
                "--release",
                "-p",
                "fiberlb-dataplane",
                "--features",
                "dpdk",
                "--example",
                "dpdk_counters",
                "--example",
                "dpdk_probe",
                "--example",
                "dpdk_host_path",
            ])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the dpdk examples failed");
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"))
            .join("release/examples")
    })
    .clone()
}

fn run_example(name: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(examples_dir().join(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "{name} {args:?}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), stdout)
}

#[test]
fn dpdk_counters_add_up() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping dpdk_counters_add_up: {why}");
        return;
    }
    for extra in [&[][..], &["--no-huge"][..]] {
        let mut args = vec!["--packets", "200000", "--workers", "2"];
        args.extend_from_slice(extra);
        let (code, out) = run_example("dpdk_counters", &args);
        let failed: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
        assert!(failed.is_empty(), "failed checks: {failed:#?}");
        for want in [
            "PASS not-enough-queues",
            "PASS rx-total",
            "PASS forwarded-plus-dropped",
            "PASS nat-replies",
            "PASS drops-by-reason",
            "PASS listener-backend-counters",
            "PASS out-rings",
            "PASS output-rewritten",
            "PASS port-stats",
            "PASS mbufs-returned",
            "RESULT PASS",
        ] {
            assert!(out.lines().any(|l| l == want), "missing {want:?}");
        }
        assert_eq!(code, 0);
    }
}

#[test]
fn dpdk_host_path_hands_packets_to_the_host_and_back() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping dpdk_host_path: {why}");
        return;
    }
    for extra in [&[][..], &["--no-huge"][..]] {
        let (code, out) = run_example("dpdk_host_path", extra);
        let failed: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
        assert!(failed.is_empty(), "failed checks: {failed:#?}");
        for want in [
            "PASS to-host-unchanged",
            "PASS port-out",
            "PASS counters-phase1",
            "PASS from-host-unchanged",
            "PASS from-host-counted",
            "PASS full-host-queue",
            "PASS received-adds-up",
            "PASS mbufs-returned",
            "RESULT PASS",
        ] {
            assert!(out.lines().any(|l| l == want), "missing {want:?}");
        }
        assert_eq!(code, 0);
    }
}

#[test]
fn dpdk_setup_errors_are_clear() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping dpdk_setup_errors_are_clear: {why}");
        return;
    }
    let probe = |args: &[&str]| run_example("dpdk_probe", args);

    let (code, out) = probe(&[
        "--no-huge",
        "--vdev",
        "net_null0",
        "--port",
        "net_null0",
        "--queues",
        "2",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("OK port=net_null0") && out.contains("queues=2") && out.contains("rss=true"),
        "{out}"
    );

    let cases: [(&[&str], &str); 5] = [
        (
            &["--no-huge", "--vdev", "net_bogus0", "--port", "net_bogus0"],
            "EAL initialisation failed",
        ),
        (
            &[
                "--no-huge",
                "--pci",
                "0000:ff:1f.7",
                "--port",
                "0000:ff:1f.7",
            ],
            "no DPDK port named \"0000:ff:1f.7\"",
        ),
        (
            &["--no-huge", "--vdev", "net_null0", "--port", "net_null9"],
            "ports available: [\"net_null0\"]",
        ),
        (
            &[
                "--no-huge",
                "--vdev",
                "net_null0",
                "--port",
                "net_null0",
                "--queues",
                "2000",
            ],
            "queues but 2000 are needed",
        ),
        (
            &[
                "--memory-mb",
                "10000000",
                "--vdev",
                "net_null0",
                "--port",
                "net_null0",
            ],
            "no hugepages available",
        ),
    ];
    for (args, want) in cases {
        let (code, out) = probe(args);
        assert_eq!(
            code, 2,
            "{args:?} should fail cleanly (exit 2, no crash): {out}"
        );
        assert!(
            out.contains("ERROR ") && out.contains(want),
            "{args:?}: {out}"
        );
    }
}
