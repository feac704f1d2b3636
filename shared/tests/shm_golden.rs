//! Golden fixtures of the shared-memory messages: one frame of every message kind, encoded, must
//! equal the bytes committed in `tests/fixtures/shm/<kind>.hex` (the wire format is a contract
//! between two processes that may be built from different commits), and decode back to the same
//! frame. A change of the encoding shows up here as a fixture diff; one that is meant (with a
//! `FORMAT_VERSION` bump) is written with `FIBERLB_BLESS=1 cargo test -p fiberlb-shared --test
//! shm_golden`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use fiberlb_shared::model::{
    AdminState, Algorithm, Backend, BackendId, Encap, Listener, ListenerId, Mode, Pool, PoolId,
    Protocol, TunnelSettings,
};
use fiberlb_shared::shm::message::{decode, encode, Frame, Message, RejectCode, SLOT_SIZE};

/// One frame per message kind, with every field set to something recognisable.
fn frames() -> Vec<(&'static str, Frame)> {
    let f = |seq: u64, message| Frame {
        seq,
        generation: 0x0102_0304_0506_0708,
        message,
    };
    vec![
        ("begin", f(1, Message::Begin)),
        ("reset", f(2, Message::Reset)),
        (
            "upsert_listener_v4",
            f(
                3,
                Message::UpsertListener(Listener {
                    id: ListenerId(7),
                    name: "web/80/tcp".into(),
                    vip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 10)),
                    port: 80,
                    protocol: Protocol::Tcp,
                    mode: Mode::Nat,
                    encap: Encap::Ipip,
                    pool: PoolId(3),
                }),
            ),
        ),
        (
            "upsert_listener_v6",
            f(
                4,
                Message::UpsertListener(Listener {
                    id: ListenerId(8),
                    name: "dns/53/udp".into(),
                    vip: IpAddr::V6("2001:db8::10".parse::<Ipv6Addr>().unwrap()),
                    port: 53,
                    protocol: Protocol::Udp,
                    mode: Mode::Tunnel,
                    encap: Encap::Gue,
                    pool: PoolId(4),
                }),
            ),
        ),
        (
            "delete_listener",
            f(5, Message::DeleteListener(ListenerId(7))),
        ),
        (
            "upsert_pool",
            f(
                6,
                Message::UpsertPool(Pool {
                    id: PoolId(3),
                    name: "web".into(),
                    algorithm: Algorithm::MaglevSourceIp,
                    table_size: 65537,
                }),
            ),
        ),
        ("delete_pool", f(7, Message::DeletePool(PoolId(3)))),
        (
            "upsert_backend",
            f(
                8,
                Message::UpsertBackend(Backend {
                    id: BackendId(11),
                    pool: PoolId(3),
                    address: IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)),
                    port: 8080,
                    weight: 100,
                    mac: Some([0x02, 0, 0, 0, 0x01, 0x01]),
                    admin: AdminState::Drained,
                    healthy: true,
                }),
            ),
        ),
        (
            "upsert_backend_v6_no_mac",
            f(
                9,
                Message::UpsertBackend(Backend {
                    id: BackendId(12),
                    pool: PoolId(4),
                    address: IpAddr::V6("2001:db8::1:1".parse::<Ipv6Addr>().unwrap()),
                    port: 53,
                    weight: 0,
                    mac: None,
                    admin: AdminState::Disabled,
                    healthy: false,
                }),
            ),
        ),
        (
            "delete_backend",
            f(10, Message::DeleteBackend(BackendId(11))),
        ),
        (
            "set_tunnel",
            f(
                11,
                Message::SetTunnel(TunnelSettings {
                    source_v4: Some(Ipv4Addr::new(192, 0, 2, 1)),
                    source_v6: Some("2001:db8::ff".parse().unwrap()),
                    gue_port: 6080,
                }),
            ),
        ),
        ("commit", f(12, Message::Commit { count: 9 })),
        ("abort", f(13, Message::Abort)),
        ("applied", f(14, Message::Applied)),
        (
            "rejected",
            f(
                15,
                Message::Rejected {
                    code: RejectCode::UnknownObject,
                    reason: "backend 11 does not exist".into(),
                },
            ),
        ),
    ]
}

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/shm")
        .join(format!("{name}.hex"))
}

/// 32 bytes per line, lower-case hex.
fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::new();
    for line in bytes.chunks(32) {
        for b in line {
            s.push_str(&format!("{b:02x}"));
        }
        s.push('\n');
    }
    s
}

fn from_hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

#[test]
fn every_message_kind_matches_its_fixture_and_decodes_back() {
    let bless = std::env::var_os("FIBERLB_BLESS").is_some();
    let mut kinds = std::collections::HashSet::new();
    for (name, frame) in frames() {
        let bytes = encode(&frame).unwrap();
        assert_eq!(bytes.len(), SLOT_SIZE);
        let path = fixture_path(name);
        if bless {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, to_hex(&bytes)).unwrap();
        }
        let fixture = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (FIBERLB_BLESS=1 writes it)", path.display()));
        assert_eq!(
            to_hex(&bytes),
            fixture,
            "{name}: the encoding changed (see {})",
            path.display()
        );
        let decoded = decode(&from_hex(&fixture)).unwrap();
        assert_eq!(
            decoded, frame,
            "{name}: the fixture decodes to another frame"
        );
        kinds.insert(bytes[3]);
    }
    // Every kind of Message has a fixture (byte 3 of the header is the kind).
    assert_eq!(kinds.len(), 13, "kinds covered: {kinds:?}");
}
