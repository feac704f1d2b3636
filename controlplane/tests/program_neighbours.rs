//! Backend MACs from the kernel neighbour table, in a network namespace the test makes (the
//! test re-runs itself under `unshare -n`; it needs root and is skipped otherwise).

use std::collections::HashMap;
use std::net::IpAddr;
use std::process::Command;

use fiberlb_controlplane::program::{fill_macs, NeighbourResolver, ProgramError};
use fiberlb_shared::model::{AdminState, Backend, BackendId, PoolId, ServiceSet};

const IN_NETNS: &str = "FIBERLB_TEST_IN_NETNS";

fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert!(st.success(), "{cmd}");
}

/// Re-runs test `name` in a new network namespace; false when that is not possible here.
fn rerun_in_netns(name: &str) -> bool {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .arg("-n")
        .arg(&exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(IN_NETNS, "1")
        .output();
    let Ok(out) = out else {
        eprintln!("skipped: no unshare");
        return false;
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() && text.contains("unshare failed") {
        eprintln!("skipped: cannot create a network namespace (not root?)");
        return false;
    }
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
    true
}

#[tokio::test]
async fn neighbour_table_resolves_backend_macs() {
    if std::env::var_os(IN_NETNS).is_none() {
        rerun_in_netns("neighbour_table_resolves_backend_macs");
        return;
    }
    sh(
        "ip link add fl0 type veth peer name fl1 && ip link set fl0 up \
        && ip link set fl1 up \
        && ip neigh add 192.0.2.10 lladdr 02:00:00:00:00:0a dev fl0 nud permanent \
        && ip neigh add 2001:db8::10 lladdr 02:00:00:00:00:6a dev fl0 nud permanent \
        && ip neigh add 192.0.2.20 lladdr 02:00:00:00:00:14 dev fl1 nud permanent",
    );
    let any = NeighbourResolver::default().table().await.unwrap();
    let v4: IpAddr = "192.0.2.10".parse().unwrap();
    let v6: IpAddr = "2001:db8::10".parse().unwrap();
    let other: IpAddr = "192.0.2.20".parse().unwrap();
    assert_eq!(any.get(&v4), Some(&[2, 0, 0, 0, 0, 0x0a]));
    assert_eq!(any.get(&v6), Some(&[2, 0, 0, 0, 0, 0x6a]));
    assert_eq!(any.get(&other), Some(&[2, 0, 0, 0, 0, 0x14]));

    let fl0 = NeighbourResolver {
        interface: Some("fl0".into()),
    };
    let only = fl0.table().await.unwrap();
    assert!(only.contains_key(&v4) && only.contains_key(&v6));
    assert!(!only.contains_key(&other), "fl1's entry filtered out");

    let missing = NeighbourResolver {
        interface: Some("nope0".into()),
    };
    let err = missing.table().await.unwrap_err();
    assert!(matches!(err, ProgramError::Neighbours(_)));
    assert!(err.to_string().contains("nope0"), "{err}");

    // Filling: a given MAC is kept, a resolvable one filled, an unknown one left None.
    let backend = |id: u32, address: IpAddr, mac| Backend {
        id: BackendId(id),
        pool: PoolId(1),
        address,
        port: 80,
        weight: 1,
        mac,
        admin: AdminState::Enabled,
        healthy: true,
    };
    let unknown: IpAddr = "192.0.2.99".parse().unwrap();
    let mut set = ServiceSet {
        backends: vec![
            backend(1, v4, None),
            backend(2, other, Some([2, 9, 9, 9, 9, 9])),
            backend(3, unknown, None),
        ],
        ..ServiceSet::default()
    };
    let unresolved = fill_macs(&mut set, &only);
    assert_eq!(unresolved, vec![unknown]);
    assert_eq!(set.backends[0].mac, Some([2, 0, 0, 0, 0, 0x0a]));
    assert_eq!(set.backends[1].mac, Some([2, 9, 9, 9, 9, 9]));
    assert_eq!(set.backends[2].mac, None);
}

#[test]
fn fill_macs_without_table_leaves_none() {
    let mut set = ServiceSet::default();
    set.backends.push(Backend {
        id: BackendId(1),
        pool: PoolId(1),
        address: "10.0.0.1".parse().unwrap(),
        port: 80,
        weight: 1,
        mac: None,
        admin: AdminState::Enabled,
        healthy: true,
    });
    assert_eq!(fill_macs(&mut set, &HashMap::new()).len(), 1);
    assert_eq!(set.backends[0].mac, None);
}
