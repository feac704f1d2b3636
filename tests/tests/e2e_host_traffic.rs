//! End to end: the lb host's own traffic is not taken by the XDP program. Runs
//! `tests/e2e/host_traffic.sh` (a nat VIP to three real backends, in network namespaces the
//! script creates and always removes) with the release binary and asserts on every check: the
//! host reaches the nat backends' address:ports directly (what health checks do), ARP, ping and
//! TCP to the host's own addresses pass, addresses added after the start are picked up, and
//! clients still reach the VIP.
//!
//! Root only: prints why and passes when not root. `FIBERLB_BIN_DIR` names a directory with
//! a built `fiberlb-dataplane`; without it the binary is built (`fiberlb_tests::bin_path`).

use fiberlb_tests::{run_e2e_script, E2eScript};

#[test]
fn host_traffic_passes_to_the_kernel() {
    if !fiberlb_tests::is_root() {
        eprintln!("skipping e2e_host_traffic: needs root (network namespaces, XDP, AF_XDP)");
        return;
    }
    let report = run_e2e_script(&E2eScript {
        script: "host_traffic.sh",
        bin_dir: &fiberlb_tests::bin_dir(&["fiberlb-dataplane"]),
        prefix_var: "FHT_PREFIX",
        prefix_tag: "fhtt",
        env: &[],
        required: &[
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
        ],
    });
    // The numbers behind the checks, asserted again so a weakened script cannot pass.
    for b in ["b1", "b2", "b3"] {
        let line = format!("RESULT host-backend-tcp backend={b} got={b}");
        assert!(report.has_line(&line), "missing {line:?}");
    }
    for line in [
        "RESULT vip-nat requests=30 ok=30",
        "RESULT vip-nat-after requests=30 ok=30",
    ] {
        assert!(report.has_line(line), "missing {line:?}");
    }
}
