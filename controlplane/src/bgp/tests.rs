use super::*;
use fiberlb_shared::model::{
    AdminState, Algorithm, Backend, BackendId, Encap, Listener, ListenerId, Mode, Pool, PoolId,
    Protocol,
};

fn set(backends: &[(u32, &str, bool, u32)]) -> ServiceSet {
    let mut s = ServiceSet::default();
    for (i, vip) in ["10.0.0.1", "10.0.0.2"].iter().enumerate() {
        let id = u32::try_from(i).unwrap() + 1;
        s.listeners.push(Listener {
            id: ListenerId(id),
            name: format!("l{id}"),
            vip: vip.parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
            mode: Mode::Nat,
            encap: Encap::default(),
            pool: PoolId(id),
        });
        s.pools.push(Pool {
            id: PoolId(id),
            name: format!("p{id}"),
            algorithm: Algorithm::default(),
            table_size: 65537,
        });
    }
    for (n, (pool, addr, healthy, weight)) in backends.iter().enumerate() {
        s.backends.push(Backend {
            id: BackendId(u32::try_from(n).unwrap() + 1),
            pool: PoolId(*pool),
            address: addr.parse().unwrap(),
            port: 80,
            weight: *weight,
            mac: None,
            admin: AdminState::Enabled,
            healthy: *healthy,
        });
    }
    s
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn announces_only_what_can_be_served() {
    let s = set(&[(1, "10.1.0.1", true, 1), (2, "10.1.0.2", false, 1)]);
    let alive = DataplaneState::Alive;
    let p = plan(&s, &VipSelection::All, &alive, false, &[]);
    assert_eq!(p.announce, [ip("10.0.0.1")].into());
    assert!(p.withheld[&ip("10.0.0.2")].contains("no backend"));
    // weight 0 takes no new flows; an unresolved next hop neither.
    let s0 = set(&[(1, "10.1.0.1", true, 0), (2, "10.1.0.2", true, 1)]);
    let p = plan(&s0, &VipSelection::All, &alive, false, &[ip("10.1.0.2")]);
    assert!(p.announce.is_empty(), "{p:?}");
    // Draining and a dead data plane withdraw everything, saying why.
    let p = plan(&s, &VipSelection::All, &alive, true, &[]);
    assert!(p.announce.is_empty());
    assert!(p.withheld[&ip("10.0.0.1")].contains("drained"));
    let dead = DataplaneState::judge(
        Some(&DataplaneStatus {
            instance_id: 1,
            applied_generation: 1,
            heartbeat_age_ms: 900,
            synced_store_generation: Some(1),
            unresolved_backends: Vec::new(),
        }),
        500,
    );
    let p = plan(&s, &VipSelection::All, &dead, false, &[]);
    assert!(p.announce.is_empty());
    assert!(p.withheld[&ip("10.0.0.1")].contains("900 ms"), "{p:?}");
    assert_eq!(
        DataplaneState::judge(None, 500),
        DataplaneState::Down("data plane not attached".into())
    );
    // A selection limits what is announced and reports listed VIPs without a listener.
    let sel = VipSelection::Only([ip("10.0.0.1"), ip("10.0.0.9")].into());
    let both = set(&[(1, "10.1.0.1", true, 1), (2, "10.1.0.2", true, 1)]);
    let p = plan(&both, &sel, &alive, false, &[]);
    assert_eq!(p.announce, [ip("10.0.0.1")].into());
    assert!(p.withheld[&ip("10.0.0.9")].contains("no listener"));
    assert!(!p.withheld.contains_key(&ip("10.0.0.2")));
}

#[test]
fn config_checks() {
    let parse = |t: &str| -> Result<BgpConfig, String> {
        let c: BgpConfig = toml::from_str(t).map_err(|e| e.to_string())?;
        c.validate().map(|()| c)
    };
    let c = parse("include_path = \"/etc/bird/fiberlb.conf\"").unwrap();
    assert!(c.enabled);
    assert_eq!(c.vips, VipSelection::All);
    assert_eq!(c.liveness_interface, "fiberlb0");
    let c = parse("include_path = \"/x.conf\"\nvips = [\"10.0.0.1\"]").unwrap();
    assert_eq!(c.vips, VipSelection::Only([ip("10.0.0.1")].into()));
    let e = parse("include_path = \"/x.conf\"\nvips = \"some\"").unwrap_err();
    assert!(e.contains("\"all\""), "{e}");
    let e = parse("include_path = \"/x.conf\"\ncommunities = [\"65000-1\"]").unwrap_err();
    assert!(e.contains("communities[0]"), "{e}");
    let e = parse("include_path = \"/x.conf\"\nprotocol = \"fib lb\"").unwrap_err();
    assert!(e.contains("protocol"), "{e}");
    let e = parse("include_path = \"/x.conf\"\nliveness_interface = \"a-very-long-name0\"")
        .unwrap_err();
    assert!(e.contains("liveness_interface"), "{e}");
    let e = parse("include_path = \"/x.conf\"\ndataplane_timeout_ms = 10").unwrap_err();
    assert!(e.contains("dataplane_timeout_ms"), "{e}");
}

#[test]
fn drain_mark_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("fiberlb-drain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = dir.join("store.redb");
    let cfg = BgpConfig {
        include_path: dir.join("fiberlb.conf"),
        ..BgpConfig::for_tests()
    };
    let n = Node::new(Some(cfg.clone()), &store);
    assert_eq!(n.status().drain, DrainState::Serving);
    n.set_drain(true).unwrap();
    let n2 = Node::new(Some(cfg.clone()), &store);
    assert_eq!(n2.status().drain, DrainState::Draining);
    assert!(n2.status().drain_since_unix_ms > 0);
    n2.set_drain(false).unwrap();
    assert_eq!(
        Node::new(Some(cfg), &store).status().drain,
        DrainState::Serving
    );
    let e = Node::new(None, &store).set_drain(true).unwrap_err();
    assert!(e.contains("not enabled"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
