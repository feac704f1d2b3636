//! Loss while Maglev tables swap under load: runs the benchmark's update scenario
//! (`bench/run.sh --quick update`: fiberlb-dataplane on AF_XDP veths in namespaces it creates
//! and removes, fiberlb-pktgen sending 1000 UDP flows to a nat VIP at a fixed rate while the
//! pool alternates between 4 and 3 backends every 100 ms through the shared-memory protocol)
//! and requires at least 10 swaps with 0 packets lost, and the same load without swaps lossless
//! too (if that loses, the machine could not carry the rate and the run says so).
//!
//! The rate is modest (`FIBERLB_UPDATE_RATE`, default 50 000 pps) because the generator, the
//! sink's receive work and the forwarder share this machine's two cores; the benchmark runs the
//! same check at half of fiberlb's measured dsr rate. No speed is asserted.
//!
//! Root only: prints why and passes when not root.

use std::process::Command;

#[test]
fn table_swaps_under_load_lose_nothing() {
    if !fiberlb_tests::is_root() {
        eprintln!("skipping update_swaps: needs root (network namespaces, XDP, AF_XDP)");
        return;
    }
    let bin_dir = fiberlb_tests::bin_dir(&["fiberlb-dataplane", "fiberlb-pktgen"]);
    let root = fiberlb_tests::workspace_root();
    let rate = std::env::var("FIBERLB_UPDATE_RATE").unwrap_or_else(|_| "50000".into());
    let out = Command::new("bash")
        .arg(root.join("bench/run.sh"))
        .args(["--quick", "update"])
        .env("FIBERLB_BIN_DIR", &bin_dir)
        .env("UPDATE_RATE", &rate)
        .current_dir(&root)
        .output()
        .expect("run bench/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    // results/latest/update.txt: key=value words.
    let update = std::fs::read_to_string(root.join("results/latest/update.txt"))
        .unwrap_or_else(|e| panic!("no results/latest/update.txt ({e}): {stdout}\n{stderr}"));
    let field = |k: &str| -> u64 {
        update
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k} missing in update.txt: {update}"))
    };
    let (swaps, sent, lost, control_lost) = (
        field("update_load_swaps"),
        field("update_load_sent"),
        field("update_load_lost"),
        field("update_control_lost"),
    );
    eprintln!(
        "update scenario at {rate} pps: {swaps} swaps, {sent} sent, {lost} lost (control without swaps: {control_lost} lost)"
    );
    assert_eq!(
        control_lost, 0,
        "the load without swaps already lost packets: the machine cannot carry {rate} pps here"
    );
    assert!(swaps >= 10, "only {swaps} swaps ran under load");
    assert!(sent > 0);
    assert_eq!(
        lost, 0,
        "{lost} of {sent} packets lost while the tables swapped"
    );
    assert!(
        out.status.success(),
        "bench/run.sh failed: {stdout}\n{stderr}"
    );
}
