//! Scrapes the metrics endpoint with a real HTTP client (hyper) and checks the parsed text
//! against counters written into a real region and a slots file in the data plane's format.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fiberlb_controlplane::api::DataplaneView;
use fiberlb_controlplane::health::{BackendId, Health, HealthMap};
use fiberlb_controlplane::metrics::{self, MetricsSource, RegionView};
use fiberlb_controlplane::program::ProgramStatus;
use fiberlb_shared::shm::counters::{CountersLayout, ObjectCounters, Totals};
use fiberlb_shared::shm::region::{monotonic_ns, Region, RegionConfig};
use http_body_util::{BodyExt, Empty};
use tokio::sync::watch;

/// `name{labels}` → value, labels kept as written.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').expect("sample line");
        out.insert(key.to_string(), value.parse::<f64>().expect("number"));
    }
    out
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "metrics")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ctype, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn scrape_reports_counters_health_and_programmer_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("region");
    let dp = Region::create(
        &path,
        &RegionConfig {
            ring_capacity: 8,
            // Four counter blocks; the data plane runs three workers (its slots file says so).
            counters: CountersLayout {
                workers: 4,
                listeners: 4,
                backends: 8,
            },
        },
    )
    .unwrap();
    dp.header().set_applied_generation(12);
    dp.beat();
    for w in 0..2u64 {
        let c = dp.worker_counters(w as u32).unwrap();
        c.set_totals(Totals {
            rx_packets: 100 + w,
            rx_bytes: 6400,
            tx_packets: 90,
            tx_bytes: 5000,
            to_host: 3 + w,
        });
        c.set_drops(3, 5); // no_listener
        c.set_drops(12, 2 * w); // tx_ring_full
        c.set_drops(20, 1); // a reason this build has no name for
        c.set_listener(
            1,
            ObjectCounters {
                packets: 40,
                bytes: 4000,
                new_flows: 4,
                active_flows: 10 + w,
            },
        );
        c.set_backend(
            2,
            ObjectCounters {
                packets: 30 + w,
                bytes: 3000,
                new_flows: 3,
                active_flows: 7 * (w + 1),
            },
        );
    }
    let instance = format!("{:032x}", dp.header().instance_id());
    // The data plane's slots file, as dataplane/src/control.rs writes it.
    let slots = format!(
        r#"{{"instance_id":"{instance}","generation":12,"workers":3,
            "control":{{"applied":3,"rejected_corrupt":0,"rejected_out_of_order":0,"rejected_protocol":0,"rejected_invalid":0,"aborted":0,"stale_discarded":0,"replies_dropped":0,"ring_errors":0}},
            "listeners":[{{"slot":1,"id":7,"name":"web \"a\"/80/tcp","vip":"192.0.2.1","port":80,"protocol":"tcp","mode":"dsr"}}],
            "backends":[{{"slot":2,"id":33,"pool":"web","address":"2001:db8::5","port":8080}}]}}"#
    );
    std::fs::write(metrics::slots_path_for(&path), slots).unwrap();
    // The data plane's ports file, as dataplane/src/port_stats.rs writes it: an AF_XDP port
    // (sockets' and XDP program's counters, no rx_nombuf) and a DPDK one (rx_nombuf, link down,
    // no speed), plus a field this build does not know.
    let ports_file = |written_ns: u64| {
        format!(
            r#"{{"instance_id":"{instance}","written_monotonic_ns":{written_ns},
                "written_unix_ms":1,"interval_ms":1000,"from_the_future":[1],
                "ports":[
                 {{"name":"client","driver":"afxdp","device":"eth0","link_up":true,
                   "speed_mbps":10000,"rx_packets":1000,"tx_packets":900,"rx_bytes":64000,
                   "tx_bytes":57600,"rx_missed":12,"rx_errors":1,"tx_errors":2,"rx_dropped":3,
                   "xsk":{{"sockets":2,"rx_dropped":0,"rx_ring_full":10,"rx_fill_ring_empty":4,
                          "rx_invalid_descs":0,"tx_invalid_descs":0,"tx_ring_empty":0}},
                   "xdp":{{"redirected":990,"passed":10,"parse_errors":0,"no_socket":0}}}},
                 {{"name":"backend","driver":"dpdk","device":"0000:01:00.0","pmd":"net_ice",
                   "link_up":false,"rx_packets":5,"tx_packets":6,"rx_bytes":7,"tx_bytes":8,
                   "rx_missed":9,"rx_errors":0,"tx_errors":0,"rx_nombuf":11}}]}}"#
        )
    };
    std::fs::write(metrics::ports_path_for(&path), ports_file(monotonic_ns())).unwrap();

    let cp = Arc::new(Region::attach(&path).unwrap());
    let (region_tx, region_rx) = watch::channel(Some(cp));
    let mut health = HealthMap::new();
    health.insert(
        BackendId(33),
        Health {
            up: false,
            since: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            last_error: Some("x".into()),
        },
    );
    health.insert(
        BackendId(34),
        Health {
            up: true,
            since: SystemTime::now(),
            last_error: None,
        },
    );
    let (_health_tx, health_rx) = watch::channel(Arc::new(health));
    let (_program_tx, program_rx) = watch::channel(ProgramStatus {
        attached: true,
        desired_generation: 12,
        synced_store_generation: Some(12),
        transactions_applied: 3,
        transactions_rejected: 1,
        full_resyncs: 1,
        attaches: 1,
        last_apply: Some(Duration::from_millis(2)),
        ..ProgramStatus::default()
    });
    let source = MetricsSource {
        region: region_rx.clone(),
        health: Some(health_rx),
        program: Some(program_rx),
        node: Some(watch::channel(node_status()).1),
        store: Some(
            watch::channel(fiberlb_controlplane::store::StoreHealth {
                kind: "etcd",
                location: "http://127.0.0.1:2379 prefix /fiberlb".into(),
                reachable: false,
                error: "connection refused".into(),
                generation: 7,
            })
            .1,
        ),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut stop = stop_rx.clone();
    let (addr, server) = metrics::bind("127.0.0.1:0".parse().unwrap(), source, async move {
        let _ = stop.wait_for(|s| *s).await;
    })
    .await
    .unwrap();

    let (status, ctype, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let m = parse(&body);
    let v = |k: &str| *m.get(k).unwrap_or_else(|| panic!("{k} missing in\n{body}"));
    assert_eq!(v("fiberlb_dataplane_attached"), 1.0);
    assert_eq!(v("fiberlb_dataplane_applied_generation"), 12.0);
    let age = v("fiberlb_dataplane_heartbeat_age_seconds");
    assert!((0.0..5.0).contains(&age), "{age}");
    assert_eq!(
        v(&format!(
            "fiberlb_dataplane_info{{instance_id=\"{instance}\",pid=\"{}\"}}",
            std::process::id()
        )),
        1.0
    );
    assert_eq!(v("fiberlb_rx_packets_total"), 201.0);
    assert_eq!(v("fiberlb_rx_bytes_total"), 12800.0);
    assert_eq!(v("fiberlb_tx_packets_total"), 180.0);
    assert_eq!(v("fiberlb_drops_total{reason=\"no_listener\"}"), 10.0);
    assert_eq!(v("fiberlb_drops_total{reason=\"malformed\"}"), 0.0);
    assert_eq!(v("fiberlb_drops_total{reason=\"reason_20\"}"), 2.0);
    let l =
        r#"{listener_id="7",listener="web \"a\"/80/tcp",vip="192.0.2.1",port="80",protocol="tcp"}"#;
    assert_eq!(v(&format!("fiberlb_listener_packets_total{l}")), 80.0);
    assert_eq!(v(&format!("fiberlb_listener_bytes_total{l}")), 8000.0);
    assert_eq!(v(&format!("fiberlb_listener_new_flows_total{l}")), 8.0);
    let b = r#"{backend_id="33",pool="web",address="2001:db8::5",port="8080"}"#;
    assert_eq!(v(&format!("fiberlb_backend_packets_total{b}")), 61.0);
    assert_eq!(v(&format!("fiberlb_backend_new_flows_total{b}")), 6.0);
    // Active flows: gauges summed over workers, same labels as the counters.
    assert_eq!(v(&format!("fiberlb_listener_active_flows{l}")), 21.0);
    assert_eq!(v(&format!("fiberlb_backend_active_flows{b}")), 21.0);
    assert_eq!(
        body.matches("# TYPE fiberlb_listener_active_flows gauge")
            .count(),
        1
    );
    assert_eq!(
        body.matches("# TYPE fiberlb_backend_active_flows gauge")
            .count(),
        1
    );
    assert_eq!(v("fiberlb_to_host_packets_total"), 7.0);
    assert_eq!(v("fiberlb_drops_total{reason=\"tx_ring_full\"}"), 2.0);
    // Per worker: the three the slots file names (the third never counted: zeros), not the
    // fourth block.
    assert_eq!(v("fiberlb_worker_rx_packets_total{worker=\"0\"}"), 100.0);
    assert_eq!(v("fiberlb_worker_rx_packets_total{worker=\"1\"}"), 101.0);
    assert_eq!(v("fiberlb_worker_rx_packets_total{worker=\"2\"}"), 0.0);
    assert!(!m.contains_key("fiberlb_worker_rx_packets_total{worker=\"3\"}"));
    assert_eq!(v("fiberlb_worker_rx_bytes_total{worker=\"1\"}"), 6400.0);
    assert_eq!(v("fiberlb_worker_tx_packets_total{worker=\"1\"}"), 90.0);
    assert_eq!(v("fiberlb_worker_tx_bytes_total{worker=\"0\"}"), 5000.0);
    assert_eq!(v("fiberlb_worker_to_host_packets_total{worker=\"1\"}"), 4.0);
    assert_eq!(
        v("fiberlb_worker_drops_total{worker=\"1\",reason=\"tx_ring_full\"}"),
        2.0
    );
    assert_eq!(
        v("fiberlb_worker_drops_total{worker=\"0\",reason=\"tx_ring_full\"}"),
        0.0
    );
    assert_eq!(
        v("fiberlb_worker_drops_total{worker=\"0\",reason=\"no_listener\"}"),
        5.0
    );
    assert_eq!(
        v("fiberlb_worker_drops_total{worker=\"1\",reason=\"reason_20\"}"),
        1.0
    );
    assert!(!m.contains_key("fiberlb_worker_drops_total{worker=\"2\",reason=\"reason_20\"}"));
    assert_eq!(
        body.matches("# TYPE fiberlb_worker_drops_total counter")
            .count(),
        1
    );
    // NIC ports, from the ports file.
    let client = r#"{port="client",driver="afxdp"}"#;
    let backend = r#"{port="backend",driver="dpdk"}"#;
    assert_eq!(v(&format!("fiberlb_port_up{client}")), 1.0);
    assert_eq!(v(&format!("fiberlb_port_up{backend}")), 0.0);
    assert_eq!(v(&format!("fiberlb_port_speed_mbps{client}")), 10000.0);
    assert!(!m.contains_key(&format!("fiberlb_port_speed_mbps{backend}")));
    assert_eq!(v(&format!("fiberlb_port_rx_packets_total{client}")), 1000.0);
    assert_eq!(v(&format!("fiberlb_port_tx_packets_total{client}")), 900.0);
    assert_eq!(v(&format!("fiberlb_port_rx_bytes_total{client}")), 64000.0);
    assert_eq!(v(&format!("fiberlb_port_tx_bytes_total{backend}")), 8.0);
    assert_eq!(v(&format!("fiberlb_port_rx_missed_total{client}")), 12.0);
    assert_eq!(v(&format!("fiberlb_port_rx_missed_total{backend}")), 9.0);
    assert_eq!(v(&format!("fiberlb_port_rx_errors_total{client}")), 1.0);
    assert_eq!(v(&format!("fiberlb_port_tx_errors_total{client}")), 2.0);
    // rx_nombuf only where the driver has it.
    assert_eq!(v(&format!("fiberlb_port_rx_nombuf_total{backend}")), 11.0);
    assert!(!m.contains_key(&format!("fiberlb_port_rx_nombuf_total{client}")));
    assert_eq!(
        v(&format!("fiberlb_port_xsk_rx_ring_full_total{client}")),
        10.0
    );
    assert_eq!(
        v(&format!(
            "fiberlb_port_xsk_rx_fill_ring_empty_total{client}"
        )),
        4.0
    );
    assert_eq!(
        v(&format!(
            "fiberlb_port_xdp_redirected_packets_total{client}"
        )),
        990.0
    );
    assert!(!m.contains_key(&format!("fiberlb_port_xdp_passed_packets_total{backend}")));
    assert!((0.0..5.0).contains(&v("fiberlb_port_stats_age_seconds")));
    assert_eq!(
        body.matches("# TYPE fiberlb_port_rx_missed_total counter")
            .count(),
        1
    );
    assert_eq!(v("fiberlb_backend_up{backend_id=\"33\"}"), 0.0);
    assert_eq!(v("fiberlb_backend_up{backend_id=\"34\"}"), 1.0);
    assert_eq!(
        v("fiberlb_backend_health_since_seconds{backend_id=\"33\"}"),
        1_700_000_000.0
    );
    assert_eq!(
        v("fiberlb_controlplane_transactions_total{result=\"applied\"}"),
        3.0
    );
    assert_eq!(
        v("fiberlb_controlplane_transactions_total{result=\"rejected\"}"),
        1.0
    );
    assert_eq!(v("fiberlb_controlplane_synced_generation"), 12.0);
    assert_eq!(v("fiberlb_controlplane_last_apply_seconds"), 0.002);
    // BGP announcement and drain.
    assert_eq!(v("fiberlb_bgp_announced_vips"), 1.0);
    assert_eq!(v("fiberlb_bgp_vip_announced{vip=\"192.0.2.1\"}"), 1.0);
    assert_eq!(v("fiberlb_bgp_vip_announced{vip=\"192.0.2.2\"}"), 0.0);
    assert_eq!(v("fiberlb_bgp_session_up{protocol=\"tor1\"}"), 1.0);
    assert_eq!(v("fiberlb_bgp_session_up{protocol=\"tor2\"}"), 0.0);
    assert_eq!(v("fiberlb_store_up{store=\"etcd\"}"), 0.0);
    assert_eq!(v("fiberlb_store_generation"), 7.0);
    assert_eq!(
        v("fiberlb_bgp_last_change_timestamp_seconds"),
        1_700_000_000.5
    );
    assert_eq!(v("fiberlb_bgp_error"), 0.0);
    assert_eq!(v("fiberlb_node_draining"), 0.0);
    // Every query of the Grafana dashboard names metrics (and labels) this scrape has.
    check_dashboard(&body);
    // Every family is declared once, before its samples.
    assert_eq!(
        body.matches("# TYPE fiberlb_drops_total counter").count(),
        1
    );

    // The gRPC view reads the same counters by object id.
    let view = RegionView {
        region: region_rx.clone(),
    };
    let c = view.counters().unwrap();
    assert_eq!(c.rx_packets, 201);
    assert_eq!(c.drops, 14);
    assert_eq!(c.to_host, 7);
    assert_eq!(c.rx_bytes, 12800);
    assert_eq!(c.listeners[&7].packets, 80);
    assert_eq!(c.listeners[&7].active_flows, 21);
    assert_eq!(c.backends[&33].bytes, 6000);
    assert_eq!(c.backends[&33].active_flows, 21);
    assert_eq!(c.workers.len(), 3);
    assert_eq!(c.workers[1].rx_packets, 101);
    assert_eq!(c.workers[1].to_host, 4);
    assert_eq!(c.workers[1].drops, 8);
    assert_eq!(c.workers[1].drops_by_reason[12], 2);
    assert_eq!(c.workers[2].rx_packets, 0);
    assert_eq!(c.workers[2].drops, 0);
    assert_eq!(view.status().unwrap().applied_generation, 12);
    assert!(!c.ports_stale);
    assert!(c.ports_age_ms.unwrap() < 5000);
    assert_eq!(c.ports.len(), 2);
    assert_eq!(c.ports[0].name, "client");
    assert_eq!(c.ports[0].xsk.unwrap().rx_ring_full, 10);
    assert_eq!(c.ports[1].rx_nombuf, Some(11));
    assert_eq!(c.ports[1].pmd.as_deref(), Some("net_ice"));

    // A data plane that stopped publishing (the file is 6 s old): no port numbers presented
    // as live, only the age.
    std::fs::write(
        metrics::ports_path_for(&path),
        ports_file(monotonic_ns().saturating_sub(6_000_000_000)),
    )
    .unwrap();
    let (_, _, body) = get(addr, "/metrics").await;
    let m = parse(&body);
    assert!(m["fiberlb_port_stats_age_seconds"] >= 6.0, "{body}");
    assert!(!body.contains("fiberlb_port_up{"), "{body}");
    assert!(!body.contains("fiberlb_port_rx_packets_total{"), "{body}");
    let c = view.counters().unwrap();
    assert!(c.ports_stale);
    assert!(c.ports.is_empty());
    assert!(c.ports_age_ms.unwrap() >= 6000);
    // Another instance's file (fresh or not) is not this data plane's: nothing at all.
    std::fs::write(
        metrics::ports_path_for(&path),
        ports_file(monotonic_ns()).replace(&instance, "00"),
    )
    .unwrap();
    let (_, _, body) = get(addr, "/metrics").await;
    assert!(!body.contains("fiberlb_port_"), "{body}");
    let c = view.counters().unwrap();
    assert_eq!(
        (c.ports.len(), c.ports_age_ms, c.ports_stale),
        (0, None, false)
    );

    // A slots file of another instance is ignored: no per-object rows, totals still there.
    std::fs::write(
        metrics::slots_path_for(&path),
        r#"{"instance_id":"00","generation":1,"listeners":[],"backends":[]}"#,
    )
    .unwrap();
    let (_, _, body) = get(addr, "/metrics").await;
    assert!(!body.contains("fiberlb_listener_packets_total{"));
    assert!(!body.contains("fiberlb_listener_active_flows{"));
    assert!(body.contains("fiberlb_rx_packets_total 201"));
    // Without a worker count, the blocks that counted anything: workers 0 and 1.
    let m = parse(&body);
    assert_eq!(m["fiberlb_worker_rx_packets_total{worker=\"1\"}"], 101.0);
    assert!(!m.contains_key("fiberlb_worker_rx_packets_total{worker=\"2\"}"));

    // Detached: only the attached gauge.
    region_tx.send_replace(None);
    let (_, _, body) = get(addr, "/metrics").await;
    let m = parse(&body);
    assert_eq!(m["fiberlb_dataplane_attached"], 0.0);
    assert!(!m.contains_key("fiberlb_rx_packets_total"));
    assert!(view.status().is_none());

    let (status, _, _) = get(addr, "/other").await;
    assert_eq!(status, 404);

    stop_tx.send_replace(true);
    tokio::time::timeout(Duration::from_secs(2), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

fn node_status() -> fiberlb_controlplane::bgp::NodeStatus {
    use fiberlb_controlplane::bgp::{NodeStatus, Session};
    NodeStatus {
        bgp_enabled: true,
        announced: ["192.0.2.1".parse().unwrap()].into(),
        withheld: [("192.0.2.2".parse().unwrap(), "no backend".to_string())].into(),
        sessions: vec![
            Session {
                name: "tor1".into(),
                state: "up".into(),
                since: "09:00:00".into(),
                info: "Established".into(),
            },
            Session {
                name: "tor2".into(),
                state: "start".into(),
                since: "09:00:00".into(),
                info: "Active".into(),
            },
        ],
        last_change_unix_ms: 1_700_000_000_500,
        ..NodeStatus::default()
    }
}

/// packaging/grafana/fiberlb.json: every metric its queries name is in `body`, and every label
/// it groups by (`by (...)`) or shows (`{{label}}`) is on that metric's samples.
fn check_dashboard(body: &str) {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/grafana/fiberlb.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut queries = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            queries.push((
                t["expr"].as_str().unwrap().to_string(),
                t["legendFormat"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    assert!(queries.len() >= 20, "{} queries", queries.len());
    let word = |s: &str, i: usize| {
        s[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect::<String>()
    };
    let mut checked = 0;
    for (expr, legend) in &queries {
        let mut metrics = Vec::new();
        let mut i = 0;
        while let Some(j) = expr[i..].find("fiberlb_") {
            let m = word(expr, i + j);
            i += j + m.len();
            metrics.push(m);
        }
        assert!(!metrics.is_empty(), "no metric in {expr}");
        let mut labels: Vec<String> = Vec::new();
        if let Some(k) = expr.find("by (") {
            let end = expr[k..].find(')').unwrap() + k;
            labels.extend(expr[k + 4..end].split(',').map(|l| l.trim().to_string()));
        }
        let mut rest = legend.as_str();
        while let Some(k) = rest.find("{{") {
            let end = rest[k..].find("}}").unwrap() + k;
            labels.push(rest[k + 2..end].to_string());
            rest = &rest[end + 2..];
        }
        labels.retain(|l| l != "instance" && l != "job");
        for m in &metrics {
            let samples: Vec<&str> = body
                .lines()
                .filter(|l| {
                    l.starts_with(m.as_str())
                        && matches!(l.as_bytes().get(m.len()), Some(b'{' | b' '))
                })
                .collect();
            assert!(
                !samples.is_empty(),
                "dashboard query {expr:?}: no {m} in the scrape"
            );
            for l in &labels {
                assert!(
                    samples.iter().any(|s| s.contains(&format!("{l}=\""))),
                    "dashboard query {expr:?} uses label {l}, which {m} does not have"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 25, "{checked}");
}
