//! Two-process test of the shared-memory protocol: the data plane side (control thread and a
//! worker forwarding a steady UDP stream over a memory port) runs here; the writer is another
//! process (`shm_writer`) that commits transactions, sends torn / garbage / replayed frames, and
//! is killed with SIGKILL in the middle of a transaction.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use fiberlb_dataplane::control::{ControlOptions, ControlThread};
use fiberlb_dataplane::nic::memory::MemoryPort;
use fiberlb_dataplane::packet::Desc;
use fiberlb_dataplane::pipeline::{DropReason, Pipeline, PipelineConfig, Verdict};
use fiberlb_dataplane::wire::build::FrameBuilder;
use fiberlb_shared::shm::counters::CountersLayout;
use fiberlb_shared::shm::region::{Region, RegionConfig};

const WRITER: &str = env!("CARGO_BIN_EXE_shm_writer");
const RING: u64 = 64;
const VIP: [u8; 4] = [10, 10, 0, 100];
const FLOWS: u16 = 64;

/// What the worker saw, updated live.
#[derive(Debug, Default)]
struct Live {
    generation: AtomicU64,
    forwarded: AtomicU64,
    /// Configured packets not forwarded.
    dropped: AtomicU64,
    /// A flow left a backend that was still in the snapshot.
    moved_from_live_backend: AtomicU64,
    /// Backends (last address byte) packets went to in the latest burst, as a bit set.
    backends_now: AtomicU64,
}

fn spawn_worker(
    ctl: &mut ControlThread,
    stop: Arc<AtomicBool>,
    live: Arc<Live>,
) -> thread::JoinHandle<()> {
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
                FrameBuilder::udp_v4([192, 0, 2, 10], VIP, 20_000 + i, 53)
                    .payload(b"q")
                    .build()
            })
            .collect();
        let mut owner = vec![0u8; FLOWS as usize];
        let mut descs = [Desc::default(); 32];
        let mut verdicts = [Verdict::Drop(DropReason::Malformed); 32];
        let mut last_publish = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let mut seen_backends = 0u64;
            for chunk in frames.chunks(32) {
                for f in chunk {
                    port.inject(f).unwrap();
                }
                let n = port.rx_burst(&mut descs);
                let snap = reader.current();
                live.generation.store(snap.generation, Ordering::Relaxed);
                let configured = snap.generation > 0;
                {
                    let mut burst = port.burst(&mut descs[..n]);
                    pipeline.process_burst(snap, &mut burst, &mut verdicts[..n], 1000);
                }
                let present: Vec<u8> = snap.backends.iter().flatten().map(|b| b.addr[3]).collect();
                for i in 0..n {
                    if let Verdict::Drop(_) = verdicts[i] {
                        if configured {
                            live.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        port.free(descs[i]);
                    } else {
                        port.transmit(descs[i]);
                    }
                }
                port.drain_tx(|b| {
                    let sport = u16::from_be_bytes([b[34], b[35]]);
                    let backend = b[33];
                    let flow = (sport - 20_000) as usize;
                    let old = owner[flow];
                    if old != 0 && old != backend && present.contains(&old) {
                        live.moved_from_live_backend.fetch_add(1, Ordering::Relaxed);
                    }
                    owner[flow] = backend;
                    seen_backends |= 1 << (backend & 63);
                    live.forwarded.fetch_add(1, Ordering::Relaxed);
                });
                reader.quiescent();
            }
            live.backends_now.store(seen_backends, Ordering::Relaxed);
            if last_publish.elapsed() >= Duration::from_millis(50) {
                counters.publish(pipeline.counters());
                last_publish = Instant::now();
            }
            thread::sleep(Duration::from_micros(500));
        }
    })
}

fn bits(ids: &[u64]) -> u64 {
    ids.iter().fold(0, |a, i| a | 1 << i)
}

/// Runs the writer to completion; returns its stdout lines.
fn run_writer(path: &Path, steps: &[&str]) -> Vec<String> {
    let out = Command::new(WRITER)
        .arg(path)
        .arg(RING.to_string())
        .args(steps)
        .output()
        .expect("run shm_writer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "shm_writer {steps:?} failed: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

fn temp_region_path() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fiberlb-shm-protocol-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("region")
}

#[test]
fn writer_process_commits_is_killed_and_bad_frames_are_rejected() {
    let path = temp_region_path();
    let region = Region::create(
        &path,
        &RegionConfig {
            ring_capacity: RING,
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
            stale_transaction: Duration::from_millis(300),
            ..ControlOptions::default()
        },
    )
    .unwrap();
    let region = ctl.region();
    let stats = ctl.stats();
    let stop = Arc::new(AtomicBool::new(false));
    let live = Arc::new(Live::default());
    let worker = spawn_worker(&mut ctl, stop.clone(), live.clone());
    let ctl_stop = Arc::new(AtomicBool::new(false));
    let control = ctl.spawn(ctl_stop.clone()).unwrap();

    // 1. A writer commits two transactions and exits.
    let lines = run_writer(&path, &["set:1,2,3", "set:1,2,4"]);
    assert_eq!(lines, vec!["applied 1", "applied 2"]);
    assert_eq!(region.header().applied_generation(), 2);
    wait_for("generation 2 in the worker", Duration::from_secs(2), || {
        live.generation.load(Ordering::Relaxed) == 2
    });
    wait_for(
        "traffic on backends 1, 2, 4",
        Duration::from_secs(2),
        || live.backends_now.load(Ordering::Relaxed) == bits(&[1, 2, 4]),
    );

    // 2. Replayed, garbage and torn frames: each rejected and counted; nothing changes.
    let lines = run_writer(&path, &["replay", "garbage", "torn"]);
    assert_eq!(
        lines,
        vec![
            "rejected 0 OutOfOrder",
            "rejected 0 Malformed",
            "rejected 0 Malformed"
        ]
    );
    let c = stats.counts();
    assert_eq!(
        (c.rejected_out_of_order, c.rejected_corrupt),
        (1, 2),
        "{c:?}"
    );
    assert_eq!(c.applied, 2);
    assert_eq!(region.header().applied_generation(), 2);

    // 3. A writer applies generation 3, opens transaction 4 and is killed in the middle of it.
    let mut child = Command::new(WRITER)
        .arg(&path)
        .arg(RING.to_string())
        .args(["set:1,2,5", "hang-open"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(out.next().unwrap().unwrap(), "applied 3");
    assert_eq!(out.next().unwrap().unwrap(), "hanging");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Forwarding goes on, with generation 3, to backends 1, 2 and 5.
    let before = live.forwarded.load(Ordering::Relaxed);
    thread::sleep(Duration::from_millis(200));
    assert!(live.forwarded.load(Ordering::Relaxed) > before + 1000);
    assert_eq!(live.generation.load(Ordering::Relaxed), 3);
    assert_eq!(live.backends_now.load(Ordering::Relaxed), bits(&[1, 2, 5]));
    assert_eq!(region.header().applied_generation(), 3);
    // The dead writer's open transaction is discarded once its heartbeat is old.
    wait_for(
        "the stale transaction to be discarded",
        Duration::from_secs(5),
        || stats.counts().stale_discarded == 1,
    );
    assert_eq!(live.generation.load(Ordering::Relaxed), 3);

    // 4. A new writer re-attaches and its next valid transaction applies.
    let lines = run_writer(&path, &["set:1,2,6"]);
    assert_eq!(lines, vec!["applied 4"]);
    wait_for("generation 4 in the worker", Duration::from_secs(2), || {
        live.generation.load(Ordering::Relaxed) == 4
    });
    wait_for(
        "traffic on backends 1, 2, 6",
        Duration::from_secs(2),
        || live.backends_now.load(Ordering::Relaxed) == bits(&[1, 2, 6]),
    );

    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();
    ctl_stop.store(true, Ordering::Relaxed);
    let ctl = control.join().unwrap();
    assert_eq!(ctl.applied_generation(), 4);
    assert_eq!(
        live.dropped.load(Ordering::Relaxed),
        0,
        "no configured packet may be dropped"
    );
    assert_eq!(
        live.moved_from_live_backend.load(Ordering::Relaxed),
        0,
        "flows of backends that stayed must not move"
    );
    let c = stats.counts();
    assert_eq!(c.applied, 4);
    assert_eq!(
        (c.rejected_out_of_order, c.rejected_corrupt),
        (1, 2),
        "{c:?}"
    );
    assert_eq!(c.stale_discarded, 1);
    // The slots file names the last configuration's backends.
    let slots = std::fs::read_to_string(ctl.slots_path()).unwrap();
    assert!(slots.contains("10.10.1.6"), "{slots}");
    assert!(!slots.contains("10.10.1.5\""), "{slots}");
    drop(ctl);
    drop(region);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
