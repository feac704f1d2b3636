use super::*;

fn scope() -> Scope {
    Scope::new("acme", "web")
}

fn sample() -> State {
    let mut s = State::default();
    s.load_balancers.insert(
        1,
        LoadBalancer {
            id: 1,
            scope: scope(),
            name: "front".into(),
            vip: "10.0.0.1".parse().unwrap(),
            vip_allocated: true,
            description: String::new(),
        },
    );
    s.pools.insert(
        2,
        Pool {
            id: 2,
            scope: scope(),
            name: "web".into(),
            algorithm: Algorithm::Maglev,
            table_size: 251,
            health_check_id: None,
        },
    );
    for (id, last) in [(3u32, 10u8), (4, 11)] {
        s.backends.insert(
            id,
            Backend {
                id,
                scope: scope(),
                pool_id: 2,
                address: IpAddr::from([10, 1, 0, last]),
                port: 8080,
                weight: 1,
                mac: None,
                admin_state: AdminState::Enabled,
                lease: None,
            },
        );
    }
    s.listeners.insert(
        5,
        Listener {
            id: 5,
            scope: scope(),
            load_balancer_id: 1,
            port: 80,
            protocol: Protocol::Tcp,
            mode: Mode::Nat,
            encap: Encap::Ipip,
            pool_id: 2,
        },
    );
    s
}

#[test]
fn field_errors_name_the_field() {
    let cases: Vec<(Error, &str)> = vec![
        (parse_address("address", "10.0.0").unwrap_err(), "address"),
        (parse_address("vip", "224.0.0.1").unwrap_err(), "vip"),
        (parse_port("port", 0).unwrap_err(), "port"),
        (parse_port("port", 70000).unwrap_err(), "port"),
        (parse_protocol("protocol", "sctp").unwrap_err(), "protocol"),
        (parse_mode("mode", "bridge").unwrap_err(), "mode"),
        (
            parse_table_size("table_size", 65536).unwrap_err(),
            "table_size",
        ),
        (parse_weight("weight", 10_001).unwrap_err(), "weight"),
        (parse_mac("mac", "02:00:00:00:01").unwrap_err(), "mac"),
        (
            parse_admin_state("admin_state", "off").unwrap_err(),
            "admin_state",
        ),
    ];
    for (err, field) in cases {
        match &err {
            Error::InvalidArgument { field: f, .. } => assert_eq!(f, field, "{err}"),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().starts_with(&format!("{field}: ")), "{err}");
    }
    assert_eq!(parse_table_size("t", 0).unwrap(), DEFAULT_TABLE_SIZE);
    assert_eq!(parse_weight("w", 10_000).unwrap(), 10_000);
    assert_eq!(
        parse_mac("mac", "02:00:00:00:01:0a").unwrap(),
        Some([2, 0, 0, 0, 1, 10])
    );
    assert_eq!(format_mac(&[2, 0, 0, 0, 1, 10]), "02:00:00:00:01:0a");
}

#[test]
fn compile_flattens_with_stable_ids_and_names() {
    let s = sample();
    let mut health = HashMap::new();
    health.insert(BackendId(4), false);
    let set = compile(&s, &health);
    assert_eq!(set.listeners.len(), 1);
    assert_eq!(set.listeners[0].id, ListenerId(5));
    assert_eq!(set.listeners[0].name, "acme/web/front/80/tcp");
    assert_eq!(set.listeners[0].vip, "10.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(set.pools[0].name, "acme/web/web");
    assert_eq!(set.pools[0].table_size, 251);
    let healthy: Vec<_> = set.backends.iter().map(|b| (b.id.0, b.healthy)).collect();
    assert_eq!(healthy, vec![(3, true), (4, false)]);
    set.validate().unwrap();
}

#[test]
fn check_finds_conflicts() {
    let s = sample();
    s.check().unwrap();

    let mut dup = s.clone();
    let mut l = dup.listeners[&5].clone();
    l.id = 6;
    dup.listeners.insert(6, l);
    assert!(matches!(dup.check(), Err(Error::AlreadyExists(m)) if m.starts_with("port:")));

    let mut cross = s.clone();
    cross.backends.get_mut(&3).unwrap().scope = Scope::new("other", "x");
    assert!(matches!(
        cross.check(),
        Err(Error::NotFound { kind: "pool", .. })
    ));

    let mut vip = s.clone();
    let mut lb = vip.load_balancers[&1].clone();
    lb.id = 9;
    lb.name = "second".into();
    vip.load_balancers.insert(9, lb);
    assert!(matches!(vip.check(), Err(Error::AlreadyExists(m)) if m.starts_with("vip:")));
}

#[test]
fn health_check_validation() {
    let mut h = HealthCheck {
        id: 1,
        scope: scope(),
        name: "hc".into(),
        kind: HealthCheckKind::Http,
        interval_ms: 1000,
        timeout_ms: 500,
        rise: 2,
        fall: 3,
        http_path: "/healthz".into(),
        expected_status: (200, 299),
        udp_payload: vec![],
        udp_expected_reply: vec![],
    };
    h.validate().unwrap();
    h.timeout_ms = 2000;
    assert!(
        matches!(h.validate(), Err(Error::InvalidArgument { field, .. }) if field == "timeout_ms")
    );
    h.timeout_ms = 500;
    h.http_path = "healthz".into();
    assert!(
        matches!(h.validate(), Err(Error::InvalidArgument { field, .. }) if field == "http_path")
    );
    h.kind = HealthCheckKind::Udp;
    assert!(
        matches!(h.validate(), Err(Error::InvalidArgument { field, .. }) if field == "udp_payload")
    );
}
