//! Tests of the services file: reading, errors with their places, ids, writing.

use super::write::yaml_string;
use super::*;
use crate::model::TunnelSettings;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Ids of listener 10.0.0.1:80/tcp, pool "web" and its backend 10.1.0.1:8080, computed
/// independently (Python: `xxhash.xxh64_intdigest(key, ID_SEED) % (2**32 - 2) + 1`).
const GOLDEN_L: u32 = 80_741_074;
const GOLDEN_P: u32 = 2_527_494_331;
const GOLDEN_B: u32 = 1_207_596_537;

#[test]
fn health_checks_parse_and_refuse_with_lines() {
    let text = "health_checks:\n  - {name: h, kind: http, path: /hz, expect_status: 200-299, interval_ms: 500}\n\
                    pools:\n  - name: p\n    health_check: h\n    backends: []\n";
    let d = parse_services_without_node_settings(text).unwrap();
    assert_eq!(d.health_checks.len(), 1);
    assert_eq!(d.health_checks[0].expected_status, Some((200, 299)));
    assert_eq!(d.health_checks[0].interval_ms, 500);
    assert_eq!(d.health_checks[0].timeout_ms, 0);
    assert_eq!(d.pool_health_checks.get("p").map(String::as_str), Some("h"));
    // The data plane reads the same file and ignores the section.
    assert_eq!(parse_services(text).unwrap().pools.len(), 1);
    for (bad, line, what) in [
        (
            text.replace("health_check: h", "health_check: x"),
            5,
            "which health_checks does not define",
        ),
        (text.replace("kind: http", "kind: icmp"), 2, "kind"),
        (
            text.replace("path: /hz", "send: x"),
            2,
            "applies only to udp",
        ),
        (text.replace("200-299", "200-999"), 2, "expect_status"),
        (
            text.replace("interval_ms: 500", "interval_ms: 500, timeout_ms: 900"),
            2,
            "longer than",
        ),
        (
            text.replace("kind: http, path: /hz, expect_status: 200-299", "kind: udp"),
            2,
            "needs `send`",
        ),
    ] {
        let e = parse_services_without_node_settings(&bad).unwrap_err();
        assert_eq!(e.line, Some(line), "{e}");
        assert!(e.message.contains(what), "{e}");
    }
}

#[test]
fn tunnel_section_is_optional_for_the_control_plane() {
    let text = "loadbalancers:\n  - name: t\n    vip: 10.0.0.1\n    listeners:\n      \
                    - {port: 80, protocol: tcp, mode: tunnel, pool: p}\npools:\n  - name: p\n    \
                    backends:\n      - {address: 10.1.0.1, port: 80}\n";
    let e = parse_services(text).unwrap_err();
    assert!(e.to_string().contains("source"), "{e}");
    let set = parse_services_without_node_settings(text).unwrap().set;
    assert_eq!(set.tunnel.source_v4, None);
    assert_eq!(set.listeners.len(), 1);
    // Everything else is still checked.
    let bad = text.replace("port: 80, protocol", "port: 0, protocol");
    assert!(parse_services_without_node_settings(&bad).is_err());
}

#[test]
fn syntax_errors_at_the_end_of_a_file_point_into_it() {
    // Found by the services_yaml fuzz target: no final newline put the mark on line 2/3.
    let e = err("a: [");
    assert_eq!((e.line, e.column), (Some(1), Some(5)), "{e}");
    let e = err("a: b\nc");
    assert_eq!(e.line, Some(2), "{e}");
    let e = err("a: b\r\nc");
    assert_eq!(e.line, Some(2), "{e}");
    let e = err("a: b\rc");
    assert_eq!(e.line, Some(2), "{e}");
}

fn err(text: &str) -> ServicesError {
    match parse_services(text) {
        Ok(set) => panic!("accepted {text:?}: {set:?}"),
        Err(e) => e,
    }
}

#[test]
fn empty_files_are_empty_configurations() {
    for text in [
        "",
        "\n\n",
        "# nothing yet\n",
        "---\n",
        "loadbalancers: []\npools: []\n",
        "loadbalancers:\npools:\ntunnel:\n",
        "~\n",
    ] {
        let set = parse_services(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(set, ServiceSet::default(), "{text:?}");
    }
}

#[test]
fn defaults_and_ids_from_identity() {
    let text = "\
loadbalancers:
  - name: b
    vip: 10.0.0.2
    listeners:
      - {port: 80, protocol: tcp, mode: tunnel, pool: second}
  - name: a
    vip: \"fd00::1\"
    listeners:
      - {port: 53, protocol: udp, mode: dsr, pool: first}
      - {port: 54, protocol: udp, mode: dsr, pool: first, name: custom}
pools:
  - name: first
    backends:
      - {address: \"fd00::10\", port: 53}
  - name: second
    algorithm: maglev-source-ip
    table_size: 251
    backends:
      - {address: 10.1.0.1, port: 80, weight: 0, mac: 02-AB-00-00-00-01, state: drained}
      - {address: 10.1.0.2, port: 80, state: disabled, healthy: false}
tunnel:
  source_v4: 10.0.0.254
";
    let set = parse_services(text).unwrap_or_else(|e| panic!("{e}"));
    let pool_id = |name: &str| home_id(hash_identity(&pool_identity(name)));
    let (first, second) = (pool_id("first"), pool_id("second"));
    let ids: Vec<(u32, &str, u32)> = set
        .listeners
        .iter()
        .map(|l| (l.id.0, l.name.as_str(), l.pool.0))
        .collect();
    let listener_id = |l: &Listener| home_id(hash_identity(&listener_identity(l)));
    assert_eq!(
        ids,
        [
            (listener_id(&set.listeners[0]), "b/80/tcp", second),
            (listener_id(&set.listeners[1]), "a/53/udp", first),
            (listener_id(&set.listeners[2]), "custom", first)
        ]
    );
    assert_eq!(set.listeners[0].encap, Encap::Ipip);
    assert_eq!(set.listeners[1].vip, "fd00::1".parse::<IpAddr>().unwrap());
    assert_eq!(
        (set.pools[0].id, set.pools[1].id),
        (PoolId(first), PoolId(second))
    );
    assert_eq!(set.pools[0].algorithm, Algorithm::Maglev);
    assert_eq!(set.pools[0].table_size, DEFAULT_TABLE_SIZE);
    assert_eq!(set.pools[1].algorithm, Algorithm::MaglevSourceIp);
    assert_eq!(set.pools[1].table_size, 251);
    let backend_id = |pool: &str, a: &str, port| {
        home_id(hash_identity(&backend_identity(
            pool,
            a.parse().unwrap(),
            port,
        )))
    };
    let b: Vec<_> = set
        .backends
        .iter()
        .map(|b| (b.id.0, b.pool.0, b.weight, b.mac, b.admin, b.healthy))
        .collect();
    assert_eq!(
        b,
        [
            (
                backend_id("first", "fd00::10", 53),
                first,
                1,
                None,
                AdminState::Enabled,
                true
            ),
            (
                backend_id("second", "10.1.0.1", 80),
                second,
                0,
                Some([0x02, 0xab, 0, 0, 0, 1]),
                AdminState::Drained,
                true
            ),
            (
                backend_id("second", "10.1.0.2", 80),
                second,
                1,
                None,
                AdminState::Disabled,
                false
            ),
        ]
    );
    assert_eq!(set.tunnel.source_v4, Some(Ipv4Addr::new(10, 0, 0, 254)));
    assert_eq!(set.tunnel.source_v6, None);
    assert_eq!(set.tunnel.gue_port, DEFAULT_GUE_PORT);
}

/// The ids of a file are part of its meaning across releases (flows and counters follow
/// them through an upgrade), so the hash, seed and identity encodings are pinned here.
#[test]
fn ids_are_pinned() {
    let set = parse_services(
            "loadbalancers:\n  - {name: web, vip: 10.0.0.1, listeners: [{port: 80, protocol: tcp, mode: nat, pool: web}]}\npools:\n  - {name: web, backends: [{address: 10.1.0.1, port: 8080}]}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (set.listeners[0].id, set.pools[0].id, set.backends[0].id),
        (ListenerId(GOLDEN_L), PoolId(GOLDEN_P), BackendId(GOLDEN_B))
    );
}

#[test]
fn home_ids_avoid_zero_and_u32_max() {
    assert_eq!(home_id(0), 1);
    assert_eq!(home_id(u64::from(MAX_ID) - 1), MAX_ID);
    assert_eq!(home_id(u64::from(MAX_ID)), 1);
    assert_eq!(home_id(u64::from(u32::MAX)), 2);
    for h in [u64::MAX, u64::MAX - 1, 1 << 63, 0xffff_fffe_ffff_ffff] {
        let id = home_id(h);
        assert!((1..=MAX_ID).contains(&id), "{h:#x} -> {id}");
    }
}

/// Identities that differ only in where a field boundary falls must not meet.
#[test]
fn identities_are_unambiguous() {
    let a = |s: &str| s.parse::<IpAddr>().unwrap();
    let keys = [
        backend_identity("p", a("10.0.0.1"), 80),
        backend_identity("", a("10.0.0.1"), 80),
        backend_identity("p", a("::a00:1"), 80),
        backend_identity("p", a("10.0.0.1"), 8080),
        pool_identity("p"),
        listener_identity(&listener(1, "x", "10.0.0.1", 80, 1)),
    ];
    let distinct: HashSet<&Vec<u8>> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len());
}

#[test]
fn collisions_resolve_by_identity_not_by_position() {
    // A hash that sends every key to id 5, except "z" to 6 and "m" to MAX_ID (wraps).
    let hash = |k: &[u8]| match k {
        b"z" => 5,
        b"m" | b"n" => u64::from(MAX_ID) - 1,
        _ => 4,
    };
    let keys: Vec<Vec<u8>> = ["c", "z", "a", "b", "n", "m"]
        .iter()
        .map(|k| k.as_bytes().to_vec())
        .collect();
    let ids = assign_ids_with(&keys, hash);
    let by_key: HashMap<&[u8], u32> = keys.iter().map(Vec::as_slice).zip(ids).collect();
    // "z" is alone on 6: it keeps it although "b" and "c", probing from 5, pass it by.
    // "a" sorts first among the three on 5; "b" and "c" take the next free ids in turn.
    // "m" sorts before "n" on MAX_ID; "n" wraps to 1.
    let want: HashMap<&[u8], u32> = [
        (&b"a"[..], 5),
        (b"b", 7),
        (b"c", 8),
        (b"z", 6),
        (b"m", MAX_ID),
        (b"n", 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(by_key, want);
    // Every order of the same keys gives the same ids.
    let mut rotated = keys.clone();
    for _ in 0..keys.len() {
        rotated.rotate_left(1);
        let ids = assign_ids_with(&rotated, hash);
        for (k, id) in rotated.iter().zip(ids) {
            assert_eq!(want.get(k.as_slice()), Some(&id), "{rotated:?}");
        }
        let mut reversed = rotated.clone();
        reversed.reverse();
        let ids = assign_ids_with(&reversed, hash);
        for (k, id) in reversed.iter().zip(ids) {
            assert_eq!(want.get(k.as_slice()), Some(&id), "{reversed:?}");
        }
    }
}

#[test]
fn a_file_where_every_id_collides_still_gets_distinct_ids_in_any_order() {
    let text = "\
loadbalancers:
  - {name: a, vip: 10.0.0.1, listeners: [{port: 80, protocol: tcp, mode: dsr, pool: p}, {port: 81, protocol: tcp, mode: dsr, pool: q}]}
pools:
  - {name: p, backends: [{address: 10.1.0.1, port: 80}, {address: 10.1.0.2, port: 80}]}
  - {name: q, backends: [{address: 10.1.0.1, port: 80}]}
";
    let reordered = "\
pools:
  - {name: q, backends: [{address: 10.1.0.1, port: 80}]}
  - {name: p, backends: [{address: 10.1.0.2, port: 80}, {address: 10.1.0.1, port: 80}]}
loadbalancers:
  - {name: a, vip: 10.0.0.1, listeners: [{port: 81, protocol: tcp, mode: dsr, pool: q}, {port: 80, protocol: tcp, mode: dsr, pool: p}]}
";
    let collide = |_: &[u8]| 41;
    let mut ids = Vec::new();
    for text in [text, reordered] {
        let mut set = parse_services(text).unwrap_or_else(|e| panic!("{e}"));
        assign_ids_hashed(&mut set, collide);
        set.validate().unwrap_or_else(|e| panic!("{e}"));
        let mut by_identity: Vec<(String, u32)> = set
            .pools
            .iter()
            .map(|p| (format!("pool {}", p.name), p.id.0))
            .chain(
                set.listeners
                    .iter()
                    .map(|l| (format!("listener {}", l.port), l.id.0)),
            )
            .chain(set.backends.iter().map(|b| {
                let pool = set.pools.iter().find(|p| p.id == b.pool).unwrap();
                (format!("backend {} {}", pool.name, b.address), b.id.0)
            }))
            .collect();
        by_identity.sort();
        ids.push(by_identity);
    }
    assert_eq!(ids[0], ids[1]);
    let want = [
        ("backend p 10.1.0.1", 42),
        ("backend p 10.1.0.2", 44),
        ("backend q 10.1.0.1", 43),
        ("listener 80", 42),
        ("listener 81", 43),
        ("pool p", 42),
        ("pool q", 43),
    ]
    .map(|(k, id)| (k.to_string(), id));
    assert_eq!(ids[0], want);
}

#[test]
fn nulls_take_defaults_and_aliases_work() {
    let text = "\
pools:
  - name: p
    algorithm:
    table_size: ~
    backends:
      - &b {address: 10.1.0.1, port: 80, weight: 7}
  - name: q
    backends: [*b]
";
    let set = parse_services(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.pools[0].table_size, DEFAULT_TABLE_SIZE);
    assert_eq!(set.backends.len(), 2);
    assert_eq!(set.backends[1].weight, 7);
    assert_eq!(set.backends[1].pool, set.pools[1].id);
    assert_ne!(set.backends[0].id, set.backends[1].id);
    // An error in an aliased node is reported where the alias is used.
    let e = err("pools:\n  - name: p\n    backends:\n      - &b {address: 10.1.0.1, port: 80}\n      - *b\n");
    assert_eq!(e.line, Some(5), "{e}");
    assert!(e.message.contains("appears twice"), "{e}");
}

#[test]
fn quoted_strings_and_plain_macs_and_v6_are_read_as_text() {
    let text = "\
pools:
  - name: \"web pool: main\"
    backends:
      - {address: fd00::2, port: 80, mac: 02:00:00:00:01:01}
      - {address: '10.0.0.2', port: 80, mac: !!str 02:00:00:00:01:02}
";
    let set = parse_services(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.pools[0].name, "web pool: main");
    assert_eq!(
        set.backends[0].address,
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2))
    );
    assert_eq!(set.backends[0].mac, Some([2, 0, 0, 0, 1, 1]));
    assert_eq!(set.backends[1].mac, Some([2, 0, 0, 0, 1, 2]));
}

#[test]
fn mac_parsing() {
    assert_eq!(parse_mac("02:00:00:00:01:ff"), Some([2, 0, 0, 0, 1, 0xff]));
    assert_eq!(parse_mac("02-00-00-00-01-FF"), Some([2, 0, 0, 0, 1, 0xff]));
    for bad in [
        "",
        "02:00:00:00:01",
        "02:00:00:00:01:01:01",
        "2:00:00:00:01:01",
        "02:00:00:00:01:0g",
        "02:00-00:00:01:01",
        "+2:00:00:00:01:01",
    ] {
        assert_eq!(parse_mac(bad), None, "{bad}");
    }
}

#[test]
fn hostile_nesting_is_refused_not_overflowed() {
    // The parser's own recursion limit or ours, whichever comes first: an error either way.
    for deep in [
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        "a: ".repeat(10_000),
        "- ".repeat(10_000),
    ] {
        let e = err(&deep);
        assert_eq!(e.line, Some(1), "{e}");
    }
    let e = err(&format!("pools: {}{}", "[".repeat(40), "]".repeat(40)));
    assert!(e.message.contains("nesting deeper than 32 levels"), "{e}");
}

#[test]
fn display_with_and_without_path() {
    let mut e = err("pools:\n  - {name: a, table_size: x}\n");
    assert_eq!(
        e.to_string(),
        "line 2, column 27: table_size must be an integer, got `x`"
    );
    e.path = Some(PathBuf::from("conf/services.yaml"));
    assert_eq!(
        e.to_string(),
        "conf/services.yaml:2:27: table_size must be an integer, got `x`"
    );
    e.line = None;
    e.column = None;
    assert_eq!(
        e.to_string(),
        "conf/services.yaml: table_size must be an integer, got `x`"
    );
}

#[test]
fn load_services_names_the_path() {
    let dir = std::env::temp_dir().join(format!("fiberlb-services-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.yaml");
    let e = load_services(&missing).unwrap_err();
    assert_eq!(e.path.as_deref(), Some(missing.as_path()));
    assert!(e.message.contains("cannot read"), "{e}");

    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "pools:\n  - name: a\n    wat: 1\n").unwrap();
    let e = load_services(&bad).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{}:3:5: unknown field `wat`", bad.display())),
        "{e}"
    );

    let latin1 = dir.join("latin1.yaml");
    std::fs::write(&latin1, b"pools:\n  - name: caf\xe9\n").unwrap();
    let e = load_services(&latin1).unwrap_err();
    assert_eq!((e.line, e.column), (Some(2), Some(14)), "{e}");
    assert!(e.message.contains("UTF-8"), "{e}");

    let good = dir.join("good.yaml");
    std::fs::write(&good, "pools:\n  - name: a\n").unwrap();
    assert_eq!(load_services(&good).unwrap().pools.len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn yaml_strings_read_back() {
    for s in [
        "web",
        "true",
        "No",
        "123",
        "a b",
        "x: y",
        "\"quoted\"",
        "back\\slash",
        "#hash",
        "-dash",
        "ünï",
        "null",
        "~",
    ] {
        let text = format!("pools:\n  - name: {}\n", yaml_string(s));
        let set = parse_services(&text).unwrap_or_else(|e| panic!("{s:?} -> {text}: {e}"));
        assert_eq!(set.pools[0].name, s);
    }
    assert_eq!(yaml_string("web-tls"), "web-tls");
    assert_eq!(yaml_string("true"), "\"true\"");
}

#[test]
fn to_yaml_of_an_empty_set_reads_back() {
    let set = ServiceSet::default();
    assert_eq!(to_yaml(&set), "loadbalancers: []\n\npools: []\n");
    assert_eq!(parse_services(&to_yaml(&set)), Ok(set));
}

fn listener(id: u32, name: &str, vip: &str, port: u16, pool: u32) -> Listener {
    Listener {
        id: ListenerId(id),
        name: name.to_string(),
        vip: vip.parse().unwrap(),
        port,
        protocol: Protocol::Tcp,
        mode: Mode::Dsr,
        encap: Encap::Ipip,
        pool: PoolId(pool),
    }
}

#[test]
fn to_yaml_keeps_names_that_do_not_follow_the_default() {
    // As the control plane may hold them: custom names, and one load balancer name on two
    // VIPs.
    let mut set = ServiceSet {
        listeners: vec![
            listener(1, "web/80/tcp", "10.0.0.1", 80, 1),
            listener(2, "web/443/tcp", "10.0.0.1", 443, 1),
            listener(3, "web/8080/tcp", "10.0.0.2", 8080, 1),
            listener(4, "ssh for \"ops\"", "10.0.0.2", 22, 1),
            listener(5, "a/b", "10.0.0.3", 1, 1),
        ],
        pools: vec![Pool {
            id: PoolId(1),
            name: "p".into(),
            algorithm: Algorithm::Maglev,
            table_size: 251,
        }],
        backends: vec![],
        tunnel: TunnelSettings::default(),
    };
    // The ids reading gives back; what is under test is the names.
    assign_ids(&mut set);
    set.validate().unwrap();
    let yaml = to_yaml(&set);
    let back = parse_services(&yaml).unwrap_or_else(|e| panic!("{yaml}\n{e}"));
    assert_eq!(back, set, "{yaml}");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn arb_set() -> impl Strategy<Value = ServiceSet> {
        let backend = (
            any::<u16>(),
            1u16..,
            0..=MAX_WEIGHT,
            proptest::option::of(any::<Mac>()),
            prop_oneof![
                Just(AdminState::Enabled),
                Just(AdminState::Drained),
                Just(AdminState::Disabled)
            ],
            any::<bool>(),
        );
        let pool = (
            "[a-z][a-z0-9 ._:-]{0,8}",
            any::<bool>(),
            any::<bool>(),
            prop_oneof![Just(251u32), Just(65537)],
            proptest::collection::vec(backend, 0..4),
        );
        let listener = (
            "[a-z][a-z0-9_-]{0,6}",
            any::<u8>(),
            1u16..,
            any::<bool>(),
            0u8..4,
            any::<bool>(),
            any::<usize>(),
        );
        (
            proptest::collection::vec(pool, 1..4),
            proptest::collection::vec(listener, 0..6),
        )
            .prop_map(|(pools, listeners)| {
                let mut set = ServiceSet {
                    tunnel: TunnelSettings {
                        source_v4: Some(Ipv4Addr::new(10, 255, 0, 1)),
                        source_v6: Some(Ipv6Addr::new(0xfd00, 0xff, 0, 0, 0, 0, 0, 1)),
                        gue_port: 6080,
                    },
                    ..ServiceSet::default()
                };
                let mut v6_pools = Vec::new();
                for (i, (name, v6, source_ip, table_size, backends)) in
                    pools.into_iter().enumerate()
                {
                    let pool = PoolId(next_id(i));
                    set.pools.push(Pool {
                        id: pool,
                        name: format!("{name}{i}"),
                        algorithm: if source_ip {
                            Algorithm::MaglevSourceIp
                        } else {
                            Algorithm::Maglev
                        },
                        table_size,
                    });
                    v6_pools.push(v6);
                    for (host, port, weight, mac, admin, healthy) in backends {
                        // One family per pool, so dsr and nat listeners can be valid.
                        let host = host.max(1);
                        let address = if v6 {
                            IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, host])
                        } else {
                            IpAddr::from([10, 1, (host >> 8) as u8, host as u8])
                        };
                        set.backends.push(Backend {
                            id: BackendId(next_id(set.backends.len())),
                            pool,
                            address,
                            port,
                            weight,
                            mac,
                            admin,
                            healthy,
                        });
                    }
                }
                // Listeners grouped per load balancer, as the file orders them.
                let mut sorted = listeners;
                sorted.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
                for (lb, vip, port, udp, mode, gue, pool) in sorted {
                    let protocol = if udp { Protocol::Udp } else { Protocol::Tcp };
                    let mode = match mode {
                        0 => Mode::Dsr,
                        1 => Mode::Nat,
                        _ => Mode::Tunnel,
                    };
                    set.listeners.push(Listener {
                        id: ListenerId(next_id(set.listeners.len())),
                        name: format!("{lb}-{vip}/{port}/{protocol}"),
                        vip: if v6_pools[pool % v6_pools.len()] {
                            IpAddr::from([0xfd00, 1, 0, 0, 0, 0, 0, u16::from(vip)])
                        } else {
                            IpAddr::from([10, 0, 0, vip.max(1)])
                        },
                        port,
                        protocol,
                        mode,
                        encap: if mode == Mode::Tunnel && gue {
                            Encap::Gue
                        } else {
                            Encap::Ipip
                        },
                        pool: PoolId(next_id(pool % set.pools.len())),
                    });
                }
                // Ids as the file rules give them, which is what reading the file back yields.
                assign_ids(&mut set);
                set
            })
    }

    /// A valid `health_checks:` entry, with awkward strings where the kind has any.
    fn arb_health_check() -> impl Strategy<Value = HealthCheckSpec> {
        let text = prop_oneof![
            "[ -~]{1,12}",
            Just("line\nbreak\ttab \"q\" \\ é 😀".to_string()),
            Just("\u{1}\u{7f}".to_string()),
            Just("- yes".to_string()),
        ];
        let interval = prop_oneof![Just(0u32), 1u32..=3_600_000];
        (
            "[a-z][a-z0-9._-]{0,6}",
            0u8..4,
            (interval, any::<u32>(), 0u32..=100, 0u32..=100),
            proptest::option::of("/[a-z0-9/._~%-]{0,10}"),
            proptest::option::of((100u32..=599, any::<u32>())),
            text.clone(),
            proptest::option::of(text),
        )
            .prop_map(
                |(name, kind, (interval_ms, t, rise, fall), path, status, send, expect)| {
                    let kind = ["tcp", "http", "https", "udp"][usize::from(kind)];
                    let web = kind.starts_with("http");
                    let udp = kind == "udp";
                    // timeout <= interval when both are set; 0 is "left out".
                    let cap = if interval_ms == 0 {
                        3_600_000
                    } else {
                        interval_ms
                    };
                    let timeout_ms = t % (cap + 1);
                    HealthCheckSpec {
                        name,
                        kind: kind.to_string(),
                        interval_ms,
                        timeout_ms,
                        rise,
                        fall,
                        http_path: if web {
                            path.unwrap_or_default()
                        } else {
                            String::new()
                        },
                        expected_status: status
                            .filter(|_| web)
                            .map(|(lo, hi)| (lo, lo + hi % (600 - lo))),
                        udp_send: if udp { send } else { String::new() },
                        udp_expect: if udp {
                            expect.unwrap_or_default()
                        } else {
                            String::new()
                        },
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn to_yaml_round_trips(set in arb_set()) {
            // Mostly nat listeners sharing a pool, which is ambiguous; the rest round-trip.
            prop_assume!(set.validate().is_ok());
            let yaml = to_yaml(&set);
            let back = parse_services(&yaml);
            prop_assert_eq!(back, Ok(set), "{}", yaml);
        }

        #[test]
        fn to_yaml_document_round_trips(
            set in arb_set(),
            checks in proptest::collection::vec(arb_health_check(), 0..4),
            uses in proptest::collection::vec(proptest::option::of(any::<usize>()), 0..4),
            empty_lbs in 0u8..3,
        ) {
            prop_assume!(set.validate().is_ok());
            // The document reading the bare set's file gives: its load balancers as written.
            let mut doc = parse_services_without_node_settings(&to_yaml(&set)).unwrap();
            // Load balancers without listeners, first and last.
            for i in 0..empty_lbs {
                let lb = (format!("empty-{i}"), IpAddr::from([10, 200, 0, i + 1]));
                if i % 2 == 0 {
                    doc.load_balancers.insert(0, lb);
                } else {
                    doc.load_balancers.push(lb);
                }
            }
            for (i, mut hc) in checks.into_iter().enumerate() {
                hc.name = format!("{}{i}", hc.name);
                doc.health_checks.push(hc);
            }
            for (pool, used) in doc.set.pools.iter().zip(uses) {
                if let (Some(n), false) = (used, doc.health_checks.is_empty()) {
                    let hc = &doc.health_checks[n % doc.health_checks.len()];
                    doc.pool_health_checks.insert(pool.name.clone(), hc.name.clone());
                }
            }
            let yaml = to_yaml_document(&doc);
            let back = parse_services_without_node_settings(&yaml);
            prop_assert_eq!(back.as_ref(), Ok(&doc), "{}", yaml);
            prop_assert_eq!(to_yaml_document(&back.unwrap()), yaml);
        }

        #[test]
        fn any_text_is_parsed_or_rejected_with_a_line(text in "(?s).{0,200}") {
            if let Err(e) = parse_services(&text) {
                prop_assert!(e.line.is_some(), "{}", e);
            }
        }

        #[test]
        fn mangled_files_are_parsed_or_rejected_with_a_line(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)
        ) {
            let mut text = String::from(EXAMPLE).into_bytes();
            const BYTES: &[u8] = b" -:{}[],#&*!|>'\"%@`abc019\n\t";
            for (at, byte) in edits {
                let at = at % text.len();
                text[at] = BYTES[usize::from(byte) % BYTES.len()];
            }
            let text = String::from_utf8_lossy(&text);
            if let Err(e) = parse_services(&text) {
                prop_assert!(e.line.is_some(), "{}", e);
            }
        }
    }

    const EXAMPLE: &str = "\
tunnel: {source_v4: 10.0.0.1, source_v6: \"fd00::1\", gue_port: 6080}
loadbalancers:
  - name: web
    vip: 10.10.0.100
    listeners:
      - {port: 80, protocol: tcp, mode: nat, pool: web}
      - {port: 443, protocol: tcp, mode: tunnel, encap: gue, pool: web}
pools:
  - name: web
    algorithm: maglev
    table_size: 65537
    backends:
      - {address: 10.10.1.1, port: 8080, weight: 1, mac: \"02:00:00:00:01:01\"}
      - {address: 10.10.1.2, port: 8080, weight: 2, state: drained}
";
}
