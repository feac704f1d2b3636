//! The programmer against an in-process fake data plane: a real region (created in a temp
//! dir) and the shared transaction assembler answering like the data plane's control thread.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fiberlb_controlplane::program::{
    AppliedStateStore, Desired, FileAppliedState, MemoryAppliedState, ProgramError, Programmer,
    ProgrammerOptions, SyncKind,
};
use fiberlb_shared::model::{
    AdminState, Algorithm, Backend, BackendId, Encap, Listener, ListenerId, Mode, Pool, PoolId,
    Protocol, ServiceSet, TunnelSettings,
};
use fiberlb_shared::shm::counters::CountersLayout;
use fiberlb_shared::shm::message::{Message, RejectCode};
use fiberlb_shared::shm::region::{Region, RegionConfig};
use fiberlb_shared::shm::transaction::{canonical, Assembler, Outcome};
use tokio::sync::watch;

/// The data plane's control thread in miniature.
struct FakeDataPlane {
    stop: Arc<AtomicBool>,
    /// While set, commands are consumed and never answered.
    silent: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<(u64, Message)>>>,
    applied: Arc<Mutex<(u64, ServiceSet)>>,
    /// Replaces the data plane's configuration behind the programmer's back (same generation).
    forget: Arc<Mutex<Option<ServiceSet>>>,
    instance_id: u128,
    thread: Option<JoinHandle<()>>,
}

impl FakeDataPlane {
    fn start(path: &Path) -> Self {
        Self::start_with(path, ServiceSet::default(), 0)
    }

    /// A data plane that came up with `initial` at `generation` (a services file).
    fn start_with(path: &Path, initial: ServiceSet, generation: u64) -> Self {
        let config = RegionConfig {
            // Small, so a full replay of a bigger set must wait for the ring to drain.
            ring_capacity: 32,
            counters: CountersLayout {
                workers: 2,
                listeners: 16,
                backends: 256,
            },
        };
        let mut region = Region::create(path, &config).unwrap();
        let (mut tx, mut rx) = region.endpoints().unwrap();
        region.header().set_applied_generation(generation);
        let instance_id = region.header().instance_id();
        let stop = Arc::new(AtomicBool::new(false));
        let silent = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Mutex::new(Vec::new()));
        let applied = Arc::new(Mutex::new((generation, canonical(&initial))));
        let forget = Arc::new(Mutex::new(None::<ServiceSet>));
        let (s, q, r, a) = (
            stop.clone(),
            silent.clone(),
            received.clone(),
            applied.clone(),
        );
        let f = forget.clone();
        let thread = std::thread::spawn(move || {
            let mut asm = Assembler::new(initial, generation);
            while !s.load(Ordering::SeqCst) {
                region.beat();
                if let Some(set) = f.lock().unwrap().take() {
                    let g = asm.applied_generation();
                    asm = Assembler::new(set.clone(), g);
                    *a.lock().unwrap() = (g, canonical(&set));
                }
                while let Ok(Some(frame)) = rx.try_recv() {
                    r.lock()
                        .unwrap()
                        .push((frame.generation, frame.message.clone()));
                    if q.load(Ordering::SeqCst) {
                        continue;
                    }
                    let outcome = asm.accept(frame.generation, frame.message);
                    if let Outcome::Applied {
                        generation,
                        services,
                    } = &outcome
                    {
                        region.header().set_applied_generation(*generation);
                        *a.lock().unwrap() = (*generation, services.clone());
                    }
                    if let Some((g, m)) = outcome.reply() {
                        tx.send(g, m).unwrap();
                    }
                }
                std::thread::sleep(Duration::from_micros(500));
            }
        });
        FakeDataPlane {
            stop,
            silent,
            received,
            applied,
            forget,
            instance_id,
            thread: Some(thread),
        }
    }

    fn take_received(&self) -> Vec<(u64, Message)> {
        std::mem::take(&mut self.received.lock().unwrap())
    }

    fn applied(&self) -> (u64, ServiceSet) {
        self.applied.lock().unwrap().clone()
    }
}

impl Drop for FakeDataPlane {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn resets(msgs: &[(u64, Message)]) -> usize {
    msgs.iter().filter(|(_, m)| *m == Message::Reset).count()
}

fn set(backends: u32, weight: u32) -> ServiceSet {
    ServiceSet {
        listeners: vec![Listener {
            id: ListenerId(1),
            name: "web/80/tcp".into(),
            vip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            port: 80,
            protocol: Protocol::Tcp,
            mode: Mode::Dsr,
            encap: Encap::Ipip,
            pool: PoolId(1),
        }],
        pools: vec![Pool {
            id: PoolId(1),
            name: "web".into(),
            algorithm: Algorithm::Maglev,
            table_size: 251,
        }],
        backends: (1..=backends)
            .map(|i| Backend {
                id: BackendId(i),
                pool: PoolId(1),
                address: IpAddr::V4(Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8)),
                port: 8080,
                weight,
                mac: Some([2, 0, 0, 0, 0, i as u8]),
                admin: AdminState::Enabled,
                healthy: true,
            })
            .collect(),
        tunnel: TunnelSettings::default(),
    }
}

fn opts(path: &Path) -> ProgrammerOptions {
    ProgrammerOptions {
        reply_timeout: Duration::from_secs(3),
        resolve_macs: None,
        ..ProgrammerOptions::new(path)
    }
}

fn region_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("region")
}

#[tokio::test]
async fn full_replay_then_diffs_then_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = region_path(&dir);
    let dp = FakeDataPlane::start(&path);
    let mut p = Programmer::new(opts(&path), Arc::new(MemoryAppliedState::default()));

    // 100 backends: more messages than the 32-slot ring holds.
    let s1 = set(100, 10);
    let o = p.sync(&s1, 1).await.unwrap();
    assert_eq!(o.kind, SyncKind::Full { messages: 100 + 6 });
    assert_eq!(o.generation, 1);
    let got = dp.take_received();
    assert_eq!(resets(&got), 1);
    assert_eq!(got.len(), 106);
    assert_eq!(dp.applied(), (1, canonical(&s1)));

    // Same set, same generation: nothing sent.
    let o = p.sync(&s1, 1).await.unwrap();
    assert_eq!(o.kind, SyncKind::UpToDate);
    assert!(dp.take_received().is_empty());

    // One backend's weight changes: a diff of Begin, one upsert, Commit.
    let mut s2 = s1.clone();
    s2.backends[4].weight = 20;
    let o = p.sync(&s2, 2).await.unwrap();
    assert_eq!(o.kind, SyncKind::Diff { messages: 3 });
    let got = dp.take_received();
    assert_eq!(resets(&got), 0);
    assert!(
        matches!(&got[1], (2, Message::UpsertBackend(b)) if b.id == BackendId(5) && b.weight == 20)
    );
    assert_eq!(dp.applied(), (2, canonical(&s2)));

    let status = p.status().borrow().clone();
    assert_eq!(status.transactions_applied, 2);
    assert_eq!(status.full_resyncs, 1);
    assert_eq!(status.applied_generation, 2);
    assert!(status.attached);
    assert_eq!(status.instance_id, Some(dp.instance_id));
}

#[tokio::test]
async fn restarted_data_plane_is_replayed_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let path = region_path(&dir);
    let dp = FakeDataPlane::start(&path);
    let mut p = Programmer::new(opts(&path), Arc::new(MemoryAppliedState::default()));
    let s = set(5, 1);
    p.sync(&s, 3).await.unwrap();
    let old_instance = dp.instance_id;
    drop(dp);

    // A new data plane at the same path: new file, new instance id, nothing configured.
    let dp = FakeDataPlane::start(&path);
    assert_ne!(dp.instance_id, old_instance);
    assert!(p.needs_sync(3));
    let o = p.sync(&s, 3).await.unwrap();
    assert!(matches!(o.kind, SyncKind::Full { .. }), "{o:?}");
    assert_eq!(o.generation, 3);
    assert_eq!(resets(&dp.take_received()), 1);
    assert_eq!(dp.applied(), (3, canonical(&s)));
    assert_eq!(p.status().borrow().attaches, 2);
}

#[tokio::test]
async fn restarted_control_plane_resyncs_only_when_generations_differ() {
    let dir = tempfile::tempdir().unwrap();
    let path = region_path(&dir);
    let state_path = dir.path().join("store.redb.applied.json");
    let dp = FakeDataPlane::start(&path);
    let s = set(4, 1);
    {
        let mut p = Programmer::new(opts(&path), Arc::new(FileAppliedState::new(&state_path)));
        p.sync(&s, 5).await.unwrap();
    }
    dp.take_received();
    let record = FileAppliedState::new(&state_path).load().unwrap().unwrap();
    assert_eq!(
        (
            record.instance_id,
            record.generation,
            record.store_generation
        ),
        (dp.instance_id, 5, 5)
    );

    // Same data plane, same generation: nothing sent, and later changes go as diffs.
    let mut p = Programmer::new(opts(&path), Arc::new(FileAppliedState::new(&state_path)));
    let o = p.sync(&s, 5).await.unwrap();
    assert_eq!(o.kind, SyncKind::Resumed);
    assert!(dp.take_received().is_empty());
    let mut s2 = s.clone();
    s2.backends.pop();
    let o = p.sync(&s2, 6).await.unwrap();
    assert_eq!(o.kind, SyncKind::Diff { messages: 3 });
    drop(p);

    // Same store generation, but the node's settings changed while the control plane was
    // down (a tunnel source added to fiberlbd's config): the digest differs, full resync.
    let mut p = Programmer::new(opts(&path), Arc::new(FileAppliedState::new(&state_path)));
    dp.take_received();
    let mut s3 = s2.clone();
    s3.tunnel.source_v4 = Some("10.9.9.9".parse().unwrap());
    let o = p.sync(&s3, 6).await.unwrap();
    assert!(matches!(o.kind, SyncKind::Full { .. }), "{o:?}");
    assert_eq!(dp.applied().1.tunnel.source_v4, s3.tunnel.source_v4);
    drop(p);

    // The store moved on while the control plane was down: full resync.
    let mut p = Programmer::new(opts(&path), Arc::new(FileAppliedState::new(&state_path)));
    dp.take_received();
    let o = p.sync(&s, 7).await.unwrap();
    assert!(matches!(o.kind, SyncKind::Full { .. }));
    assert_eq!(resets(&dp.take_received()), 1);
    drop(p);

    // No record at all: full resync.
    let mut p = Programmer::new(opts(&path), Arc::new(MemoryAppliedState::default()));
    let o = p.sync(&s, 7).await.unwrap();
    assert!(matches!(o.kind, SyncKind::Full { .. }));
    // The data plane was at 8 already: the transaction had to go above it.
    assert_eq!(o.generation, 9);
    assert_eq!(dp.applied().0, 9);
}

#[tokio::test]
async fn data_plane_started_from_a_services_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = region_path(&dir);
    // The data plane forwards by a services file as generation 1; the store is also at 1.
    let dp = FakeDataPlane::start_with(&path, set(2, 5), 1);
    let mut p = Programmer::new(opts(&path), Arc::new(MemoryAppliedState::default()));
    let s = set(3, 1);
    let o = p.sync(&s, 1).await.unwrap();
    assert!(matches!(o.kind, SyncKind::Full { .. }));
    assert_eq!(o.generation, 2);
    assert_eq!(dp.applied(), (2, canonical(&s)));
}

#[tokio::test]
async fn rejection_is_an_error_with_the_reason_and_keeps_the_known_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = region_path(&dir);
    let dp = FakeDataPlane::start(&path);
    let mut p = Programmer::new(opts(&path), Arc::new(MemoryAppliedState::default()));
    let good = set(3, 1);
    p.sync(&good, 1).await.unwrap();
    dp.take_received();

    let mut bad = good.clone();
    bad.listeners[0].pool = PoolId(42);
    let err = p.sync(&bad, 2).await.unwrap_err();
    match &err {
        ProgramError::Rejected {
            generation,
            code,
            reason,
        } => {
            assert_eq!(*generation, 2);
            assert_eq!(*code, RejectCode::Invalid);
            assert!(reason.contains("pool id 42"), "{reason}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(err.to_string().contains("pool id 42"));
    // Invalid content is not retried.
    assert_eq!(resets(&dp.take_received()), 0);
    assert_eq!(dp.applied(), (1, canonical(&good)));
    assert_eq!(p.status().borrow().transactions_rejected, 1);
    assert!(p.status().borrow().last_error.is_some());

    // The data plane still has `good`: the next change is a diff from it.
    let mut next = good.clone();
    next.backends[0].weight = 7;
    let o = p.sync(&next, 3).await.unwrap();
    assert_eq!(o.kind, SyncKind::Diff { messages: 3 });
    assert_eq!(p.status().borrow().last_error, None);
}

#[tokio::test]
async fn timeout_then_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    let path = region_path(&dir);
    let dp = FakeDataPlane::start(&path);
    let mut o = opts(&path);
    o.reply_timeout = Duration::from_millis(300);
    let mut p = Programmer::new(o, Arc::new(MemoryAppliedState::default()));
    p.sync(&set(2, 1), 1).await.unwrap();

    dp.silent.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let err = p.sync(&set(2, 3), 2).await.unwrap_err();
    assert!(
        matches!(err, ProgramError::Timeout { generation: 2, .. }),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(p.status().borrow().timeouts, 1);

    // What the data plane has is now in doubt: the next sync replays in full.
    dp.silent.store(false, Ordering::SeqCst);
    dp.take_received();
    let o = p.sync(&set(2, 3), 2).await.unwrap();
    assert!(matches!(o.kind, SyncKind::Full { .. }), "{o:?}");
    assert_eq!(dp.applied(), (2, canonical(&set(2, 3))));
}

#[tokio::test]
async fn protocol_rejection_is_retried_as_a_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    let path = region_path(&dir);
    let dp = FakeDataPlane::start(&path);
    let mut p = Programmer::new(opts(&path), Arc::new(MemoryAppliedState::default()));
    p.sync(&set(3, 1), 1).await.unwrap();
    // The programmer holds the control plane's lock: a second attacher is refused.
    assert!(Region::attach(&path).is_err());
    // Behind the programmer's back, backend 3 disappears from the data plane.
    *dp.forget.lock().unwrap() = Some(set(2, 1));
    while dp.forget.lock().unwrap().is_some() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    dp.take_received();
    // The diff deletes backend 3, which the data plane no longer has: UnknownObject, then the
    // programmer replays in full.
    let mut want = set(2, 1);
    want.backends[0].weight = 9;
    let o = p.sync(&want, 2).await.unwrap();
    assert!(matches!(o.kind, SyncKind::Full { .. }), "{o:?}");
    let got = dp.take_received();
    assert!(got.contains(&(2, Message::DeleteBackend(BackendId(3)))));
    assert_eq!(resets(&got), 1);
    assert_eq!(dp.applied(), (2, canonical(&want)));
    assert_eq!(p.status().borrow().transactions_rejected, 1);
}

#[tokio::test]
async fn run_loop_replays_after_a_data_plane_restart_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let path = region_path(&dir);
    let p = Programmer::new(opts(&path), Arc::new(MemoryAppliedState::default()));
    let regions = p.region();
    let status = p.status();
    let (desired_tx, desired_rx) = watch::channel(Arc::new(Desired {
        store_generation: 4,
        services: set(3, 1),
    }));
    let (stop_tx, stop_rx) = watch::channel(false);
    // The loop starts before the data plane: it keeps trying to attach.
    let task = tokio::spawn(p.run(desired_rx, stop_rx));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(!status.borrow().attached);
    assert!(status
        .borrow()
        .last_error
        .as_deref()
        .unwrap()
        .contains("cannot attach"));

    let dp = FakeDataPlane::start(&path);
    let wait_applied = |dp: &FakeDataPlane, generation: u64, s: ServiceSet| {
        let deadline = Instant::now() + Duration::from_secs(2);
        let want = (generation, canonical(&s));
        let dp_applied = dp.applied.clone();
        async move {
            while Instant::now() < deadline {
                if *dp_applied.lock().unwrap() == want {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        }
    };
    assert!(wait_applied(&dp, 4, set(3, 1)).await, "first sync");
    assert!(regions.borrow().is_some());

    // A new desired state is applied as a diff.
    desired_tx.send_replace(Arc::new(Desired {
        store_generation: 5,
        services: set(4, 1),
    }));
    assert!(wait_applied(&dp, 5, set(4, 1)).await, "diff");
    assert_eq!(
        resets(&dp.take_received()),
        1,
        "only the first sync was a replay"
    );

    // kill the data plane and start another: replayed within 2 s.
    drop(dp);
    let restarted = Instant::now();
    let dp = FakeDataPlane::start(&path);
    assert!(
        wait_applied(&dp, 5, set(4, 1)).await,
        "replay after restart"
    );
    let took = restarted.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(resets(&dp.take_received()), 1);
    assert_eq!(status.borrow().attaches, 2);

    stop_tx.send_replace(true);
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("run returns on shutdown")
        .unwrap();
}
