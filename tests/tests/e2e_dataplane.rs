//! End to end: runs `tests/e2e/dataplane.sh` (client — fiberlb on two AF_XDP veths — three
//! real HTTP/UDP backends, in network namespaces the script creates and always removes) with
//! the release binary, and asserts on its report.
//!
//! Root only: prints why and passes when not root. `FIBERLB_BIN_DIR` names a directory with
//! a built `fiberlb-dataplane`; without it the binaries are built (`fiberlb_tests::bin_path`).

use fiberlb_tests::{run_e2e_script, E2eScript};

#[test]
fn dataplane_end_to_end() {
    if !fiberlb_tests::is_root() {
        eprintln!("skipping e2e_dataplane: needs root (network namespaces, XDP, AF_XDP)");
        return;
    }
    run_e2e_script(&E2eScript {
        script: "dataplane.sh",
        bin_dir: &fiberlb_tests::bin_dir(&["fiberlb-dataplane"]),
        prefix_var: "FE2E_PREFIX",
        prefix_tag: "fe2e",
        env: &[],
        required: &[
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
            "PASS port-stats",
            "PASS stop",
        ],
    });
}
