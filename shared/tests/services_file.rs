//! The shipped example services file: it loads, covers every mode and both address families,
//! and survives a round trip through `to_yaml`. And object ids: they follow each object's
//! identity, so edits of a file move no other object's id.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use fiberlb_shared::model::{AdminState, Algorithm, Encap, Mode, Protocol, ServiceSet};
use fiberlb_shared::services::{load_services, parse_services, to_yaml};

fn example_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/services.yaml")
}

#[test]
fn example_loads_and_covers_every_mode_and_family() {
    let set = load_services(&example_path()).unwrap_or_else(|e| panic!("{e}"));

    let modes: HashSet<(Mode, Encap, bool)> = set
        .listeners
        .iter()
        .map(|l| (l.mode, l.encap, l.vip.is_ipv6()))
        .collect();
    for wanted in [
        (Mode::Nat, Encap::Ipip, false),
        (Mode::Nat, Encap::Ipip, true),
        (Mode::Dsr, Encap::Ipip, false),
        (Mode::Tunnel, Encap::Gue, false),
        (Mode::Tunnel, Encap::Ipip, true),
    ] {
        assert!(modes.contains(&wanted), "example lacks {wanted:?}");
    }
    assert!(set.listeners.iter().any(|l| l.protocol == Protocol::Udp));
    assert!(set
        .pools
        .iter()
        .any(|p| p.algorithm == Algorithm::MaglevSourceIp));
    assert!(set.backends.iter().any(|b| b.admin == AdminState::Drained));
    assert!(set.backends.iter().any(|b| b.admin == AdminState::Disabled));
    assert!(set.backends.iter().any(|b| !b.healthy));
    assert!(set.backends.iter().any(|b| b.address.is_ipv6()));
    assert!(set.tunnel.source_v4.is_some() && set.tunnel.source_v6.is_some());
    // A pool with no backends is valid.
    let staging = set.pools.iter().find(|p| p.name == "staging").unwrap();
    assert!(!set.backends.iter().any(|b| b.pool == staging.id));
    // Ids are distinct per kind, never 0 or u32::MAX, and references follow the pool names.
    let ids = ids_by_identity(&set);
    assert_eq!(
        ids.len(),
        set.listeners.len() + set.pools.len() + set.backends.len()
    );
    for kind in ["listener", "pool", "backend"] {
        let of_kind: Vec<u32> = ids
            .iter()
            .filter(|(k, _)| k.starts_with(kind))
            .map(|(_, &id)| id)
            .collect();
        let distinct: HashSet<u32> = of_kind.iter().copied().collect();
        assert_eq!(distinct.len(), of_kind.len(), "{kind} ids collide: {ids:?}");
        assert!(
            of_kind.iter().all(|&id| id != 0 && id != u32::MAX),
            "{ids:?}"
        );
    }
    let pool_of = |listener: &str| {
        let l = set.listeners.iter().find(|l| l.name == listener).unwrap();
        set.pools
            .iter()
            .find(|p| p.id == l.pool)
            .unwrap()
            .name
            .as_str()
    };
    assert_eq!(pool_of("web/443/tcp"), "web-tls");
    assert_eq!(pool_of("api-v6-admin"), "api-v6-nat");
    assert_eq!(set.listeners[0].name, "web/80/tcp");
    assert_eq!(set.listeners[5].name, "api-v6-admin");
}

#[test]
fn example_round_trips_through_to_yaml() {
    let set = load_services(&example_path()).unwrap_or_else(|e| panic!("{e}"));
    let yaml = to_yaml(&set);
    assert_eq!(parse_services(&yaml), Ok(set.clone()), "{yaml}");
    // And the output is stable: writing what was read back gives the same text.
    assert_eq!(to_yaml(&parse_services(&yaml).unwrap()), yaml);
}

/// Every object's id, keyed by what identifies it: "listener VIP:port/protocol -> pool",
/// "pool NAME", "backend POOL ADDRESS:PORT". Listener keys carry their pool's id too, so a
/// listener pointing at a renumbered pool shows up.
fn ids_by_identity(set: &ServiceSet) -> BTreeMap<String, u32> {
    let pool_name = |id| {
        set.pools
            .iter()
            .find(|p| p.id == id)
            .map_or("?", |p| p.name.as_str())
    };
    let mut ids = BTreeMap::new();
    for p in &set.pools {
        ids.insert(format!("pool {}", p.name), p.id.0);
    }
    for l in &set.listeners {
        let key = format!(
            "listener {}:{}/{} -> {}",
            l.vip, l.port, l.protocol, l.pool.0
        );
        ids.insert(key, l.id.0);
    }
    for b in &set.backends {
        let key = format!("backend {} {}:{}", pool_name(b.pool), b.address, b.port);
        ids.insert(key, b.id.0);
    }
    ids
}

fn parse(text: &str) -> ServiceSet {
    parse_services(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

const FILE: &str = "\
tunnel: {source_v4: 10.0.0.254}
loadbalancers:
  - name: web
    vip: 10.0.0.1
    listeners:
      - {port: 80, protocol: tcp, mode: nat, pool: web}
      - {port: 443, protocol: tcp, mode: tunnel, pool: web-tls}
  - name: dns
    vip: 10.0.0.2
    listeners:
      - {port: 53, protocol: udp, mode: dsr, pool: dns}
      - {port: 53, protocol: tcp, mode: dsr, pool: dns}
pools:
  - name: web
    backends:
      - {address: 10.1.0.1, port: 8080}
      - {address: 10.1.0.2, port: 8080}
      - {address: 10.1.0.3, port: 8080}
  - name: web-tls
    backends:
      - {address: 10.1.0.1, port: 443}
      - {address: 10.1.0.2, port: 443}
  - name: dns
    backends:
      - {address: 10.2.0.1, port: 53}
      - {address: 10.2.0.2, port: 53}
";

/// Each section, list and field order of FILE turned around.
const FILE_REORDERED: &str = "\
pools:
  - name: dns
    backends:
      - {port: 53, address: 10.2.0.2}
      - {address: 10.2.0.1, port: 53}
  - backends:
      - {address: 10.1.0.2, port: 443}
      - {address: 10.1.0.1, port: 443}
    name: web-tls
  - name: web
    backends:
      - {address: 10.1.0.3, port: 8080}
      - {address: 10.1.0.1, port: 8080}
      - {address: 10.1.0.2, port: 8080}
loadbalancers:
  - name: dns
    vip: 10.0.0.2
    listeners:
      - {port: 53, protocol: tcp, mode: dsr, pool: dns}
      - {port: 53, protocol: udp, mode: dsr, pool: dns}
  - vip: 10.0.0.1
    name: web
    listeners:
      - {pool: web-tls, port: 443, protocol: tcp, mode: tunnel}
      - {port: 80, protocol: tcp, mode: nat, pool: web}
tunnel: {source_v4: 10.0.0.254}
";

/// Sorted by id, so two sets with the same objects compare equal whatever their file order.
fn by_id(mut set: ServiceSet) -> ServiceSet {
    set.listeners.sort_by_key(|l| l.id);
    set.pools.sort_by_key(|p| p.id);
    set.backends.sort_by_key(|b| b.id);
    set
}

#[test]
fn reordering_the_file_changes_no_id() {
    let (a, b) = (parse(FILE), parse(FILE_REORDERED));
    assert_eq!(ids_by_identity(&a), ids_by_identity(&b));
    assert_eq!(ids_by_identity(&a).len(), 4 + 3 + 7);
    assert_eq!(by_id(a), by_id(b));
}

#[test]
fn removing_a_backend_changes_no_other_id() {
    let before = ids_by_identity(&parse(FILE));
    // The first backend of the first pool: by position, every later backend would renumber.
    let edited = FILE.replacen("      - {address: 10.1.0.1, port: 8080}\n", "", 1);
    let after = ids_by_identity(&parse(&edited));
    let mut expected = before.clone();
    assert!(expected.remove("backend web 10.1.0.1:8080").is_some());
    assert_eq!(after, expected);
    // Putting it back at the end of the pool gives it its old id.
    let moved = edited.replacen(
        "      - {address: 10.1.0.3, port: 8080}\n",
        "      - {address: 10.1.0.3, port: 8080}\n      - {address: 10.1.0.1, port: 8080}\n",
        1,
    );
    assert_ne!(moved, FILE);
    assert_eq!(ids_by_identity(&parse(&moved)), before);
}

#[test]
fn adding_a_pool_and_a_listener_in_front_changes_no_other_id() {
    let before = ids_by_identity(&parse(FILE));
    let edited = FILE
        .replacen(
            "loadbalancers:\n",
            "loadbalancers:\n  - {name: new, vip: 10.0.0.9, listeners: [{port: 80, protocol: tcp, mode: dsr, pool: new}]}\n",
            1,
        )
        .replacen(
            "pools:\n",
            "pools:\n  - {name: new, backends: [{address: 10.9.0.1, port: 80}]}\n",
            1,
        );
    let after = ids_by_identity(&parse(&edited));
    assert_eq!(after.len(), before.len() + 3);
    for (key, id) in &before {
        assert_eq!(after.get(key), Some(id), "{key}");
    }
}

#[test]
fn editing_attributes_and_names_keeps_ids() {
    let before = parse(FILE);
    // Weight, state, mode, encap, listener and load balancer names are not identity.
    let edited = FILE
        .replace(
            "{address: 10.1.0.2, port: 8080}",
            "{address: 10.1.0.2, port: 8080, weight: 5, state: drained}",
        )
        .replace(
            "mode: tunnel, pool: web-tls}",
            "mode: tunnel, encap: gue, pool: web-tls, name: tls}",
        )
        .replace("- name: dns\n    vip", "- name: resolver\n    vip");
    for change in ["weight: 5", "name: tls", "name: resolver"] {
        assert!(edited.contains(change), "{change}");
    }
    let after = parse(&edited);
    assert_eq!(ids_by_identity(&before), ids_by_identity(&after));
}

#[test]
fn renaming_a_pool_renumbers_it_and_its_backends_only() {
    let before = ids_by_identity(&parse(FILE));
    let edited = FILE
        .replace("- name: web-tls\n", "- name: https\n")
        .replace("pool: web-tls}", "pool: https}");
    let after_set = parse(&edited);
    let after = ids_by_identity(&after_set);
    assert_eq!(before.len(), after.len());
    let changed = |m: &BTreeMap<String, u32>, other: &BTreeMap<String, u32>| -> Vec<String> {
        m.iter()
            .filter(|&(k, v)| other.get(k) != Some(v))
            .map(|(k, _)| k.clone())
            .collect()
    };
    let old_pool = before["pool web-tls"];
    let new_pool = after["pool https"];
    assert_ne!(old_pool, new_pool);
    assert_eq!(
        changed(&before, &after),
        [
            "backend web-tls 10.1.0.1:443".to_string(),
            "backend web-tls 10.1.0.2:443".to_string(),
            format!("listener 10.0.0.1:443/tcp -> {old_pool}"),
            "pool web-tls".to_string(),
        ]
    );
    assert_eq!(
        changed(&after, &before),
        [
            "backend https 10.1.0.1:443".to_string(),
            "backend https 10.1.0.2:443".to_string(),
            format!("listener 10.0.0.1:443/tcp -> {new_pool}"),
            "pool https".to_string(),
        ]
    );
    // The listener kept its own id; only its pool reference moved.
    assert_eq!(
        before[&format!("listener 10.0.0.1:443/tcp -> {old_pool}")],
        after[&format!("listener 10.0.0.1:443/tcp -> {new_pool}")]
    );
    // The backends are new objects: none kept an id.
    for a in ["10.1.0.1:443", "10.1.0.2:443"] {
        assert_ne!(
            before[&format!("backend web-tls {a}")],
            after[&format!("backend https {a}")]
        );
    }
}

#[test]
fn edited_files_still_round_trip() {
    for text in [FILE, FILE_REORDERED] {
        let set = parse(text);
        assert_eq!(parse_services(&to_yaml(&set)), Ok(set));
    }
}
