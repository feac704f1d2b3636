//! The protocol across two real processes: this test re-executes its own binary as the control
//! plane, which maps the region separately, sends a transaction and waits for the reply, while
//! the parent plays the data plane with the transaction assembler.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use fiberlb_shared::model::{
    AdminState, Algorithm, Backend, BackendId, Encap, Listener, ListenerId, Mode, Pool, PoolId,
    Protocol, ServiceSet,
};
use fiberlb_shared::shm::message::{Message, RejectCode};
use fiberlb_shared::shm::region::{Region, RegionConfig};
use fiberlb_shared::shm::transaction::{diff_to_messages, Assembler, Outcome};

const CHILD_ENV: &str = "FIBERLB_SHM_CHILD_REGION";

fn services() -> ServiceSet {
    ServiceSet {
        listeners: vec![Listener {
            id: ListenerId(1),
            name: "web/80/tcp".into(),
            vip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
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
            table_size: 65537,
        }],
        backends: (1..=20)
            .map(|i| Backend {
                id: BackendId(i),
                pool: PoolId(1),
                address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8)),
                port: 80,
                weight: 100,
                mac: Some([2, 0, 0, 0, 0, i as u8]),
                admin: AdminState::Enabled,
                healthy: i % 2 == 0,
            })
            .collect(),
        tunnel: Default::default(),
    }
}

/// The control plane side; run only as the child.
#[test]
#[ignore = "run by shm_two_process_transaction as a separate process"]
fn control_plane_child() {
    let path = PathBuf::from(std::env::var(CHILD_ENV).expect("run by the parent test"));
    let mut region = Region::attach(&path).unwrap();
    let (mut tx, mut rx) = region.endpoints().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut send_all = |generation: u64, messages: Vec<Message>| {
        for m in messages {
            // The ring (16 slots) is smaller than the transaction: wait for room.
            loop {
                match tx.send(generation, m.clone()) {
                    Ok(_) => break,
                    Err(_) if Instant::now() < deadline => std::thread::yield_now(),
                    Err(e) => panic!("send: {e}"),
                }
            }
            region.beat();
        }
    };
    // A transaction that must be rejected (stale generation 0), then the real one.
    send_all(0, vec![Message::Begin]);
    send_all(1, diff_to_messages(&ServiceSet::default(), &services()));
    let mut replies = Vec::new();
    while replies.len() < 2 {
        assert!(Instant::now() < deadline, "no reply; got {replies:?}");
        match rx.try_recv().unwrap() {
            Some(f) => replies.push((f.generation, f.message)),
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    assert!(matches!(
        replies[0],
        (
            0,
            Message::Rejected {
                code: RejectCode::StaleGeneration,
                ..
            }
        )
    ));
    assert_eq!(replies[1], (1, Message::Applied));
    assert_eq!(region.header().applied_generation(), 1);
}

#[test]
fn shm_two_process_transaction() {
    let path = std::env::temp_dir().join(format!("fiberlb-two-process-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let config = RegionConfig {
        ring_capacity: 16,
        ..RegionConfig::default()
    };
    let mut region = Region::create(&path, &config).unwrap();
    let (mut tx, mut rx) = region.endpoints().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "control_plane_child", "--ignored", "--nocapture"])
        .env(CHILD_ENV, &path)
        .spawn()
        .unwrap();
    let mut assembler = Assembler::new(ServiceSet::default(), 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut applied = None;
    let mut received = 0;
    while applied.is_none() {
        assert!(Instant::now() < deadline, "child sent no Commit");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("child exited early: {status}");
        }
        region.beat();
        let outcome = match rx.try_recv() {
            Ok(Some(frame)) => {
                received += 1;
                assembler.accept(frame.generation, frame.message)
            }
            Ok(None) => {
                std::thread::yield_now();
                continue;
            }
            Err(e) => assembler.protocol_error(RejectCode::Malformed, &e.to_string()),
        };
        if let Some((generation, reply)) = outcome.reply() {
            if let Outcome::Applied { services, .. } = &outcome {
                region.header().set_applied_generation(generation);
                applied = Some(services.clone());
            }
            tx.send(generation, reply).unwrap();
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "control plane child failed: {status}");
    assert_eq!(applied.unwrap(), services());
    // Begin(0) + Begin + 22 body messages + Commit.
    assert_eq!(received, 1 + 1 + 22 + 1);
    drop((tx, rx, region));
    std::fs::remove_file(&path).unwrap();
}
