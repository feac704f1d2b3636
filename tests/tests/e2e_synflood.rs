//! SYN flood at a nat VIP: runs `tests/e2e/synflood.sh` (a real client, three real HTTP
//! backends, hping3 flooding SYNs from random sources; fiberlb on AF_XDP with a flow table far
//! smaller than the flood's sources, a pool change in the middle of the flood; then Linux DNAT
//! under the same flood) and asserts on its report: every established connection — idle
//! between packets, the entries an LRU-only table gives up — survives byte-exact, new
//! connections keep being served; both forwarders' figures are printed.
//!
//! Root only: prints why and passes when not root.

use fiberlb_tests::{run_e2e_script, E2eScript};

#[test]
fn syn_flood_spares_established_and_new_connections() {
    if !fiberlb_tests::is_root() {
        eprintln!("skipping e2e_synflood: needs root (network namespaces, XDP, AF_XDP)");
        return;
    }
    let report = run_e2e_script(&E2eScript {
        script: "synflood.sh",
        bin_dir: &fiberlb_tests::bin_dir(&["fiberlb-dataplane"]),
        prefix_var: "FSF_PREFIX",
        prefix_tag: "fsft",
        env: &[],
        required: &["PASS synflood-fiberlb"],
    });
    let est = report.result_field("synflood-fiberlb", "established_ok");
    assert_eq!(
        est,
        Some("10/10"),
        "established connections through fiberlb"
    );
    for k in ["new_connections", "established"] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with("RESULT synflood-compare") && l.contains(k)),
            "the comparison with Linux DNAT is reported ({k})"
        );
    }
}
