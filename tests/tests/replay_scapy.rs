//! The offline replay end to end: the sample capture through `fiberlb-dataplane replay`, the
//! counters it prints, and the output capture read by an independent parser (scapy), which
//! checks every checksum and the rewrite each forwarding mode must have done.

use std::process::Command;

use fiberlb_tests::{bin_path, sample::write_sample_capture, workspace_root};

#[test]
fn replay_output_is_valid_for_scapy() {
    let dir = std::env::temp_dir().join(format!("fiberlb-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.pcap");
    let output = dir.join("out.pcap");
    let counts = write_sample_capture(&input).unwrap();
    let root = workspace_root();
    let out = Command::new(bin_path("fiberlb-dataplane"))
        .arg("replay")
        .arg("--services")
        .arg(root.join("examples/services.yaml"))
        .arg("--config")
        .arg(root.join("examples/replay.toml"))
        .arg("--in")
        .arg(&input)
        .arg("--out")
        .arg(&output)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = String::from_utf8_lossy(&out.stdout);
    let num = |key: &str| -> u64 {
        let i = stats
            .find(&format!("\"{key}\": "))
            .unwrap_or_else(|| panic!("{key} in {stats}"));
        stats[i + key.len() + 4..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    };
    let forwarded = counts.web_http
        + counts.web_tls
        + counts.dns_udp
        + counts.dns_tcp
        + counts.api_v6
        + counts.api_v6_nat
        + counts.game
        + counts.nat_replies
        + counts.icmp
        + counts.fragments;
    assert_eq!(num("forwarded") as usize, forwarded, "{stats}");
    assert_eq!(
        num("dropped") as usize,
        counts.junk + counts.staging,
        "{stats}"
    );
    assert_eq!(num("nat_replies") as usize, counts.nat_replies);
    assert_eq!(num("icmp_to_backend") as usize, counts.icmp);
    assert_eq!(num("no_backend"), 1);
    assert_eq!(num("ttl_exceeded"), 1);
    assert_eq!(num("malformed"), 2);

    let py = Command::new("/usr/bin/python3")
        .arg(root.join("scripts/check_capture.py"))
        .arg(&output)
        .output()
        .expect("python3 with scapy (scripts/setup.sh installs python3-scapy)");
    let report = String::from_utf8_lossy(&py.stdout);
    assert!(
        py.status.success(),
        "scapy found problems:\n{report}\n{}",
        String::from_utf8_lossy(&py.stderr)
    );
    for (key, want) in [
        ("web_http", counts.web_http),
        ("web_tls", counts.web_tls),
        ("dns_udp", counts.dns_udp),
        ("api_v6", counts.api_v6),
        ("api_v6_nat", counts.api_v6_nat),
        ("game", counts.game),
        ("nat_replies", counts.nat_replies),
        ("fragments", counts.fragments),
        ("icmp", counts.icmp),
    ] {
        assert!(
            report.contains(&format!("\"{key}\": {want}")),
            "scapy saw a different {key} count:\n{report}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn replay_rejects_a_bad_services_file_with_its_line() {
    let dir = std::env::temp_dir().join(format!("fiberlb-replay-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let services = dir.join("bad.yaml");
    std::fs::write(
        &services,
        "pools:\n  - name: web\n    table_size: 65536\n    backends: []\n",
    )
    .unwrap();
    let out = Command::new(bin_path("fiberlb-dataplane"))
        .args(["replay", "--services"])
        .arg(&services)
        .arg("--in")
        .arg(dir.join("none.pcap"))
        .arg("--out")
        .arg(dir.join("out.pcap"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:3:") && err.contains("prime"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
