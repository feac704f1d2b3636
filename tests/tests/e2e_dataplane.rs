//! End to end: runs `tests/e2e/dataplane.sh` (client — fiberlb on two AF_XDP veths — three
//! real HTTP/UDP backends, in network namespaces the script creates and always removes) with
//! the release binary, and asserts on its report.
//!
//! Root only: prints why and passes when not root. `FIBERLB_BIN_DIR` names a directory with
//! a built `fiberlb-dataplane`; without it the release binary is built.

use std::path::PathBuf;
use std::process::Command;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FIBERLB_BIN_DIR") {
        return PathBuf::from(d);
    }
    let root = workspace();
    let status = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "-p",
            "fiberlb-dataplane",
            "--bin",
            "fiberlb-dataplane",
        ])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build --release failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("release")
}

#[test]
fn dataplane_end_to_end() {
    if !is_root() {
        eprintln!("skipping e2e_dataplane: needs root (network namespaces, XDP, AF_XDP)");
        return;
    }
    let bins = bin_dir();
    let script = workspace().join("tests/e2e/dataplane.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env("FIBERLB_BIN_DIR", &bins)
        .output()
        .expect("run tests/e2e/dataplane.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let failed: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FAIL")).collect();
    assert!(failed.is_empty(), "failed checks: {failed:#?}");
    for want in [
        "PASS start",
        "PASS second-instance",
        "PASS nat-http",
        "PASS dsr-http",
        "PASS nat-download",
        "PASS dsr-download",
        "PASS nat-udp",
        "PASS dsr-udp",
        "PASS ping-lb",
        "PASS reconfig",
        "PASS stats",
        "PASS stop",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "missing {want:?} in the report"
        );
    }
    assert!(lines.contains(&"RESULT fails=0"), "no final result line");
    assert!(out.status.success(), "script exit status {:?}", out.status);
    // No namespace of this run survives.
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left = String::from_utf8_lossy(&ns.stdout);
    assert!(
        !left.lines().any(|l| l.starts_with("fe2e")),
        "namespaces left behind: {left}"
    );
}
