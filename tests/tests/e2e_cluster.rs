//! A two-node fiberlb tier behind a BGP/ECMP router: runs `tests/e2e/cluster.sh` (real BIRD 2
//! on the router and on both nodes with eBGP and BFD, the router's kernel spreading the VIPs
//! over both nodes; fiberlb-dataplane on AF_XDP and fiberlbd with `[bgp]` on each node; tunnel
//! (IPIP), dsr and nat listeners, three real HTTP backends) and asserts its checks: both nodes
//! announce and serve, both pick the same backend for every flow, a killed data plane is
//! withdrawn and its connections carry on over the other node byte-exact, the node rejoins,
//! `fiberlbctl node drain` moves traffic away without a failed connection, and a silent node
//! is withdrawn by BFD. The nat replies all go back through node B (the backends'
//! policy route), so the replies of flows that entered through A are translated back by a node
//! that never saw those flows: the reverse translation is stateless across nodes. Root only:
//! prints why and passes when not root.

use fiberlb_tests::{run_e2e_script, E2eScript, ScriptReport};

/// A number from a `RESULT` line (`never` and absent fields are failures).
fn ms(report: &ScriptReport, check: &str, key: &str) -> u64 {
    let v = report.result_field(check, key);
    v.and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("RESULT {check} {key}: {v:?} is not a number of ms"))
}

/// `a/b` fields whose two numbers are equal (everything survived).
fn all_of(report: &ScriptReport, check: &str, key: &str) {
    let v = report.result_field(check, key);
    let ok = v
        .and_then(|v| v.split_once('/'))
        .is_some_and(|(a, b)| a == b && !b.is_empty() && b != "0");
    assert!(ok, "RESULT {check} {key}={v:?}: want N/N");
}

#[test]
fn cluster_bgp_ecmp_failover_drain() {
    if !fiberlb_tests::is_root() {
        eprintln!("skipping e2e_cluster: needs root (network namespaces, XDP, AF_XDP, BIRD)");
        return;
    }
    let report = run_e2e_script(&E2eScript {
        script: "cluster.sh",
        bin_dir: &fiberlb_tests::bin_dir(&["fiberlb-dataplane", "fiberlbd", "fiberlbctl"]),
        prefix_var: "FCL_PREFIX",
        prefix_tag: "fclt",
        env: &[],
        required: &[
            "PASS setup: BIRD",
            "PASS bird-ecmp",
            "PASS bird-checklink",
            "PASS bird-configure",
            "PASS bird-kill",
            "PASS bird-bfd",
            "PASS setup: both nodes",
            "PASS spread",
            "PASS nat-return",
            "PASS lookup",
            "PASS failover",
            "PASS rejoin",
            "PASS drain",
            "PASS resume",
            "PASS fiberlbd-kill",
            "PASS node-death",
        ],
    });
    assert_eq!(
        report.result_field("lookup", "same_on_both"),
        Some("1000"),
        "both nodes name the same backend for every flow"
    );
    all_of(&report, "lookup", "real_requests_matching");
    all_of(&report, "failover", "downloads_ok");
    all_of(&report, "failover", "established_survived");
    all_of(&report, "rejoin", "established_survived");
    all_of(&report, "drain", "established_survived");
    all_of(&report, "fiberlbd-kill", "established_survived");
    // nat: answered through either node, every reply translated back by B (A's included)
    all_of(&report, "spread", "ok_nat");
    all_of(&report, "spread", "nat_replies_translated_by_b");
    all_of(&report, "lookup", "nat_real_requests_matching");
    all_of(&report, "nat-return", "ok");
    let sent = report.result_field("nat-return", "replies_sent_by_backends");
    assert!(
        sent.and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0),
        "nat-return: the backends sent no nat reply ({sent:?})"
    );
    for (key, want) in [
        ("translated_by_b", sent),
        ("translated_by_a", Some("0")),
        ("requests_via_b", Some("0")),
        ("kernel_saw_a", Some("0")),
        ("kernel_saw_b", Some("0")),
    ] {
        assert_eq!(
            report.result_field("nat-return", key),
            want,
            "RESULT nat-return {key}"
        );
    }
    assert_eq!(
        report.result_field("failover", "nat_download_ok"),
        Some("yes"),
        "the nat download through A completes byte-exact over B"
    );
    all_of(&report, "failover", "nat_established_survived");
    all_of(&report, "drain", "nat_established_survived");
    all_of(&report, "drain", "nat_requests_ok");
    assert_eq!(
        report.result_field("drain", "a_rx_packets_after"),
        Some("0"),
        "a drained node receives nothing new"
    );
    // Withdrawal times: a dead data plane within its heartbeat limit (300 ms) plus BIRD and
    // BGP; a silent node within BFD's 300 ms (both bounded generously: a shared 2-core VM).
    assert!(ms(&report, "failover", "route_ms") <= 2000);
    assert!(ms(&report, "failover", "failover_ms") <= 3000);
    assert!(ms(&report, "bird-bfd", "withdrawn_ms") <= 1000);
    assert!(ms(&report, "fiberlbd-kill", "withdrawn_ms") <= 1000);
    assert!(ms(&report, "node-death", "withdrawn_ms") <= 1000);
}
