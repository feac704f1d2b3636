//! Creating and attaching the shared-memory region, and what attach refuses.

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::PathBuf;
use std::time::Duration;

use fiberlb_shared::shm::counters::{CountersLayout, ObjectCounters, Totals};
use fiberlb_shared::shm::message::Message;
use fiberlb_shared::shm::region::{
    Region, RegionConfig, RegionError, Role, LAYOUT_VERSION, REGION_MAGIC,
};

fn temp_path(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("fiberlb-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn small() -> RegionConfig {
    RegionConfig {
        ring_capacity: 8,
        counters: CountersLayout {
            workers: 2,
            listeners: 16,
            backends: 64,
        },
    }
}

fn poke(path: &PathBuf, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

#[test]
fn create_then_attach_and_talk() {
    let path = temp_path("good");
    let mut dp = Region::create(&path, &small()).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mut cp = Region::attach(&path).unwrap();
    assert_eq!(cp.role(), Role::ControlPlane);
    assert_eq!(cp.header().instance_id(), dp.header().instance_id());
    assert_ne!(dp.header().instance_id(), 0);
    assert_eq!(cp.header().data_plane_pid(), std::process::id());
    assert!(cp.peer_alive(Duration::from_secs(5)));
    assert!(!dp.peer_alive(Duration::from_secs(5)));
    cp.beat();
    assert!(dp.peer_alive(Duration::from_secs(5)));

    let (mut dp_tx, mut dp_rx) = dp.endpoints().unwrap();
    let (mut cp_tx, mut cp_rx) = cp.endpoints().unwrap();
    assert!(matches!(cp.endpoints(), Err(RegionError::EndpointsTaken)));
    cp_tx.send(1, Message::Begin).unwrap();
    cp_tx.send(1, Message::Commit { count: 0 }).unwrap();
    let f = dp_rx.try_recv().unwrap().unwrap();
    assert_eq!((f.seq, f.generation, f.message), (1, 1, Message::Begin));
    assert_eq!(dp_rx.try_recv().unwrap().unwrap().seq, 2);
    assert_eq!(dp_rx.try_recv().unwrap(), None);
    dp_tx.send(1, Message::Applied).unwrap();
    dp.header().set_applied_generation(1);
    assert_eq!(cp_rx.try_recv().unwrap().unwrap().message, Message::Applied);
    assert_eq!(cp.header().applied_generation(), 1);

    // Ring full: 8 slots.
    for _ in 0..8 {
        cp_tx.send(2, Message::Abort).unwrap();
    }
    assert!(cp_tx.send(2, Message::Abort).is_err());

    // Counters written through one mapping, read through the other.
    let w = dp.worker_counters(1).unwrap();
    w.set_drops(3, 42);
    assert_eq!(cp.counters().drops(3), 42);
    assert!(cp.worker_counters(0).is_none());
    assert!(dp.worker_counters(2).is_none());
    drop((dp_tx, dp_rx, cp_tx, cp_rx, cp, dp));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn second_data_plane_refused_and_restart_replaces() {
    let path = temp_path("second");
    let dp = Region::create(&path, &small()).unwrap();
    match Region::create(&path, &small()) {
        Err(RegionError::AlreadyRunning { pid, .. }) => assert_eq!(pid, std::process::id()),
        other => panic!("expected AlreadyRunning, got {other:?}"),
    }
    let cp = Region::attach(&path).unwrap();
    assert!(matches!(
        Region::attach(&path),
        Err(RegionError::ControlPlaneAttached { .. })
    ));
    let old_id = dp.header().instance_id();
    drop(dp);
    // A restarted data plane gets a new file and instance id; the old mapping notices.
    let dp2 = Region::create(&path, &small()).unwrap();
    assert_ne!(dp2.header().instance_id(), old_id);
    assert!(cp.is_replaced());
    drop(cp);
    let cp2 = Region::attach(&path).unwrap();
    assert!(!cp2.is_replaced());
    assert_eq!(cp2.header().instance_id(), dp2.header().instance_id());
    drop((cp2, dp2));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn attach_refuses_bad_regions() {
    // Missing.
    let path = temp_path("missing");
    assert!(matches!(Region::attach(&path), Err(RegionError::Io { .. })));

    // Each case: a good region, damaged, then attached.
    type Damage = fn(&PathBuf);
    type Check = fn(&RegionError) -> bool;
    let cases: [(&str, Damage, Check); 5] = [
        (
            "magic",
            |p| poke(p, 0, &0xdead_beefu64.to_ne_bytes()),
            |e| {
                matches!(
                    e,
                    RegionError::BadMagic {
                        found: 0xdead_beef,
                        ..
                    }
                )
            },
        ),
        (
            "version",
            |p| poke(p, 8, &99u32.to_ne_bytes()),
            |e| matches!(e, RegionError::BadVersion { found: 99, .. }),
        ),
        (
            "size-field",
            |p| poke(p, 16, &12345u64.to_ne_bytes()),
            |e| matches!(e, RegionError::SizeMismatch { header: 12345, .. }),
        ),
        (
            "truncated",
            |p| {
                let f = OpenOptions::new().write(true).open(p).unwrap();
                f.set_len(100).unwrap();
            },
            |e| matches!(e, RegionError::Truncated { len: 100, .. }),
        ),
        (
            "mode",
            |p| std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap(),
            |e| matches!(e, RegionError::BadPermissions { mode: 0o644, .. }),
        ),
    ];
    for (name, damage, check) in cases {
        let path = temp_path(name);
        let dp = Region::create(&path, &small()).unwrap();
        drop(dp);
        damage(&path);
        let err = Region::attach(&path).unwrap_err();
        assert!(check(&err), "{name}: got {err:?}");
        // The message tells what to do.
        assert!(!err.to_string().is_empty());
        std::fs::remove_file(&path).unwrap();
    }

    // A header whose magic is right but whose ring offset points outside the layout.
    let path = temp_path("offsets");
    drop(Region::create(&path, &small()).unwrap());
    let off = 8 + 4 + 4 + 8 + 16 + 4 + 4 + 8; // cmd_ring_offset
    poke(&path, off, &(1u64 << 40).to_ne_bytes());
    assert!(matches!(
        Region::attach(&path),
        Err(RegionError::BadLayout { .. })
    ));
    std::fs::remove_file(&path).unwrap();
    let _ = REGION_MAGIC;
}

#[test]
fn observer_reads_beside_an_attached_control_plane() {
    let path = temp_path("observer");
    let dp = Region::create(&path, &small()).unwrap();
    dp.header().set_applied_generation(7);
    let _cp = Region::attach(&path).unwrap();
    // A second control plane is refused, an observer is not.
    assert!(Region::attach(&path).is_err());
    let mut obs = Region::observe(&path).unwrap();
    assert_eq!(obs.header().applied_generation(), 7);
    assert_eq!(obs.header().instance_id(), dp.header().instance_id());
    assert!(obs.endpoints().is_err(), "an observer never owns a ring");
    obs.beat();
    assert_eq!(
        obs.header().control_plane_heartbeat(),
        0,
        "an observer never beats"
    );
    let _ = Role::Observer;
    std::fs::remove_file(&path).ok();
}

#[test]
fn previous_layout_version_is_refused_with_a_clear_error() {
    // Version 1 had three words per counter slot; reading it with this layout would put
    // active_flows and later slots at the wrong offsets, so attach must refuse it by name.
    assert_eq!(LAYOUT_VERSION, 2);
    let path = temp_path("v1");
    drop(Region::create(&path, &small()).unwrap());
    poke(&path, 8, &1u32.to_ne_bytes());
    for r in [Region::attach(&path), Region::observe(&path)] {
        let err = r.unwrap_err();
        assert!(
            matches!(err, RegionError::BadVersion { found: 1, .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("layout version 1"), "{msg}");
        assert!(msg.contains("needs 2"), "{msg}");
        assert!(
            msg.contains("run matching data and control planes"),
            "{msg}"
        );
    }
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn per_worker_counters_through_the_mapping() {
    let path = temp_path("per-worker");
    let dp = Region::create(&path, &small()).unwrap();
    let cp = Region::attach(&path).unwrap();
    for w in 0..2u64 {
        let c = dp.worker_counters(w as u32).unwrap();
        c.set_totals(Totals {
            rx_packets: 10 * (w + 1),
            rx_bytes: 640 * (w + 1),
            tx_packets: 9 * (w + 1),
            tx_bytes: 576 * (w + 1),
            to_host: w + 1,
        });
        c.set_drops(12, 3 + w);
        c.set_listener(
            15,
            ObjectCounters {
                packets: 1,
                bytes: 2,
                new_flows: 3,
                active_flows: 4 + w,
            },
        );
        c.set_backend(
            63,
            ObjectCounters {
                packets: 5,
                bytes: 6,
                new_flows: 7,
                active_flows: 100 * (w + 1),
            },
        );
    }
    let r = cp.counters();
    assert_eq!(r.workers(), 2);
    assert_eq!(r.totals().rx_packets, 30);
    assert_eq!(r.totals().to_host, 3);
    assert_eq!(r.drops(12), 7);
    assert_eq!(r.listener(15).active_flows, 9);
    assert_eq!(r.backend(63).active_flows, 300);
    assert_eq!(r.backend(63).new_flows, 14);
    let w1 = r.worker(1).unwrap();
    assert_eq!(w1.totals().rx_bytes, 1280);
    assert_eq!(w1.totals().to_host, 2);
    assert_eq!(w1.drops(12), 4);
    assert_eq!(w1.listener(15).active_flows, 5);
    assert_eq!(w1.backend(63).active_flows, 200);
    assert_eq!(r.worker(0).unwrap().totals().tx_packets, 9);
    assert!(r.worker(2).is_none());
    // The last backend slot of the last worker ends inside the region.
    let obs = Region::observe(&path).unwrap();
    assert_eq!(obs.counters().backend(63).packets, 10);
    drop((obs, cp, dp));
    std::fs::remove_file(&path).unwrap();
}

/// The command doorbell: a control plane's ring wakes a data plane sleeping on it (here two
/// mappings of one file, as across processes), and a ring between reading the doorbell and
/// sleeping is not lost.
#[test]
fn command_doorbell_wakes_the_sleeper() {
    let path = temp_path("doorbell");
    let dp = std::sync::Arc::new(Region::create(&path, &small()).unwrap());
    let cp = Region::attach(&path).unwrap();
    // A ring after the read: the wait returns at once although nobody wakes it.
    let seen = dp.header().command_doorbell();
    cp.ring_command_doorbell();
    let t = std::time::Instant::now();
    dp.wait_for_commands(seen, Duration::from_secs(5));
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    // Sleeping first, then rung from the other mapping: woken long before the timeout.
    let seen = dp.header().command_doorbell();
    let sleeper = {
        let dp = dp.clone();
        std::thread::spawn(move || {
            let t = std::time::Instant::now();
            dp.wait_for_commands(seen, Duration::from_secs(10));
            t.elapsed()
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    cp.ring_command_doorbell();
    let slept = sleeper.join().unwrap();
    assert!(slept < Duration::from_secs(5), "woken after {slept:?}");
    // Nobody rings: the timeout bounds the sleep.
    let seen = dp.header().command_doorbell();
    let t = std::time::Instant::now();
    dp.wait_for_commands(seen, Duration::from_millis(20));
    assert!(
        t.elapsed() >= Duration::from_millis(15),
        "{:?}",
        t.elapsed()
    );
    drop(cp);
    let _ = std::fs::remove_file(&path);
}
