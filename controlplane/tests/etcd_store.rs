//! `store = "etcd"`: one configuration for a tier of nodes, against a real etcd (Debian's
//! etcd-server, started by the test on a temporary directory and free ports) and real
//! fiberlbd processes, each programming a real fiberlb-dataplane (AF_XDP on veths in a network
//! namespace the test creates and deletes; no traffic: forwarding through an etcd outage is
//! `tests/e2e/controlplane.sh` with `FCP_STORE=etcd`).
//!
//! - `two_nodes_one_configuration`: a write on node A is applied by node B's data plane within
//!   1 s (its synced generation; its lookup answers equal A's), p50/p99 printed;
//!   2 x 200 concurrent creates through both nodes: no lost or duplicate object, no duplicate
//!   VIP; etcd killed: writes answer UNAVAILABLE with a message, the node reports the store
//!   unreachable, both data planes keep their configuration; etcd back: a change through B is
//!   picked up by A; a registered backend (TTL 2 s) stops being used within 3 s after its
//!   keep-alives stop.
//! - `three_members_one_stopped`: with one of three etcd members stopped, writes still work.
//!
//! Root only (namespaces, XDP), and etcd must be installed (scripts/setup.sh does); otherwise
//! the tests say why and return.
//!
//! ```sh
//! cargo build --release --workspace --bins
//! FIBERLB_BIN_DIR=target/release cargo test -p fiberlb-controlplane --test etcd_store -- --nocapture --test-threads 1
//! ```

use std::time::{Duration, Instant};

use fiberlb_controlplane::api::client::{connect, Clients};
use fiberlb_controlplane::pb;

mod etcd_harness;
mod support;
use etcd_harness::{skip, Etcd, Node, LIVENESS};

fn scope() -> Option<pb::Scope> {
    Some(pb::Scope {
        org_id: "tier".into(),
        project_id: "web".into(),
    })
}

/// The store generation node `c`'s data plane holds.
async fn synced(c: &mut Clients) -> Option<u64> {
    c.dataplane
        .status(pb::StatusRequest {})
        .await
        .ok()?
        .into_inner()
        .synced_store_generation
}

/// Waits until `c`'s data plane holds at least `generation`; the time it took.
async fn wait_synced(c: &mut Clients, generation: u64, what: &str) -> Duration {
    let t0 = Instant::now();
    loop {
        if synced(c).await.is_some_and(|g| g >= generation) {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < LIVENESS,
            "{what}: generation {generation} not applied (data plane at {:?})",
            synced(c).await
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn lookup(c: &mut Clients, vip: &str, src_port: u32) -> Option<u32> {
    c.dataplane
        .lookup(pb::LookupRequest {
            scope: scope(),
            src_address: "198.51.100.7".into(),
            src_port,
            dst_address: vip.into(),
            dst_port: 80,
            protocol: "tcp".into(),
        })
        .await
        .ok()?
        .into_inner()
        .backend
        .map(|b| b.id)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_one_configuration() {
    if skip("two_nodes_one_configuration") {
        return;
    }
    let mut etcd = Etcd::start(1);
    let eps = etcd.endpoints();
    let a = Node::start("a", &eps, true);
    let b = Node::start("b", &eps, true);
    let (mut ca, mut cb) = (a.client().await, b.client().await);

    // --- a write on A is applied by B's data plane ---
    let lb = ca
        .load_balancers
        .create(pb::CreateLoadBalancerRequest {
            scope: scope(),
            name: "web".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .load_balancer
        .unwrap();
    let pool = ca
        .pools
        .create(pb::CreatePoolRequest {
            scope: scope(),
            name: "web".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .pool
        .unwrap();
    let mut backends = Vec::new();
    for i in 1..=3u32 {
        let r = ca
            .backends
            .create(pb::CreateBackendRequest {
                scope: scope(),
                pool_id: pool.id,
                address: format!("198.18.2.{i}"),
                port: 80,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        backends.push(r.backend.unwrap().id);
    }
    let r = ca
        .listeners
        .create(pb::CreateListenerRequest {
            scope: scope(),
            load_balancer_id: lb.id,
            port: 80,
            protocol: "tcp".into(),
            mode: "nat".into(),
            pool_id: pool.id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let took = wait_synced(&mut cb, r.generation, "listener created on A, on B").await;
    assert!(
        took < Duration::from_secs(1),
        "B applied A's write after {took:?}"
    );
    let ports: Vec<u32> = (40000..40200).collect();
    let mut on_a = Vec::new();
    let mut on_b = Vec::new();
    for p in &ports {
        on_a.push(lookup(&mut ca, &lb.vip, *p).await);
        on_b.push(lookup(&mut cb, &lb.vip, *p).await);
    }
    assert!(on_a.iter().all(Option::is_some), "A has no answer");
    assert_eq!(on_a, on_b, "A and B choose different backends");
    for id in &backends {
        assert!(on_a.contains(&Some(*id)), "backend {id} never chosen");
    }

    // write on A -> applied by B's data plane: p50/p99 over 100 writes
    let mut samples = Vec::new();
    for i in 0..100u32 {
        let r = ca
            .backends
            .update(pb::UpdateBackendRequest {
                scope: scope(),
                id: backends[0],
                weight: Some(1 + i % 50),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let t0 = Instant::now();
        let both = tokio::join!(
            wait_synced(&mut ca, r.generation, "A"),
            wait_synced(&mut cb, r.generation, "B")
        );
        let _ = both;
        samples.push(t0.elapsed());
    }
    samples.sort();
    let (p50, p99) = (pct(&samples, 0.5), pct(&samples, 0.99));
    println!(
        "RESULT etcd write->applied on both nodes: p50 {:.2} ms p99 {:.2} ms max {:.2} ms (100 writes)",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3
    );
    assert!(
        p50 < Duration::from_secs(1),
        "half the writes took over 1 s to reach both data planes: p50 {p50:?}"
    );

    // --- 2 x 200 concurrent creates through both nodes ---
    let mut tasks = Vec::new();
    for (node, sock) in [("a", a.socket.clone()), ("b", b.socket.clone())] {
        for worker in 0..4 {
            let sock = sock.clone();
            tasks.push(tokio::spawn(async move {
                let mut c = connect(sock.to_str().unwrap(), None, None).await.unwrap();
                let mut ids = Vec::new();
                for i in 0..50 {
                    let reply = c
                        .load_balancers
                        .create(pb::CreateLoadBalancerRequest {
                            scope: scope(),
                            name: format!("c-{node}-{worker}-{i}"),
                            ..Default::default()
                        })
                        .await
                        .unwrap_or_else(|e| panic!("create on {node}: {e}"))
                        .into_inner();
                    let r = reply.load_balancer.unwrap();
                    ids.push((r.id, r.vip, r.name, reply.generation));
                }
                ids
            }));
        }
    }
    let mut created = Vec::new();
    let mut last_generation = 0;
    for t in tasks {
        for (id, vip, name, generation) in t.await.unwrap() {
            last_generation = last_generation.max(generation);
            created.push((id, vip, name));
        }
    }
    assert_eq!(created.len(), 400);
    let ids: std::collections::HashSet<_> = created.iter().map(|c| c.0).collect();
    let vips: std::collections::HashSet<_> = created.iter().map(|c| c.1.clone()).collect();
    assert_eq!(ids.len(), 400, "duplicate ids handed out");
    assert_eq!(vips.len(), 400, "duplicate VIPs handed out");
    let list = |lbs: Vec<pb::LoadBalancer>| {
        let mut v: Vec<(u32, String, String)> = lbs
            .into_iter()
            .filter(|l| l.name.starts_with("c-"))
            .map(|l| (l.id, l.vip, l.name))
            .collect();
        v.sort();
        v
    };
    created.sort();
    // Both nodes have learnt every create (each node's copy follows etcd's watch).
    wait_synced(&mut ca, last_generation, "A after concurrent creates").await;
    wait_synced(&mut cb, last_generation, "B after concurrent creates").await;
    let from_a = list(
        ca.load_balancers
            .list(pb::ListRequest {
                scope: scope(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .load_balancers,
    );
    let from_b = list(
        cb.load_balancers
            .list(pb::ListRequest {
                scope: scope(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .load_balancers,
    );
    assert_eq!(from_a, created, "A's list differs from what was created");
    assert_eq!(from_b, created, "B's list differs from what was created");
    println!("RESULT etcd concurrent creates: 2 x 200, 400 objects, 400 distinct ids and VIPs on both nodes");

    // --- a registered backend (TTL 2 s) stops being used within 3 s of its last keep-alive ---
    let reg = ca
        .backends
        .register(pb::RegisterBackendRequest {
            scope: scope(),
            pool_id: pool.id,
            address: "198.18.2.50".into(),
            port: 80,
            ttl_ms: 2000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let reg_id = reg.backend.as_ref().unwrap().id;
    // An agent renewing through B every 400 ms, from right after the registration (a slow
    // machine must not let the lease lapse while the test looks around).
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let keeper = {
        let mut c = cb.clone();
        let lease_id = reg.lease_id;
        tokio::spawn(async move {
            let mut last = Instant::now();
            loop {
                tokio::select! {
                    _ = stop_rx.wait_for(|s| *s) => return last,
                    () = tokio::time::sleep(Duration::from_millis(400)) => {}
                }
                c.backends
                    .keep_alive(pb::KeepAliveRequest {
                        scope: scope(),
                        lease_id,
                    })
                    .await
                    .unwrap_or_else(|e| panic!("keep-alive through B: {e}"));
                last = Instant::now();
            }
        })
    };
    wait_synced(&mut cb, reg.generation, "registered backend on B").await;
    let mut chosen = false;
    for p in &ports {
        chosen |= lookup(&mut cb, &lb.vip, *p).await == Some(reg_id);
    }
    assert!(chosen, "B never chooses the registered backend");
    // Kept alive for 3 s after that (longer than its TTL): it must stay.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = stop_tx.send(true);
    let last_keepalive = keeper.await.expect("keep-alive task");
    let present = |c: &mut Clients| {
        let mut c = c.clone();
        async move {
            c.backends
                .get(pb::GetRequest {
                    scope: scope(),
                    id: reg_id,
                })
                .await
                .is_ok()
        }
    };
    assert!(present(&mut cb).await, "kept-alive backend vanished");
    loop {
        let mut used = false;
        for p in ports.iter().take(20) {
            used |= lookup(&mut cb, &lb.vip, *p).await == Some(reg_id);
        }
        let gone = !present(&mut cb).await && !present(&mut ca).await;
        if gone && !used {
            // And B's data plane holds the generation without it.
            let g = cb
                .dataplane
                .status(pb::StatusRequest {})
                .await
                .unwrap()
                .into_inner()
                .store_generation;
            wait_synced(&mut cb, g, "B after expiry").await;
            break;
        }
        assert!(
            last_keepalive.elapsed() < Duration::from_secs(3),
            "registered backend still present {:?} after its last keep-alive (TTL 2 s)",
            last_keepalive.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let expired_after = last_keepalive.elapsed();
    println!(
        "RESULT etcd lease: TTL 2 s backend gone from both nodes and B's data plane {:.0} ms after the last keep-alive",
        expired_after.as_secs_f64() * 1e3
    );
    let e = cb
        .backends
        .keep_alive(pb::KeepAliveRequest {
            scope: scope(),
            lease_id: reg.lease_id,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");

    // --- etcd killed: data planes keep their configuration, writes are refused clearly ---
    let before_a = lookup(&mut ca, &lb.vip, 40001).await;
    let gen_before = synced(&mut cb).await;
    etcd.stop_member(0);
    let t0 = Instant::now();
    let err = ca
        .pools
        .create(pb::CreatePoolRequest {
            scope: scope(),
            name: "during-outage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    assert!(
        err.message().contains("etcd") && err.message().contains("unavailable"),
        "unclear message: {}",
        err.message()
    );
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "refusal took {:?}",
        t0.elapsed()
    );
    println!(
        "RESULT etcd down: write refused after {:?}: {}",
        t0.elapsed(),
        err.message()
    );
    // The node reports the store unreachable (status), within its watch's retry.
    let t0 = Instant::now();
    loop {
        let s = cb
            .node
            .status(pb::NodeStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if !s.store_reachable {
            assert_eq!(s.store_kind, "etcd");
            assert!(!s.store_error.is_empty());
            break;
        }
        assert!(t0.elapsed() < LIVENESS, "B still reports etcd reachable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(synced(&mut cb).await, gen_before, "B's data plane changed");
    assert_eq!(
        lookup(&mut ca, &lb.vip, 40001).await,
        before_a,
        "A's answer changed"
    );
    for n in [&a, &b] {
        assert!(
            n.log().contains("unavailable") || n.log().contains("unreachable"),
            "no log line about the outage"
        );
    }

    // --- etcd back: a change through B is picked up by A ---
    etcd.start_member(0);
    etcd.wait_healthy();
    let t0 = Instant::now();
    let r = loop {
        match cb
            .pools
            .create(pb::CreatePoolRequest {
                scope: scope(),
                name: "after-outage".into(),
                ..Default::default()
            })
            .await
        {
            Ok(r) => break r.into_inner(),
            Err(e) if e.code() == tonic::Code::Unavailable && t0.elapsed() < LIVENESS => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("write after etcd came back: {e}"),
        }
    };
    let took = wait_synced(&mut ca, r.generation, "A after the outage").await;
    let s = ca
        .node
        .status(pb::NodeStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(s.store_reachable, "A still reports etcd unreachable: {s:?}");
    println!(
        "RESULT etcd back: write through B accepted {:?} after restart, on A's data plane {:?} later",
        t0.elapsed(),
        took
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_one_stopped() {
    if skip("three_members_one_stopped") {
        return;
    }
    let mut etcd = Etcd::start(3);
    let node = Node::start("m", &etcd.endpoints(), false);
    let mut c = node.client().await;
    let create = |c: &mut Clients, name: &str| {
        let mut c = c.clone();
        let name = name.to_string();
        async move {
            c.pools
                .create(pb::CreatePoolRequest {
                    scope: scope(),
                    name,
                    ..Default::default()
                })
                .await
        }
    };
    create(&mut c, "p0").await.unwrap();
    // Stop one member (the first endpoint fiberlbd knows): writes go on through the others.
    etcd.stop_member(0);
    let t0 = Instant::now();
    let mut ok = 0;
    for i in 1..=20 {
        match create(&mut c, &format!("p{i}")).await {
            Ok(_) => ok += 1,
            // The balanced channel may send the first request to the dead member.
            Err(e) if e.code() == tonic::Code::Unavailable && ok == 0 => {
                assert!(t0.elapsed() < LIVENESS, "no write succeeded: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("write {i} with 2 of 3 members up: {e}"),
        }
    }
    assert!(ok >= 19, "{ok} of 20 writes succeeded");
    let n = c
        .pools
        .list(pb::ListRequest {
            scope: scope(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .pools
        .len();
    assert_eq!(n, 1 + ok, "pools lost");
    println!("RESULT etcd 3 members, one stopped: {ok}/20 writes after the stop, {n} pools");
}
