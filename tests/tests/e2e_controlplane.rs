//! End to end for the control plane: runs `tests/e2e/controlplane.sh` (fiberlb-dataplane and
//! fiberlbd on one shm region, configured only with fiberlbctl; a real curl client and three
//! real HTTP backends in network namespaces the script creates and always removes) with the
//! release binaries, and asserts on every check of its report.
//!
//! Root only: prints why and passes when not root. `FIBERLB_BIN_DIR` names a directory with
//! the built binaries; without it they are built (`fiberlb_tests::bin_path`).

use std::process::Command;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The value of `key=` in the first `RESULT <check> ...` line.
fn result_field<'a>(lines: &[&'a str], check: &str, key: &str) -> Option<&'a str> {
    let prefix = format!("RESULT {check} ");
    let line = lines.iter().find(|l| l.starts_with(&prefix))?;
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn controlplane_end_to_end() {
    if !is_root() {
        eprintln!("skipping e2e_controlplane: needs root (network namespaces, XDP, AF_XDP)");
        return;
    }
    let bins = fiberlb_tests::bin_path("fiberlb-dataplane")
        .parent()
        .expect("binary has a folder")
        .to_path_buf();
    fiberlb_tests::bin_path("fiberlbd");
    fiberlb_tests::bin_path("fiberlbctl");
    let script = fiberlb_tests::workspace_root().join("tests/e2e/controlplane.sh");
    let prefix = format!("fcpt{}", std::process::id());
    let out = Command::new("bash")
        .arg(&script)
        .env("FIBERLB_BIN_DIR", &bins)
        .env("FCP_PREFIX", &prefix)
        .output()
        .expect("run tests/e2e/controlplane.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let failed: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FAIL")).collect();
    assert!(failed.is_empty(), "failed checks: {failed:#?}");
    for want in [
        "PASS setup",
        "PASS traffic",
        "PASS health-down",
        "PASS health-up",
        "PASS drain",
        "PASS fiberlbd-restart",
        "PASS dataplane-restart",
        "PASS stats",
        "PASS metrics",
        "PASS lookup",
        "PASS top",
        "PASS health-path",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "missing {want:?} in the report"
        );
    }
    // The numbers behind the checks, asserted again so a weakened script cannot pass.
    assert_eq!(result_field(&lines, "traffic", "ok"), Some("150"));
    for b in ["b1", "b2", "b3"] {
        let n: u32 = result_field(&lines, "traffic", b)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(n > 0, "{b} got no traffic");
    }
    assert_eq!(result_field(&lines, "health-down", "ok"), Some("60"));
    assert_eq!(result_field(&lines, "health-down", "b2"), Some("0"));
    assert_eq!(result_field(&lines, "drain", "b1"), Some("0"));
    assert_eq!(
        result_field(&lines, "drain", "download_sha_ok"),
        Some("yes")
    );
    assert_eq!(
        result_field(&lines, "fiberlbd-restart", "failed"),
        Some("0")
    );
    let resumed: u64 = result_field(&lines, "dataplane-restart", "resumed_ms")
        .and_then(|v| v.parse().ok())
        .expect("traffic resumed after the data plane restart");
    assert!(resumed <= 2000, "traffic resumed after {resumed} ms");
    assert_eq!(result_field(&lines, "top", "frames"), Some("2"));
    assert!(lines.contains(&"RESULT fails=0"), "no final result line");
    assert!(out.status.success(), "script exit status {:?}", out.status);
    // No namespace of this run survives.
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left = String::from_utf8_lossy(&ns.stdout);
    assert!(
        !left.lines().any(|l| l.starts_with(&prefix)),
        "namespaces left behind: {left}"
    );
}
