//! The control thread in process: a region in a temporary directory, a control-plane-side
//! sender, the control thread, and one worker thread forwarding a steady UDP stream through the
//! pipeline over a memory port while transactions change the backend set.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use fiberlb_dataplane::control::{ControlOptions, ControlThread};
use fiberlb_dataplane::nic::memory::MemoryPort;
use fiberlb_dataplane::packet::Desc;
use fiberlb_dataplane::pipeline::{DropReason, Pipeline, PipelineConfig, Verdict};
use fiberlb_dataplane::stats::{read_stats, render_table};
use fiberlb_dataplane::wire::build::FrameBuilder;
use fiberlb_shared::model::*;
use fiberlb_shared::shm::counters::CountersLayout;
use fiberlb_shared::shm::message::{Message, RejectCode};
use fiberlb_shared::shm::region::{Region, RegionConfig, RegionReceiver, RegionSender};
use fiberlb_shared::shm::transaction::{diff_to_messages, full_replay};

const VIP: [u8; 4] = [10, 10, 0, 100];
const VIP_PORT: u16 = 53;
const FLOWS: u16 = 64;

fn temp_region_path(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fiberlb-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("region")
}

fn backend_addr(id: u32) -> [u8; 4] {
    [10, 10, 1, id as u8]
}

fn services(backends: &[u32], table_size: u32) -> ServiceSet {
    ServiceSet {
        listeners: vec![Listener {
            id: ListenerId(1),
            name: "dns/53/udp".into(),
            vip: IpAddr::from(VIP),
            port: VIP_PORT,
            protocol: Protocol::Udp,
            mode: Mode::Nat,
            encap: Encap::Ipip,
            pool: PoolId(1),
        }],
        pools: vec![Pool {
            id: PoolId(1),
            name: "dns".into(),
            algorithm: Algorithm::Maglev,
            table_size,
        }],
        backends: backends
            .iter()
            .map(|&id| Backend {
                id: BackendId(id),
                pool: PoolId(1),
                address: IpAddr::from(backend_addr(id)),
                port: 5353,
                weight: 1,
                mac: Some([2, 0, 0, 0, 2, id as u8]),
                admin: AdminState::Enabled,
                healthy: true,
            })
            .collect(),
        tunnel: TunnelSettings::default(),
    }
}

/// What the worker thread observed.
#[derive(Debug, Default)]
struct Observed {
    /// Flows whose backend changed although the old backend was still in the snapshot.
    moved_from_live_backend: u64,
    /// Flows whose backend changed because theirs was removed.
    moved_from_removed: u64,
    injected: u64,
    forwarded: u64,
    dropped: u64,
}

/// A worker: injects one packet per flow per round, forwards the burst with the snapshot in
/// force, and checks that a flow only ever leaves a backend that is gone.
fn spawn_worker(
    ctl: &mut ControlThread,
    stop: Arc<AtomicBool>,
    seen_gen: Arc<AtomicU64>,
) -> thread::JoinHandle<Observed> {
    let (mut reader, counters) = ctl.worker_handles(0).unwrap();
    thread::spawn(move || {
        let mut pipeline = Pipeline::new(PipelineConfig {
            flow_capacity: 4096,
            max_listeners: 16,
            max_backends: 64,
            ..PipelineConfig::default()
        })
        .unwrap();
        let mut port = MemoryPort::new(256, 2048, 256);
        let frames: Vec<Vec<u8>> = (0..FLOWS)
            .map(|i| {
                FrameBuilder::udp_v4([192, 0, 2, 10], VIP, 10_000 + i, VIP_PORT)
                    .payload(b"query")
                    .build()
            })
            .collect();
        let mut owner: Vec<Option<[u8; 4]>> = vec![None; FLOWS as usize];
        let mut obs = Observed::default();
        let mut last_publish = Instant::now();
        let mut descs = [Desc::default(); 32];
        let mut verdicts = [Verdict::Drop(DropReason::Malformed); 32];
        while !stop.load(Ordering::Relaxed) {
            for chunk in frames.chunks(32) {
                for f in chunk {
                    port.inject(f).unwrap();
                }
                let n = port.rx_burst(&mut descs);
                let snap = reader.current();
                seen_gen.store(snap.generation, Ordering::Relaxed);
                // Before the first configuration every packet is dropped (no listener).
                let configured = snap.generation > 0;
                if configured {
                    obs.injected += n as u64;
                }
                {
                    let mut burst = port.burst(&mut descs[..n]);
                    pipeline.process_burst(snap, &mut burst, &mut verdicts[..n], 1000);
                }
                let live: Vec<[u8; 4]> = snap
                    .backends
                    .iter()
                    .flatten()
                    .map(|b| [b.addr[0], b.addr[1], b.addr[2], b.addr[3]])
                    .collect();
                for i in 0..n {
                    match verdicts[i] {
                        Verdict::Drop(_) => {
                            obs.dropped += u64::from(configured);
                            port.free(descs[i]);
                        }
                        _ => port.transmit(descs[i]),
                    }
                }
                port.drain_tx(|b| {
                    obs.forwarded += u64::from(configured);
                    // Ethernet 14 + IPv4: source port at 34, destination address at 30.
                    let sport = u16::from_be_bytes([b[34], b[35]]);
                    let dst = [b[30], b[31], b[32], b[33]];
                    let flow = (sport - 10_000) as usize;
                    if let Some(old) = owner[flow] {
                        if old != dst {
                            if live.contains(&old) {
                                obs.moved_from_live_backend += 1;
                            } else {
                                obs.moved_from_removed += 1;
                            }
                        }
                    }
                    owner[flow] = Some(dst);
                });
                reader.quiescent();
            }
            if last_publish.elapsed() >= Duration::from_millis(20) {
                counters.publish(pipeline.counters());
                last_publish = Instant::now();
            }
            thread::sleep(Duration::from_micros(200));
        }
        counters.publish(pipeline.counters());
        obs
    })
}

/// Sends a transaction and waits for its reply.
fn transact(
    tx: &mut RegionSender,
    rx: &mut RegionReceiver,
    generation: u64,
    messages: Vec<Message>,
) -> Message {
    for m in messages {
        tx.send(generation, m).unwrap();
    }
    wait_reply(rx, generation)
}

fn wait_reply(rx: &mut RegionReceiver, generation: u64) -> Message {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(f) = rx.try_recv().unwrap() {
            if f.generation == generation {
                return f.message;
            }
        } else {
            thread::sleep(Duration::from_millis(1));
        }
    }
    panic!("no reply for generation {generation}");
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn transactions_apply_while_forwarding() {
    let path = temp_region_path("control-apply");
    let region = Region::create(
        &path,
        &RegionConfig {
            ring_capacity: 64,
            counters: CountersLayout {
                workers: 1,
                listeners: 16,
                backends: 64,
            },
        },
    )
    .unwrap();
    let mut ctl = ControlThread::new(
        region,
        ControlOptions {
            workers: 1,
            max_listeners: 16,
            max_backends: 64,
            ..ControlOptions::default()
        },
    )
    .unwrap();
    let region = ctl.region();
    let stats = ctl.stats();
    let slots_path = ctl.slots_path().to_path_buf();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicU64::new(0));
    let worker = spawn_worker(&mut ctl, stop.clone(), seen.clone());
    let ctl_stop = Arc::new(AtomicBool::new(false));
    let control = ctl.spawn(ctl_stop.clone()).unwrap();

    let mut cp = Region::attach(&path).unwrap();
    let (mut tx, mut rx) = cp.endpoints().unwrap();

    // Generation 1: three backends.
    let g1 = services(&[1, 2, 3], 251);
    assert_eq!(
        transact(&mut tx, &mut rx, 1, full_replay(&g1)),
        Message::Applied
    );
    assert_eq!(region.header().applied_generation(), 1);
    wait_for("the worker to forward with generation 1", || {
        seen.load(Ordering::Relaxed) == 1
    });
    thread::sleep(Duration::from_millis(50));

    // Generation 2: backend 3 leaves, 4 joins. Flows on 1 and 2 must stay.
    let g2 = services(&[1, 2, 4], 251);
    assert_eq!(
        transact(&mut tx, &mut rx, 2, diff_to_messages(&g1, &g2)),
        Message::Applied
    );
    assert_eq!(region.header().applied_generation(), 2);
    wait_for("generation 2", || seen.load(Ordering::Relaxed) == 2);
    thread::sleep(Duration::from_millis(50));

    // Generation 3: backend 5 joins; nobody leaves.
    let g3 = services(&[1, 2, 4, 5], 251);
    assert_eq!(
        transact(&mut tx, &mut rx, 3, diff_to_messages(&g2, &g3)),
        Message::Applied
    );
    wait_for("generation 3", || seen.load(Ordering::Relaxed) == 3);
    thread::sleep(Duration::from_millis(50));

    // A table size that is not prime: rejected, generation 3 stays in force.
    let bad = services(&[1, 2, 4, 5], 100);
    match transact(&mut tx, &mut rx, 4, diff_to_messages(&g3, &bad)) {
        Message::Rejected { code, reason } => {
            assert_eq!(code, RejectCode::Invalid, "{reason}");
            assert!(reason.contains("dns"), "{reason}");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    // A stale generation.
    match transact(&mut tx, &mut rx, 2, diff_to_messages(&g3, &g1)) {
        Message::Rejected { code, .. } => assert_eq!(code, RejectCode::StaleGeneration),
        other => panic!("expected Rejected, got {other:?}"),
    }
    // The body and Commit of the stale transaction arrive outside any transaction.
    thread::sleep(Duration::from_millis(50));
    while rx.try_recv().unwrap().is_some() {}
    assert_eq!(region.header().applied_generation(), 3);
    assert_eq!(seen.load(Ordering::Relaxed), 3);

    // The next valid generation after the rejections still applies.
    let g4 = services(&[1, 2, 5], 251);
    assert_eq!(
        transact(&mut tx, &mut rx, 4, diff_to_messages(&g3, &g4)),
        Message::Applied
    );
    wait_for("generation 4", || seen.load(Ordering::Relaxed) == 4);
    thread::sleep(Duration::from_millis(100));

    stop.store(true, Ordering::Relaxed);
    let obs = worker.join().unwrap();
    ctl_stop.store(true, Ordering::Relaxed);
    let ctl = control.join().unwrap();
    assert_eq!(ctl.applied_generation(), 4);

    assert_eq!(
        obs.moved_from_live_backend, 0,
        "a flow left a backend that stayed: {obs:?}"
    );
    assert!(
        obs.moved_from_removed > 0,
        "flows of removed backends 3 and 4 must have moved: {obs:?}"
    );
    assert_eq!(obs.dropped, 0, "no packet may be lost: {obs:?}");
    assert_eq!(obs.forwarded, obs.injected);
    let c = stats.counts();
    assert_eq!(c.applied, 4);
    assert_eq!(c.rejected_invalid, 1);
    // Begin(2) stale, then each body message and the Commit outside a transaction.
    assert!(c.rejected_protocol >= 2, "{c:?}");
    assert_eq!(c.rejected_corrupt, 0);

    // stats: named counters from the slots file, read beside the attached control plane.
    let report = read_stats(&path).unwrap();
    drop((tx, rx));
    drop(cp);
    assert!(slots_path.exists());
    assert_eq!(report.applied_generation, 4);
    assert_eq!(report.slots_generation, Some(4));
    // The pipeline counted the unconfigured start too (dropped: no listener).
    assert_eq!(
        report.drops["no_listener"],
        report.totals.rx_packets - obs.injected
    );
    assert_eq!(report.totals.tx_packets, obs.forwarded);
    assert_eq!(report.listeners.len(), 1);
    assert_eq!(report.listeners[0].name, "dns/53/udp");
    assert_eq!(report.listeners[0].packets, obs.forwarded);
    let names: Vec<_> = report.backends.iter().map(|b| b.id).collect();
    assert_eq!(names, vec![1, 2, 5]);
    assert!(report.backends.iter().all(|b| b.packets > 0), "{report:?}");
    assert_eq!(report.control.unwrap().applied, 4);
    let table = render_table(&report);
    assert!(table.contains("dns/53/udp"), "{table}");
    assert!(table.contains("10.10.1.5:5353"), "{table}");
    assert_eq!(
        Ipv4Addr::from(backend_addr(5)).to_string(),
        report.backends[2].address.to_string()
    );
    drop(ctl);
    drop(region);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn apply_initial_goes_through_the_transaction_path() {
    let path = temp_region_path("control-initial");
    let region = Region::create(
        &path,
        &RegionConfig {
            ring_capacity: 16,
            counters: CountersLayout {
                workers: 2,
                listeners: 16,
                backends: 64,
            },
        },
    )
    .unwrap();
    let mut ctl = ControlThread::new(
        region,
        ControlOptions {
            workers: 2,
            max_listeners: 16,
            max_backends: 64,
            ..ControlOptions::default()
        },
    )
    .unwrap();
    // Invalid: refused, nothing applied.
    let err = ctl.apply_initial(services(&[1], 100)).unwrap_err();
    assert!(err.to_string().contains("prime"), "{err}");
    assert_eq!(ctl.applied_generation(), 0);
    assert_eq!(ctl.region().header().applied_generation(), 0);
    // Valid: generation 1, snapshot published, slots file written.
    assert_eq!(ctl.apply_initial(services(&[1, 2], 251)).unwrap(), 1);
    assert_eq!(ctl.region().header().applied_generation(), 1);
    assert_eq!(ctl.snapshot().generation, 1);
    assert_eq!(ctl.snapshot().listeners.len(), 1);
    let slots = std::fs::read_to_string(ctl.slots_path()).unwrap();
    assert!(slots.contains("dns/53/udp"), "{slots}");
    // Handles: once per worker, in range only.
    assert!(ctl.worker_handles(2).is_err());
    let (mut r0, _c0) = ctl.worker_handles(0).unwrap();
    assert!(ctl.worker_handles(0).is_err());
    assert_eq!(r0.current().generation, 1);
    // A control plane's next transaction continues from generation 1.
    let mut cp = Region::attach(&path).unwrap();
    let (mut tx, mut rx) = cp.endpoints().unwrap();
    for m in full_replay(&services(&[3], 251)) {
        tx.send(1, m).unwrap();
    }
    let stop = AtomicBool::new(false);
    r0.quiescent();
    r0.offline();
    while ctl.poll_once(&stop) > 0 {}
    match wait_reply(&mut rx, 1) {
        Message::Rejected { code, .. } => assert_eq!(code, RejectCode::StaleGeneration),
        other => panic!("{other:?}"),
    }
    drop(ctl);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
