//! End to end for the control plane: runs `tests/e2e/controlplane.sh` (fiberlb-dataplane and
//! fiberlbd on one shm region, configured only with fiberlbctl; a real curl client and three
//! real HTTP backends in network namespaces the script creates and always removes) with the
//! release binaries, and asserts on every check of its report.
//!
//! Root only: prints why and passes when not root. `FIBERLB_BIN_DIR` names a directory with
//! the built binaries; without it they are built (`fiberlb_tests::bin_path`).

use fiberlb_tests::{run_e2e_script, E2eScript};

/// The two runs share the machine's two cores and the worker core: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(store: &str) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if !fiberlb_tests::is_root() {
        eprintln!("skipping e2e_controlplane: needs root (network namespaces, XDP, AF_XDP)");
        return;
    }
    let report = run_e2e_script(&E2eScript {
        script: "controlplane.sh",
        bin_dir: &fiberlb_tests::bin_dir(&["fiberlb-dataplane", "fiberlbd", "fiberlbctl"]),
        prefix_var: "FCP_PREFIX",
        prefix_tag: if store == "etcd" { "fcpe" } else { "fcpt" },
        env: &[("FCP_STORE", store)],
        required: &[
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
        ],
    });
    // The numbers behind the checks, asserted again so a weakened script cannot pass.
    let field = |check, key| report.result_field(check, key);
    assert_eq!(field("traffic", "ok"), Some("150"));
    for b in ["b1", "b2", "b3"] {
        let n: u32 = field("traffic", b)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(n > 0, "{b} got no traffic");
    }
    assert_eq!(field("health-down", "ok"), Some("60"));
    assert_eq!(field("health-down", "b2"), Some("0"));
    assert_eq!(field("drain", "b1"), Some("0"));
    assert_eq!(field("drain", "download_sha_ok"), Some("yes"));
    assert_eq!(field("fiberlbd-restart", "failed"), Some("0"));
    let resumed: u64 = field("dataplane-restart", "resumed_ms")
        .and_then(|v| v.parse().ok())
        .expect("traffic resumed after the data plane restart");
    assert!(resumed <= 2000, "traffic resumed after {resumed} ms");
    assert_eq!(field("top", "frames"), Some("2"));
    if store == "etcd" {
        assert_eq!(field("etcd-outage", "failed"), Some("0"));
        assert_eq!(field("etcd-outage", "unreachable_reported"), Some("1"));
        assert_eq!(field("etcd-outage", "applied"), Some("1"));
    }
}

#[test]
fn controlplane_end_to_end() {
    run("redb");
}

/// The same end-to-end checks with fiberlbd's configuration in a real etcd, plus an etcd
/// outage during a request stream (0 failed requests, writes refused, applied after it).
#[test]
fn controlplane_end_to_end_etcd() {
    run("etcd");
}
