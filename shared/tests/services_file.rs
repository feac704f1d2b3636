//! The shipped example services file: it loads, covers every mode and both address families,
//! and survives a round trip through `to_yaml`.

use std::collections::HashSet;
use std::path::PathBuf;

use fiberlb_shared::model::{AdminState, Algorithm, Encap, Mode, Protocol};
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
    // Ids in order of appearance from 1.
    for (i, l) in set.listeners.iter().enumerate() {
        assert_eq!(l.id.0 as usize, i + 1);
    }
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
