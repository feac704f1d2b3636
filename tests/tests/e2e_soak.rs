//! The soak test, 2 minutes: runs `tests/e2e/soak.sh` (fiberlb-dataplane on AF_XDP and
//! fiberlbd; short HTTP requests, UDP requests and long slow downloads through one nat VIP
//! while backend weights change every 3 s and a backend's health flaps every 10 s) and asserts
//! its checks: 0 long connections lost on the backends that stayed up, short and UDP failures
//! bounded by the down events, flat memory, no counter drift. `bench/soak.sh` runs it for 30
//! minutes. Root only: prints why and passes when not root.

use fiberlb_tests::{run_e2e_script, E2eScript};

#[test]
fn soak_two_minutes() {
    if !fiberlb_tests::is_root() {
        eprintln!("skipping e2e_soak: needs root (network namespaces, XDP, AF_XDP)");
        return;
    }
    let secs = std::env::var("SOAK_SECS").unwrap_or_else(|_| "120".into());
    let report = run_e2e_script(&E2eScript {
        script: "soak.sh",
        bin_dir: &fiberlb_tests::bin_dir(&["fiberlb-dataplane", "fiberlbd", "fiberlbctl"]),
        prefix_var: "FSK_PREFIX",
        prefix_tag: "fskt",
        env: &[("SOAK_SECS", &secs)],
        required: &[
            "PASS setup",
            "PASS soak-long",
            "PASS soak-short",
            "PASS soak-memory",
            "PASS soak-counters",
        ],
    });
    assert_eq!(
        report.result_field("soak-long", "lost_on_b1_b2"),
        Some("0"),
        "long connections lost on backends that stayed up"
    );
}
