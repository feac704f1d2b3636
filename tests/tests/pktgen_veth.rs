//! Root-only functional test of `fiberlb-pktgen` itself on one veth pair between two network
//! namespaces the test creates (and always deletes): generator on one end, sink on the other.
//! Checks pktgen's counts against the kernel's own, independent interface counters (what left
//! the generator's veth, what arrived at the sink's; IPv6 is off on both so nothing else
//! crosses), that the counts add up (exactly the packets asked for), that
//! every flow is seen and stays on its one "backend", that sequence gaps match the loss, that
//! latency percentiles are ordered, and that the JSON summary parses (with python3's json).
//! No speed is asserted. The detection of inconsistent flows is unit-tested in
//! bench/src/pktgen/stats.rs with a deliberately inconsistent input.

use std::process::Command;

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deletes the namespaces on drop, also when an assertion fails.
struct Topology {
    a: String,
    b: String,
}

impl Topology {
    fn new() -> Topology {
        let id = std::process::id();
        let t = Topology {
            a: format!("pgta{id}"),
            b: format!("pgtb{id}"),
        };
        sh(&["ip", "netns", "add", &t.a]);
        sh(&["ip", "netns", "add", &t.b]);
        sh(&[
            "ip",
            "-n",
            &t.a,
            "link",
            "add",
            "x0",
            "address",
            "02:7e:00:00:00:01",
            "type",
            "veth",
            "peer",
            "name",
            "x1",
            "address",
            "02:7e:00:00:00:02",
            "netns",
            &t.b,
        ]);
        // No IPv6 (router solicitations, MLD): the interface counters then count only pktgen's
        // packets.
        for ns in [&t.a, &t.b] {
            sh(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ]);
        }
        sh(&["ip", "-n", &t.a, "link", "set", "x0", "up"]);
        sh(&["ip", "-n", &t.b, "link", "set", "x1", "up"]);
        t
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// The kernel's counter `stat` of `iface` in namespace `ns` (/sys/class/net/IF/statistics).
fn kernel_counter(ns: &str, iface: &str, stat: &str) -> f64 {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "cat"])
        .arg(format!("/sys/class/net/{iface}/statistics/{stat}"))
        .output()
        .expect("read interface statistics");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{ns}/{iface} {stat}: {out:?}"))
}

/// What the kernel counted during one pktgen run: packets x0 sent, packets x1 received.
struct KernelCounts {
    x0_tx: f64,
    x1_rx: f64,
}

/// Runs pktgen and returns selected summary fields, extracted by python3's JSON parser, and
/// the kernel's counts over the run.
fn pktgen(t: &Topology, extra: &[&str]) -> (Vec<f64>, KernelCounts) {
    let before = KernelCounts {
        x0_tx: kernel_counter(&t.a, "x0", "tx_packets"),
        x1_rx: kernel_counter(&t.b, "x1", "rx_packets"),
    };
    let bin = fiberlb_tests::bin_path("fiberlb-pktgen");
    let mut cmd = Command::new(bin);
    cmd.args([
        "run",
        "--tx-netns",
        &t.a,
        "--tx-iface",
        "x0",
        "--dst-mac",
        "02:7e:00:00:00:02",
        "--rx-netns",
        &t.b,
        "--rx-iface",
        "x1",
        "--quiet",
        "--duration",
        "20",
    ])
    .args(extra);
    let out = cmd.output().expect("run fiberlb-pktgen");
    assert!(
        out.status.success(),
        "fiberlb-pktgen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = r#"
import json, sys
d = json.load(sys.stdin)
s = d["sink"]
l = s["latency"]
print(d["tx_packets"], s["rx_packets"], d["lost_packets"], s["seq_gaps"], s["flows_seen"],
      s["inconsistent_flows"], len(s["backends"]), s["backends"][0]["packets"] if s["backends"] else 0,
      s["foreign"], l["samples"], l["min_us"], l["p50_us"], l["p99_us"], l["max_us"], s["reordered"],
      s["sink_rx_dropped"], s["sink_rx_ring_full"])
"#;
    let mut py = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    py.stdin
        .take()
        .expect("stdin")
        .write_all(&out.stdout)
        .expect("write");
    let res = py.wait_with_output().expect("python3");
    assert!(
        res.status.success(),
        "the JSON summary does not parse: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let kernel = KernelCounts {
        x0_tx: kernel_counter(&t.a, "x0", "tx_packets") - before.x0_tx,
        x1_rx: kernel_counter(&t.b, "x1", "rx_packets") - before.x1_rx,
    };
    let v = String::from_utf8_lossy(&res.stdout)
        .split_whitespace()
        .map(|v| v.parse().expect("number"))
        .collect();
    (v, kernel)
}

fn check((v, kernel): &(Vec<f64>, KernelCounts), count: f64, flows: f64) {
    let [tx, rx, lost, gaps, seen, incons, nback, back0, foreign, samples, min, p50, p99, max, _reord, sock_dropped, sock_full] =
        v[..]
    else {
        panic!("unexpected summary {v:?}");
    };
    assert_eq!(tx, count, "the generator sends exactly --count packets");
    // The kernel's independent view: the generator's veth sent exactly what pktgen says it
    // sent, and what the sink's veth received is what the sink counted plus what its AF_XDP
    // socket reported dropping (XDP_STATISTICS).
    assert_eq!(
        kernel.x0_tx, tx,
        "x0's kernel tx_packets counted {} packets, pktgen says it sent {tx}",
        kernel.x0_tx
    );
    assert_eq!(
        kernel.x1_rx,
        rx + sock_dropped + sock_full,
        "x1's kernel rx_packets counted {} packets; the sink counted {rx} received, its socket \
         {sock_dropped} dropped and {sock_full} ring-full",
        kernel.x1_rx
    );
    assert_eq!(lost, tx - rx, "the summary's loss is sent - received");
    assert!(
        rx > 0.5 * tx,
        "most packets arrive on a direct veth: {rx} of {tx}"
    );
    assert!(gaps <= lost, "sequence gaps ({gaps}) are losses ({lost})");
    assert_eq!(seen, flows, "every flow reached the sink");
    assert_eq!(incons, 0.0, "one backend: no flow can move");
    assert_eq!(nback, 1.0, "one destination MAC/address/port");
    assert_eq!(back0, rx, "the backend's count is the received count");
    assert_eq!(foreign, 0.0);
    assert_eq!(samples, rx, "one latency sample per packet");
    assert!(
        min > 0.0 && min <= p50 && p50 <= p99 && p99 <= max,
        "{min} {p50} {p99} {max}"
    );
}

#[test]
fn pktgen_counts_add_up_on_a_veth_pair() {
    if !fiberlb_tests::is_root() {
        eprintln!("skipping pktgen_veth: needs root (network namespaces, XDP, AF_XDP)");
        return;
    }
    let t = Topology::new();
    // UDP/IPv4, 64-byte frames, 500 flows over 50 sources x 10 ports, at a modest fixed rate.
    let v = pktgen(
        &t,
        &[
            "--vip",
            "198.18.100.1",
            "--flows",
            "500",
            "--src-count",
            "50",
            "--sport-count",
            "10",
            "--count",
            "20000",
            "--rate",
            "50000",
        ],
    );
    check(&v, 20000.0, 500.0);
    // TCP SYN over IPv6, 200-byte frames.
    let v = pktgen(
        &t,
        &[
            "--ipv6",
            "--proto",
            "tcp-syn",
            "--src",
            "2001:db8:1::1",
            "--vip",
            "2001:db8:100::1",
            "--size",
            "200",
            "--flows",
            "300",
            "--count",
            "9000",
            "--rate",
            "30000",
        ],
    );
    check(&v, 9000.0, 300.0);
}

#[test]
fn pktgen_refuses_too_few_tuples_for_the_flows() {
    let bin = fiberlb_tests::bin_path("fiberlb-pktgen");
    let out = Command::new(bin)
        .args([
            "run",
            "--tx-iface",
            "none0",
            "--dst-mac",
            "02:00:00:00:00:01",
            "--rx-iface",
            "none1",
            "--vip",
            "198.18.100.1",
            "--flows",
            "100",
            "--src-count",
            "3",
            "--sport-count",
            "3",
        ])
        .output()
        .expect("run fiberlb-pktgen");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("raise --src-count or --sport-count"), "{err}");
}
