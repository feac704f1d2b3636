//! Loss while Maglev tables swap under load: runs the benchmark's update scenario
//! (`bench/run.sh --quick update`: fiberlb-dataplane on AF_XDP veths in namespaces it creates
//! and removes, fiberlb-pktgen sending 1000 UDP flows to a nat VIP at a fixed rate while the
//! pool alternates between 4 and 3 backends every 100 ms through the shared-memory protocol)
//! and requires at least 10 swaps with 0 packets lost, and the same load without swaps lossless
//! too (if that loses, the machine could not carry the rate and the run says so).
//!
//! The rate is the highest of 150, 100 and 50 kpps whose control run (same load, no swaps) is
//! lossless here (`FIBERLB_UPDATE_RATE` fixes one): the generator, the sink's receive work and the
//! forwarder share this machine's two cores. At 150 kpps the code before the control thread left
//! the workers' cores (ad33ebd^) lost 1368 and 1306 packets in two runs (controls 0) and then 0
//! in five more; the current code lost 0 in five runs: the loss is intermittent, so this check
//! can catch it but a single pass does not prove it gone. No speed is asserted. The deterministic
//! check of the fix is `runtime::tests::control_thread_stays_off_the_worker_cores` in
//! fiberlb-dataplane: it fails on ad33ebd^ (the control thread allowed on the worker's core).
//!
//! Root only: prints why and passes when not root.

use std::process::Command;

/// One run of the update scenario at `rate` pps: (swaps, sent, lost, control lost, the run's
/// output).
fn run_at(rate: u32) -> (u64, u64, u64, u64, String, bool) {
    let bin_dir = fiberlb_tests::bin_dir(&["fiberlb-dataplane", "fiberlb-pktgen"]);
    let root = fiberlb_tests::workspace_root();
    let out = Command::new("bash")
        .arg(root.join("bench/run.sh"))
        .args(["--quick", "update"])
        .env("FIBERLB_BIN_DIR", &bin_dir)
        .env("UPDATE_RATE", rate.to_string())
        .current_dir(&root)
        .output()
        .expect("run bench/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
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
    (
        field("update_load_swaps"),
        field("update_load_sent"),
        field("update_load_lost"),
        field("update_control_lost"),
        format!("{stdout}\n{stderr}"),
        out.status.success(),
    )
}

#[test]
fn table_swaps_under_load_lose_nothing() {
    if !fiberlb_tests::is_root() {
        eprintln!("skipping update_swaps: needs root (network namespaces, XDP, AF_XDP)");
        return;
    }
    // The highest rate whose control run (the same load, no swaps) is lossless on this machine:
    // 150 kpps is where the old placement of the control thread lost packets during swaps (see
    // the header); a busier machine falls back to lower rates.
    let rates: Vec<u32> = match std::env::var("FIBERLB_UPDATE_RATE") {
        Ok(r) => vec![r
            .parse()
            .expect("FIBERLB_UPDATE_RATE: a number of packets/s")],
        Err(_) => vec![150_000, 100_000, 50_000],
    };
    let mut last = None;
    for rate in rates {
        let (swaps, sent, lost, control_lost, output, ok) = run_at(rate);
        eprintln!(
            "update scenario at {rate} pps: {swaps} swaps, {sent} sent, {lost} lost (control without swaps: {control_lost} lost)"
        );
        if control_lost > 0 {
            eprintln!("the load without swaps lost packets at {rate} pps: trying a lower rate");
            last = Some(rate);
            continue;
        }
        assert!(swaps >= 10, "only {swaps} swaps ran under load");
        assert!(sent > 0);
        assert_eq!(
            lost, 0,
            "{lost} of {sent} packets lost while the tables swapped at {rate} pps"
        );
        assert!(ok, "bench/run.sh failed: {output}");
        // commit -> Applied, asserted loosely (the goals are p99 <= 1 ms idle, <= 2 ms at full
        // load; this shared machine varies): a p99 this far off means a wait crept back in.
        let update = std::fs::read_to_string(
            fiberlb_tests::workspace_root().join("results/latest/update.txt"),
        )
        .expect("update.txt");
        for key in ["update_idle_p99_us", "update_full_p99_us"] {
            let us: f64 = update
                .split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{key}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{key} missing in update.txt: {update}"));
            eprintln!("{key} = {us} us");
            assert!(us < 50_000.0, "{key} = {us} us: over 50 ms");
        }
        return;
    }
    panic!(
        "the load without swaps lost packets at every rate down to {} pps: the machine cannot carry the check",
        last.unwrap_or(0)
    );
}
