//! Tests of [`super`].

use super::*;
use fiberlb_shared::model::*;

#[test]
fn local_addrs_publish_and_copy() {
    let t = LocalAddrs::new();
    let mut set = LocalAddrSet::default();
    t.load_into(&mut set);
    assert!(set.is_empty());
    assert_eq!(set.generation(), t.generation());
    let g0 = t.generation();
    let a4: IpAddr = "10.91.2.1".parse().unwrap();
    let a6: IpAddr = "fd00::1".parse().unwrap();
    assert_eq!(t.publish(&[a4, a6]), 2);
    assert_ne!(t.generation(), g0);
    t.load_into(&mut set);
    assert_eq!(set.len(), 2);
    assert!(set.contains(&ListenerKey::from_ip(a4, 0, 0).addr, false));
    assert!(!set.contains(&ListenerKey::from_ip(a4, 0, 0).addr, true));
    assert!(set.contains(&ListenerKey::from_ip(a6, 0, 0).addr, true));
    assert!(!set.contains(&ListenerKey::v4([10, 91, 2, 2], 0, 0).addr, false));
    // More than fit: the first MAX_LOCAL_ADDRS are taken.
    let many: Vec<IpAddr> = (0..40u8).map(|i| IpAddr::from([10, 0, 0, i])).collect();
    assert_eq!(t.publish(&many), MAX_LOCAL_ADDRS);
    t.load_into(&mut set);
    assert_eq!(set.len(), MAX_LOCAL_ADDRS);
    assert!(!set.contains(&ListenerKey::from_ip(a4, 0, 0).addr, false));
    t.publish(&[]);
    t.load_into(&mut set);
    assert!(set.is_empty());
}

#[test]
fn local_addrs_readers_never_see_a_torn_table() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    // The writer alternates between two tables; a reader must always see one of them.
    let t = Arc::new(LocalAddrs::new());
    let a: Vec<IpAddr> = (1..=4u8).map(|i| IpAddr::from([10, 1, 1, i])).collect();
    let b: Vec<IpAddr> = (1..=6u8).map(|i| IpAddr::from([10, 2, 2, i])).collect();
    t.publish(&a);
    // A load that meets a write in progress leaves the set as it was: start from a
    // consistent copy of `a`, taken before the writer runs (an empty default set seen
    // after such a first load is not a torn table — the test once failed on exactly that).
    let mut set = LocalAddrSet::default();
    t.load_into(&mut set);
    assert_eq!(set.len(), 4);
    let stop = Arc::new(AtomicBool::new(false));
    let w = {
        let (t, stop, a, b) = (t.clone(), stop.clone(), a.clone(), b.clone());
        std::thread::spawn(move || {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                t.publish(if i % 2 == 0 { &b } else { &a });
                i += 1;
            }
        })
    };
    let mut loads = 0;
    for _ in 0..200_000 {
        t.load_into(&mut set);
        let want = if set.len() == 4 { &a } else { &b };
        assert!(set.len() == 4 || set.len() == 6, "len {}", set.len());
        for x in want {
            assert!(set.contains(&ListenerKey::from_ip(*x, 0, 0).addr, false));
        }
        loads += 1;
    }
    stop.store(true, Ordering::Relaxed);
    w.join().unwrap();
    assert_eq!(loads, 200_000);
}

fn set(backends: &[(u32, &str, u32)]) -> ServiceSet {
    ServiceSet {
        listeners: vec![Listener {
            id: ListenerId(1),
            name: "web/80/tcp".into(),
            vip: "10.0.0.100".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
            mode: Mode::Nat,
            encap: Encap::Ipip,
            pool: PoolId(1),
        }],
        pools: vec![Pool {
            id: PoolId(1),
            name: "web".into(),
            algorithm: Algorithm::Maglev,
            table_size: 251,
        }],
        backends: backends
            .iter()
            .map(|&(id, addr, weight)| Backend {
                id: BackendId(id),
                pool: PoolId(1),
                address: addr.parse().unwrap(),
                port: 8080,
                weight,
                mac: None,
                admin: AdminState::Enabled,
                healthy: true,
            })
            .collect(),
        tunnel: TunnelSettings::default(),
    }
}

#[test]
fn slots_stay_stable_and_reuse_bumps_incarnation() {
    let mut b = SnapshotBuilder::new(16, 16);
    let s1 = b
        .build(&set(&[(10, "10.1.0.1", 1), (11, "10.1.0.2", 1)]), 1)
        .unwrap();
    let h10 = s1
        .backends
        .iter()
        .flatten()
        .find(|r| r.id == BackendId(10))
        .unwrap()
        .handle;
    let h11 = s1
        .backends
        .iter()
        .flatten()
        .find(|r| r.id == BackendId(11))
        .unwrap()
        .handle;
    // Remove 10, add 12: 11 keeps its handle, 12 takes 10's slot with a new incarnation.
    let s2 = b
        .build(&set(&[(11, "10.1.0.2", 1), (12, "10.1.0.3", 1)]), 2)
        .unwrap();
    let h12 = s2
        .backends
        .iter()
        .flatten()
        .find(|r| r.id == BackendId(12))
        .unwrap()
        .handle;
    assert!(s2.backend(h11).is_some());
    assert!(s2.backend(h10).is_none(), "stale handle must not resolve");
    assert_eq!(handle_slot(h12), handle_slot(h10));
    assert_ne!(h12, h10);
    // Every Maglev slot names a live active backend.
    assert!(s2.pools[0].table.iter().all(|&h| s2.backend(h).is_some()));
    assert_eq!(s2.nat_return.len(), 2);
    // The per-packet listener index answers what the map answers.
    for s in [&s1, &s2] {
        assert_eq!(s.listener_index.len(), s.listener_map.len());
        for (k, &li) in &s.listener_map {
            assert_eq!(s.listener_index.get(k), Some(li));
            let other = ListenerKey {
                port: k.port ^ 1,
                ..*k
            };
            assert_eq!(
                s.listener_index.get(&other),
                s.listener_map.get(&other).copied()
            );
        }
    }
}

#[test]
fn inactive_backends_leave_the_table() {
    let mut b = SnapshotBuilder::new(16, 16);
    let mut s = set(&[(1, "10.1.0.1", 1), (2, "10.1.0.2", 1), (3, "10.1.0.3", 0)]);
    s.backends[1].healthy = false;
    let snap = b.build(&s, 1).unwrap();
    let h1 = snap
        .backends
        .iter()
        .flatten()
        .find(|r| r.id == BackendId(1))
        .unwrap()
        .handle;
    assert!(snap.pools[0].table.iter().all(|&h| h == h1));
    assert_eq!(snap.pools[0].active, 1);
    s.backends[0].admin = AdminState::Drained;
    let snap = b.build(&s, 2).unwrap();
    assert!(snap.pools[0].table.iter().all(|&h| h == NO_BACKEND));
    assert_eq!(snap.backend(h1).unwrap().usability, Usability::ExistingOnly);
}

#[test]
fn backends_without_a_next_hop_get_no_new_flows() {
    // No gateway MAC on the backend side: a backend without a MAC is unusable until its
    // MAC arrives (no flow is sent where it would be dropped as no_next_hop).
    let mut b = SnapshotBuilder::new(16, 16).with_gateway_fallback(false);
    let mut s = set(&[(1, "10.1.0.1", 1), (2, "10.1.0.2", 1)]);
    s.backends[0].mac = Some([2, 0, 0, 0, 0, 1]);
    let snap = b.build(&s, 1).unwrap();
    let handle = |snap: &Snapshot, id| {
        snap.backends
            .iter()
            .flatten()
            .find(|r| r.id == BackendId(id))
            .unwrap()
            .handle
    };
    let h1 = handle(&snap, 1);
    assert_eq!(snap.pools[0].active, 1);
    assert!(snap.pools[0].table.iter().all(|&h| h == h1));
    assert_eq!(
        snap.backend(handle(&snap, 2)).unwrap().usability,
        Usability::Unusable
    );
    // Its MAC resolved: it takes its share.
    s.backends[1].mac = Some([2, 0, 0, 0, 0, 2]);
    let snap = b.build(&s, 2).unwrap();
    assert_eq!(snap.pools[0].active, 2);
    let h2 = handle(&snap, 2);
    assert!(snap.pools[0].table.contains(&h2));
    // With a gateway to fall back on, a backend without a MAC stays in the table.
    let mut g = SnapshotBuilder::new(16, 16).with_gateway_fallback(true);
    s.backends[1].mac = None;
    assert_eq!(g.build(&s, 1).unwrap().pools[0].active, 2);
}

#[test]
fn limits_are_enforced_without_side_effects() {
    let mut b = SnapshotBuilder::new(16, 1);
    let err = b
        .build(&set(&[(1, "10.1.0.1", 1), (2, "10.1.0.2", 1)]), 1)
        .unwrap_err();
    assert!(err.to_string().contains("max_backends = 1"), "{err}");
    assert!(b.backends.by_id.is_empty());
}

/// A second pool, `api`, listing the same addresses as `web` with its own backend objects.
fn two_pools(backends: &[(u32, &str, u32)]) -> ServiceSet {
    let mut s = set(backends);
    s.pools.push(Pool {
        id: PoolId(2),
        name: "api".into(),
        algorithm: Algorithm::Maglev,
        table_size: 251,
    });
    let copies: Vec<Backend> = s
        .backends
        .iter()
        .map(|b| Backend {
            id: BackendId(b.id.0 + 100),
            pool: PoolId(2),
            ..b.clone()
        })
        .collect();
    s.backends.extend(copies);
    s
}

#[test]
fn unchanged_pools_reuse_their_maglev_table() {
    let mut b = SnapshotBuilder::new(16, 16);
    let a = two_pools(&[(1, "10.1.0.1", 1), (2, "10.1.0.2", 1), (3, "10.1.0.3", 1)]);
    let s1 = b.build(&a, 1).unwrap();
    // Same addresses in both pools: one Maglev build, copied for the second pool's handles.
    assert_eq!(b.table_builds(), (1, 1, 0));
    assert_ne!(
        s1.pools[0].table, s1.pools[1].table,
        "each pool names its own handles"
    );
    // The same configuration again: nothing is built or copied, the tables are shared.
    let s2 = b.build(&a, 2).unwrap();
    assert_eq!(b.table_builds(), (1, 1, 2));
    assert!(Arc::ptr_eq(&s1.pools[0].table, &s2.pools[0].table));
    assert!(Arc::ptr_eq(&s1.pools[1].table, &s2.pools[1].table));
    // A backend of `web` goes down: only `web` is built, and its table is what a builder
    // without a cache makes.
    let mut down = a.clone();
    down.backends[1].healthy = false;
    let s3 = b.build(&down, 3).unwrap();
    assert_eq!(b.table_builds(), (2, 1, 3));
    assert!(Arc::ptr_eq(&s1.pools[1].table, &s3.pools[1].table));
    let mut fresh = SnapshotBuilder::new(16, 16);
    fresh.build(&a, 1).unwrap(); // the same slots as `b`
    assert_eq!(
        fresh.build(&down, 2).unwrap().pools[0].table,
        s3.pools[0].table
    );
    // It comes back: the earlier table is found again (flapping costs no build).
    let s4 = b.build(&a, 4).unwrap();
    assert_eq!(b.table_builds(), (2, 1, 5));
    assert!(Arc::ptr_eq(&s1.pools[0].table, &s4.pools[0].table));
    // Backend 2 replaced by backend 4 at the same address: same Maglev inputs, a new handle:
    // no build, the cached build is copied with the new handles and names the new backend.
    let mut replaced = a.clone();
    replaced.backends[1].id = BackendId(4);
    let s5 = b.build(&replaced, 5).unwrap();
    assert_eq!(b.table_builds(), (2, 2, 6));
    let h4 = s5
        .backends
        .iter()
        .flatten()
        .find(|r| r.id == BackendId(4))
        .unwrap()
        .handle;
    assert!(s5.pools[0].table.contains(&h4));
    assert!(s5.pools[0].table.iter().all(|&h| s5.backend(h).is_some()));
    let mut fresh = SnapshotBuilder::new(16, 16);
    fresh.build(&a, 1).unwrap();
    assert_eq!(
        fresh.build(&replaced, 2).unwrap().pools[0].table,
        s5.pools[0].table
    );
    // Builds unused for TABLE_CACHE_BUILDS builds are dropped: `down`'s is built again.
    for g in 6..6 + TABLE_CACHE_BUILDS {
        b.build(&replaced, g).unwrap();
    }
    assert_eq!(
        b.tables.entries.len(),
        1,
        "only the configuration in use stays cached"
    );
    let before = b.table_builds().0;
    b.build(&down, 100).unwrap();
    assert_eq!(
        b.table_builds().0,
        before + 1,
        "an evicted table is built again"
    );
}

/// Whatever the history (backends going down and up, removed and added again, weights moving),
/// every pool's table names the same backends, slot for slot, as a builder without a cache.
#[test]
fn cached_tables_equal_fresh_builds_over_random_histories() {
    let resolved = |snap: &Snapshot, pool: usize| -> Vec<Option<u32>> {
        snap.pools[pool]
            .table
            .iter()
            .map(|&h| snap.backend(h).map(|b| b.id.0))
            .collect()
    };
    let mut b = SnapshotBuilder::new(64, 64);
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut s = two_pools(&[(1, "10.1.0.1", 1), (2, "10.1.0.2", 1), (3, "10.1.0.3", 2)]);
    let mut next_id = 300;
    for g in 1..300u64 {
        let i = next(s.backends.len() as u64) as usize;
        match next(4) {
            0 => s.backends[i].healthy = !s.backends[i].healthy,
            1 => s.backends[i].weight = 1 + next(3) as u32,
            // Removed and added again at once: same address, a new object (new handle).
            2 => {
                s.backends[i].id = BackendId(next_id);
                next_id += 1;
            }
            _ => {} // the same configuration again
        }
        let snap = b.build(&s, g).unwrap();
        let fresh = SnapshotBuilder::new(64, 64).build(&s, 1).unwrap();
        for pool in 0..2 {
            assert_eq!(
                resolved(&snap, pool),
                resolved(&fresh, pool),
                "build {g}, pool {pool}"
            );
        }
    }
    let (built, mapped, reused) = b.table_builds();
    assert!(
        built > 0 && mapped > 0 && reused > 0,
        "{built} {mapped} {reused}"
    );
}

#[test]
fn weights_scaled_together_reuse_the_table() {
    let mut b = SnapshotBuilder::new(16, 16);
    let s1 = b
        .build(&set(&[(1, "10.1.0.1", 1), (2, "10.1.0.2", 2)]), 1)
        .unwrap();
    let s2 = b
        .build(&set(&[(1, "10.1.0.1", 3), (2, "10.1.0.2", 6)]), 2)
        .unwrap();
    assert!(Arc::ptr_eq(&s1.pools[0].table, &s2.pools[0].table));
    assert_eq!(b.table_builds(), (1, 0, 1));
    // A one-backend pool: any weight, one table.
    let mut b = SnapshotBuilder::new(16, 16);
    for (g, w) in [1, 7, 100].into_iter().enumerate() {
        b.build(&set(&[(1, "10.1.0.1", w)]), g as u64 + 1).unwrap();
    }
    assert_eq!(b.table_builds(), (1, 0, 2));
}
