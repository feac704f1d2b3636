//! End to end over IPv6 with two workers: runs `tests/e2e/ipv6_workers.sh` (client — fiberlb
//! on two 2-queue AF_XDP veths served by two workers — three real IPv6 backends; nat, dsr and
//! IP6IP6 tunnel listeners) with the release binary, and asserts on its report.
//!
//! Root only: prints why and passes when not root. `FIBERLB_BIN_DIR` names a directory with
//! a built `fiberlb-dataplane`; without it the binaries are built (`fiberlb_tests::bin_path`).

use fiberlb_tests::{run_e2e_script, E2eScript};

#[test]
fn ipv6_two_workers_end_to_end() {
    if !fiberlb_tests::is_root() {
        eprintln!("skipping e2e_ipv6_workers: needs root (network namespaces, XDP, AF_XDP)");
        return;
    }
    run_e2e_script(&E2eScript {
        script: "ipv6_workers.sh",
        bin_dir: &fiberlb_tests::bin_dir(&["fiberlb-dataplane"]),
        prefix_var: "FV6_PREFIX",
        prefix_tag: "fv6t",
        env: &[],
        required: &[
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
        ],
    });
}
