//! Tests of [`super`].

use proptest::prelude::*;

use super::*;

#[test]
fn crc32_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
}

pub(crate) fn arb_addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(b.into())),
        any::<[u8; 16]>().prop_map(|b| IpAddr::V6(b.into())),
    ]
}

fn arb_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9/_é-]{0,20}".prop_filter("fits", |s| s.len() <= MAX_NAME_LEN)
}

fn arb_message() -> impl Strategy<Value = Message> {
    let listener = (
        any::<u32>(),
        arb_name(),
        arb_addr(),
        any::<u16>(),
        any::<bool>(),
        0u8..3,
        any::<bool>(),
        any::<u32>(),
    )
        .prop_map(|(id, name, vip, port, udp, mode, gue, pool)| {
            Message::UpsertListener(Listener {
                id: ListenerId(id),
                name,
                vip,
                port,
                protocol: if udp { Protocol::Udp } else { Protocol::Tcp },
                mode: mode_of(mode).unwrap(),
                encap: if gue { Encap::Gue } else { Encap::Ipip },
                pool: PoolId(pool),
            })
        });
    let pool = (any::<u32>(), arb_name(), any::<bool>(), any::<u32>()).prop_map(
        |(id, name, src, table_size)| {
            Message::UpsertPool(Pool {
                id: PoolId(id),
                name,
                algorithm: if src {
                    Algorithm::MaglevSourceIp
                } else {
                    Algorithm::Maglev
                },
                table_size,
            })
        },
    );
    let backend = (
        (any::<u32>(), any::<u32>(), arb_addr(), any::<u16>()),
        (
            any::<u32>(),
            any::<Option<[u8; 6]>>(),
            0u8..3,
            any::<bool>(),
        ),
    )
        .prop_map(
            |((id, pool, address, port), (weight, mac, admin, healthy))| {
                Message::UpsertBackend(Backend {
                    id: BackendId(id),
                    pool: PoolId(pool),
                    address,
                    port,
                    weight,
                    mac,
                    admin: admin_of(admin).unwrap(),
                    healthy,
                })
            },
        );
    let tunnel = (
        any::<Option<[u8; 4]>>(),
        any::<Option<[u8; 16]>>(),
        any::<u16>(),
    )
        .prop_map(|(v4, v6, gue_port)| {
            Message::SetTunnel(TunnelSettings {
                source_v4: v4.map(Ipv4Addr::from),
                source_v6: v6.map(Ipv6Addr::from),
                gue_port,
            })
        });
    prop_oneof![
        Just(Message::Begin),
        Just(Message::Reset),
        Just(Message::Abort),
        Just(Message::Applied),
        listener,
        pool,
        backend,
        tunnel,
        any::<u32>().prop_map(|i| Message::DeleteListener(ListenerId(i))),
        any::<u32>().prop_map(|i| Message::DeletePool(PoolId(i))),
        any::<u32>().prop_map(|i| Message::DeleteBackend(BackendId(i))),
        any::<u32>().prop_map(|count| Message::Commit { count }),
        (1u16..13, ".{0,80}")
            .prop_map(|(c, r)| Message::rejected(RejectCode::from_u16(c).unwrap(), &r)),
    ]
}

pub(crate) fn arb_frame() -> impl Strategy<Value = Frame> {
    (any::<u64>(), any::<u64>(), arb_message()).prop_map(|(seq, generation, message)| Frame {
        seq,
        generation,
        message,
    })
}

proptest! {
    #[test]
    fn round_trip(frame in arb_frame()) {
        let bytes = encode(&frame).unwrap();
        prop_assert_eq!(decode(&bytes).unwrap(), frame);
    }

    #[test]
    fn every_single_byte_change_is_caught(frame in arb_frame(), delta in 1u8..=255) {
        let bytes = encode(&frame).unwrap();
        for i in 0..SLOT_SIZE {
            let mut bad = bytes;
            bad[i] = bad[i].wrapping_add(delta);
            // CRC-32 detects every single-byte error, and the header and padding are
            // checked directly: a one-byte change can never decode.
            prop_assert!(decode(&bad).is_err(), "byte {} changed by {} still decoded", i, delta);
        }
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode(&bytes);
    }
}

/// Re-checksums a hand-edited frame so the test reaches the payload checks.
fn reseal(bytes: &mut SlotBytes) {
    let len = usize::from(u16::from_le_bytes([bytes[4], bytes[5]]));
    let crc = frame_crc(&bytes[..], &bytes[HEADER_LEN..HEADER_LEN + len]);
    bytes[24..28].copy_from_slice(&crc.to_le_bytes());
}

fn backend_frame() -> SlotBytes {
    encode(&Frame {
        seq: 1,
        generation: 7,
        message: Message::UpsertBackend(Backend {
            id: BackendId(3),
            pool: PoolId(1),
            address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)),
            port: 80,
            weight: 100,
            mac: None,
            admin: AdminState::Enabled,
            healthy: true,
        }),
    })
    .unwrap()
}

#[test]
fn semantic_errors_behind_a_valid_checksum() {
    let good = backend_frame();
    // Payload starts at 32: id(4) pool(4) family(1) addr(16) port(2) weight(4) has_mac(1)
    // mac(6) admin(1) healthy(1).
    let cases: [(usize, u8, DecodeError); 6] = [
        (40, 5, DecodeError::BadFamily(5)),
        (45, 1, DecodeError::BadAddressPadding),
        (
            63,
            2,
            DecodeError::BadEnum {
                field: "mac present",
                value: 2,
            },
        ),
        (
            70,
            3,
            DecodeError::BadEnum {
                field: "admin state",
                value: 3,
            },
        ),
        (
            71,
            9,
            DecodeError::BadEnum {
                field: "healthy",
                value: 9,
            },
        ),
        (3, 0x7f, DecodeError::UnknownKind(0x7f)),
    ];
    for (at, value, want) in cases {
        let mut bad = good;
        bad[at] = value;
        reseal(&mut bad);
        assert_eq!(decode(&bad), Err(want), "byte {at} = {value}");
    }
    // A payload length one short, then one long (with the extra byte zero).
    let mut short = good;
    short[4] -= 1;
    short[32 + usize::from(short[4])] = 0;
    reseal(&mut short);
    assert_eq!(decode(&short), Err(DecodeError::Truncated("UpsertBackend")));
    let mut long = good;
    long[4] += 1;
    reseal(&mut long);
    assert_eq!(decode(&long), Err(DecodeError::TrailingBytes(1)));
    assert_eq!(decode(&good[..255]), Err(DecodeError::BadLength(255)));
}

#[test]
fn names_must_be_utf8_and_bounded() {
    let frame = Frame {
        seq: 1,
        generation: 1,
        message: Message::UpsertPool(Pool {
            id: PoolId(1),
            name: "ab".into(),
            algorithm: Algorithm::Maglev,
            table_size: 7,
        }),
    };
    let mut bad = encode(&frame).unwrap();
    // Pool payload: id(4) algorithm(1) table_size(4) name_len(1) name.
    bad[42] = 0xff;
    reseal(&mut bad);
    assert_eq!(decode(&bad), Err(DecodeError::NotUtf8));
    let long = Frame {
        message: Message::UpsertPool(Pool {
            id: PoolId(1),
            name: "x".repeat(MAX_NAME_LEN + 1),
            algorithm: Algorithm::Maglev,
            table_size: 7,
        }),
        ..frame
    };
    assert_eq!(
        encode(&long),
        Err(EncodeError::NameTooLong {
            len: MAX_NAME_LEN + 1
        })
    );
}

#[test]
fn rejected_reason_is_truncated_on_a_char_boundary() {
    let m = Message::rejected(RejectCode::Invalid, &"é".repeat(150));
    let Message::Rejected { reason, .. } = &m else {
        unreachable!()
    };
    assert_eq!(reason.len(), MAX_REASON_LEN);
    let frame = Frame {
        seq: 9,
        generation: 9,
        message: m,
    };
    assert_eq!(decode(&encode(&frame).unwrap()).unwrap(), frame);
}
