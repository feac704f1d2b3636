//! End to end over IPv6 with two workers: runs `tests/e2e/ipv6_workers.sh` (client — fiberlb
//! on two 2-queue AF_XDP veths served by two workers — three real IPv6 backends; nat, dsr and
//! IP6IP6 tunnel listeners) with the release binary, and asserts on its report.
//!
//! Root only: prints why and passes when not root. `FIBERLB_BIN_DIR` names a directory with
//! a built `fiberlb-dataplane`; without it the release binary is built.

use std::process::Command;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn ipv6_two_workers_end_to_end() {
    if !is_root() {
        eprintln!("skipping e2e_ipv6_workers: needs root (network namespaces, XDP, AF_XDP)");
        return;
    }
    let bins = fiberlb_tests::bin_path("fiberlb-dataplane")
        .parent()
        .expect("binary has a directory")
        .to_path_buf();
    let script = fiberlb_tests::workspace_root().join("tests/e2e/ipv6_workers.sh");
    let prefix = format!("fv6t{}", std::process::id());
    let out = Command::new("bash")
        .arg(&script)
        .env("FIBERLB_BIN_DIR", &bins)
        .env("FV6_PREFIX", &prefix)
        .output()
        .expect("run tests/e2e/ipv6_workers.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let failed: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FAIL")).collect();
    assert!(failed.is_empty(), "failed checks: {failed:#?}");
    for want in [
        "PASS start: 2 workers",
        "PASS nat6-http",
        "PASS dsr6-http",
        "PASS tun6 IP6IP6",
        "PASS nat6-download",
        "PASS nat6-udp",
        "PASS client-address",
        "PASS stop",
        "PASS worker 0",
        "PASS worker 1",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "missing {want:?} in the report"
        );
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
