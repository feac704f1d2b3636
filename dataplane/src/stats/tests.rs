//! Tests of [`super`].

use super::*;
use crate::control::{CounterPublisher, HighWater};
use crate::flow_table::{FlowKey, FlowState, FlowTable, Timeouts};
use crate::pipeline::WorkerCounters;
use fiberlb_shared::shm::counters::CountersLayout;
use fiberlb_shared::shm::region::RegionConfig;
use fiberlb_shared::slots::{BackendSlot, ControlCounts, ListenerSlot};
use std::sync::atomic::Ordering;
use std::sync::Arc;

fn temp_region(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fiberlb-unit-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("region")
}

/// A worker's counters with `flows` live flows of listener slot 0 on backend slot 1,
/// counted by a complete sweep.
fn counters_with_flows(flows: u32, rx: u64, to_host: u64) -> WorkerCounters {
    let mut c = WorkerCounters::new(4, 4);
    let mut t = FlowTable::new(256, Timeouts::default()).unwrap();
    for i in 0..flows {
        let mut client = [0u8; 16];
        client[..4].copy_from_slice(&i.to_be_bytes());
        let k = FlowKey {
            client,
            listener: 0,
            port: 1000,
        };
        // Backend handle: slot 1, incarnation 3.
        t.insert(u64::from(i), &k, (3 << 24) | 1, FlowState::TcpOpen, 0);
    }
    while !t.sweep(&mut c.flow_sweep, 1, 1000) {}
    c.rx_packets = rx;
    c.rx_bytes = rx * 64;
    c.forwarded = rx - 1;
    c.to_host = to_host;
    c.drop(DropReason::NoListener);
    c.tx_failed(0);
    c.listeners[0].packets = rx;
    c.backends[1].packets = rx - 1;
    c.backends[1].bytes = (rx - 1) * 64;
    c
}

#[test]
fn publish_then_stats_show_active_flows_to_host_and_workers() {
    let path = temp_region("stats");
    let region = Arc::new(
        Region::create(
            &path,
            &RegionConfig {
                ring_capacity: 8,
                counters: CountersLayout {
                    workers: 4,
                    listeners: 4,
                    backends: 4,
                },
            },
        )
        .unwrap(),
    );
    let high_water = Arc::new(HighWater::default());
    high_water.listeners.store(1, Ordering::Relaxed);
    high_water.backends.store(2, Ordering::Relaxed);
    for (w, flows, rx, to_host) in [(0u32, 5u32, 10u64, 1u64), (1, 7, 20, 2)] {
        let p = CounterPublisher {
            region: region.clone(),
            worker: w,
            high_water: high_water.clone(),
        };
        let mut c = counters_with_flows(flows, rx, to_host);
        c.tx_failed(u64::from(w)); // worker 1: one packet the TX ring refused
        p.publish(&c);
    }
    // Without a slots file: totals, drops and the workers that counted anything.
    let r = read_stats(&path).unwrap();
    assert_eq!(r.totals.rx_packets, 30);
    assert_eq!(r.totals.to_host, 3);
    assert_eq!(r.totals.tx_packets, 9 + 18);
    assert_eq!(r.drops["tx_ring_full"], 1);
    assert_eq!(r.drops.len(), DropReason::COUNT);
    assert_eq!(r.workers.len(), 2, "blocks 2 and 3 never counted");
    assert_eq!(r.workers[1].totals.rx_packets, 20);
    assert_eq!(r.workers[1].totals.to_host, 2);
    assert_eq!(r.workers[1].drops["tx_ring_full"], 1);
    assert_eq!(r.workers[1].drops["no_listener"], 1);
    assert_eq!(r.workers[1].dropped, 2);
    assert_eq!(r.workers[0].dropped, 1);
    assert!(r.listeners.is_empty());

    // With the slots file: named rows with active flows, and as many workers as it says.
    let slots = SlotsFile {
        instance_id: format!("{:032x}", region.header().instance_id()),
        generation: 1,
        control: ControlCounts::default(),
        workers: Some(3),
        listeners: vec![ListenerSlot {
            slot: 0,
            id: 9,
            name: "web/80/tcp".into(),
            vip: "192.0.2.1".parse().unwrap(),
            port: 80,
            protocol: "tcp".into(),
            mode: "dsr".into(),
        }],
        backends: vec![BackendSlot {
            slot: 1,
            id: 4,
            pool: "web".into(),
            address: "10.0.0.4".parse().unwrap(),
            port: 80,
        }],
    };
    slots.write(&slots_path_for(&path)).unwrap();
    let r = read_stats(&path).unwrap();
    assert_eq!(r.workers.len(), 3);
    assert_eq!(r.workers[2].totals, TotalsReport::default());
    assert_eq!(r.listeners[0].active_flows, 12);
    assert_eq!(r.listeners[0].packets, 30);
    assert_eq!(r.backends[0].active_flows, 12);
    assert_eq!(r.backends[0].new_flows, 0);
    let table = render_table(&r);
    assert!(table.contains("ACTIVE FLOWS"), "{table}");
    assert!(table.contains("to host     3 packets"), "{table}");
    assert!(table.contains("TOP DROP REASON"), "{table}");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["workers"][1]["to_host"], 2);
    assert_eq!(json["workers"][1]["drops"]["tx_ring_full"], 1);
    assert_eq!(json["listeners"][0]["active_flows"], 12);
    assert_eq!(json["totals"]["to_host"], 3);
    drop(region);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn stats_show_live_ports_and_hide_stale_or_foreign_ones() {
    use crate::port_stats::{write_ports_file, PortStatsPublisher};
    use fiberlb_shared::port_stats::PortsFile;
    let path = temp_region("ports");
    let region = Region::create(
        &path,
        &RegionConfig {
            ring_capacity: 8,
            counters: CountersLayout {
                workers: 1,
                listeners: 1,
                backends: 1,
            },
        },
    )
    .unwrap();
    let r = read_stats(&path).unwrap();
    assert_eq!(
        (r.ports.len(), r.ports_age_ms, r.ports_stale),
        (0, None, false)
    );
    assert!(render_table(&r).contains("none published"));

    let port = PortCounters {
        name: "client".into(),
        driver: "dpdk".into(),
        device: "net_af_packet0".into(),
        link_up: true,
        speed_mbps: Some(10_000),
        rx_packets: 42,
        rx_missed: 7,
        rx_nombuf: Some(1),
        ..PortCounters::default()
    };
    let mut p = PortStatsPublisher::new(&path, region.header().instance_id());
    p.publish(vec![port.clone()]);
    let r = read_stats(&path).unwrap();
    assert_eq!(r.ports, vec![port.clone()]);
    assert!(!r.ports_stale);
    assert!(r.ports_age_ms.unwrap() < STALE_AFTER_MS);
    let table = render_table(&r);
    assert!(table.contains("RX MISSED"), "{table}");
    assert!(table.contains("up 10G"), "{table}");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["ports"][0]["rx_packets"], 42);
    assert_eq!(json["ports"][0]["link_up"], true);

    // The same file 6 s old: stale, numbers withheld.
    let mut f = crate::port_stats::read_ports_file(p.path()).unwrap();
    f.written_monotonic_ns = monotonic_ns().saturating_sub((STALE_AFTER_MS + 1000) * 1_000_000);
    write_ports_file(p.path(), &f).unwrap();
    let r = read_stats(&path).unwrap();
    assert!(r.ports_stale);
    assert!(r.ports.is_empty());
    assert!(r.ports_age_ms.unwrap() > STALE_AFTER_MS);
    assert!(render_table(&r).contains("stale"), "{}", render_table(&r));

    // Fresh but written by another instance (a previous data plane on this path): ignored.
    write_ports_file(
        p.path(),
        &PortsFile {
            instance_id: "someone else".into(),
            written_monotonic_ns: monotonic_ns(),
            ports: vec![port],
            ..PortsFile::default()
        },
    )
    .unwrap();
    let r = read_stats(&path).unwrap();
    assert_eq!((r.ports.len(), r.ports_age_ms), (0, None));
    drop(region);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
