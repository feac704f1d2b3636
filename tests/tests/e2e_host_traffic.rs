//! End to end: the lb host's own traffic is not taken by the XDP program. Runs
//! `tests/e2e/host_traffic.sh` (a nat VIP to three real backends, in network namespaces the
//! script creates and always removes) with the release binary and asserts on every check: the
//! host reaches the nat backends' address:ports directly (what health checks do), ARP, ping and
//! TCP to the host's own addresses pass, addresses added after the start are picked up, and
//! clients still reach the VIP.
//!
//! Root only: prints why and passes when not root. `FIBERLB_BIN_DIR` names a directory with
//! a built `fiberlb-dataplane`; without it the binary is built (`fiberlb_tests::bin_path`).

use std::process::Command;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn host_traffic_passes_to_the_kernel() {
    if !is_root() {
        eprintln!("skipping e2e_host_traffic: needs root (network namespaces, XDP, AF_XDP)");
        return;
    }
    let bins = fiberlb_tests::bin_path("fiberlb-dataplane")
        .parent()
        .expect("binary has a folder")
        .to_path_buf();
    let script = fiberlb_tests::workspace_root().join("tests/e2e/host_traffic.sh");
    let prefix = format!("fhtt{}", std::process::id());
    let out = Command::new("bash")
        .arg(&script)
        .env("FIBERLB_BIN_DIR", &bins)
        .env("FHT_PREFIX", &prefix)
        .output()
        .expect("run tests/e2e/host_traffic.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let failed: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FAIL")).collect();
    assert!(failed.is_empty(), "failed checks: {failed:#?}");
    for want in [
        "PASS start",
        "PASS host-backend-tcp",
        "PASS host-backend-udp",
        "PASS vip-nat:",
        "PASS vip-nat-udp",
        "PASS ping",
        "PASS arp",
        "PASS host-service",
        "PASS vip-other-port",
        "PASS late-address:",
        "PASS late-address-removed",
        "PASS vip-nat-after",
        "PASS stop",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "missing {want:?} in the report"
        );
    }
    // The numbers behind the checks, asserted again so a weakened script cannot pass.
    for b in ["b1", "b2", "b3"] {
        let line = format!("RESULT host-backend-tcp backend={b} got={b}");
        assert!(lines.contains(&line.as_str()), "missing {line:?}");
    }
    assert!(lines.contains(&"RESULT vip-nat requests=30 ok=30"));
    assert!(lines.contains(&"RESULT vip-nat-after requests=30 ok=30"));
    assert!(lines.contains(&"RESULT fails=0"), "no final result line");
    assert!(out.status.success(), "script exit status {:?}", out.status);
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left = String::from_utf8_lossy(&ns.stdout);
    assert!(
        !left.lines().any(|l| l.starts_with(&prefix)),
        "namespaces left behind: {left}"
    );
}
