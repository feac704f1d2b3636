//! Tests of [`super`].

use super::*;

fn key(i: u32) -> FlowKey {
    let mut client = [0u8; 16];
    client[..4].copy_from_slice(&i.to_be_bytes());
    FlowKey {
        client,
        listener: 7,
        port: (i % 60000) as u16 + 1,
    }
}

#[test]
fn entry_is_32_bytes() {
    assert_eq!(ENTRY_BYTES, 32);
    assert_eq!(std::mem::size_of::<Bucket>(), 128);
}

#[test]
fn insert_then_lookup() {
    let mut t = FlowTable::new(1024, Timeouts::default()).unwrap();
    let k = key(1);
    assert_eq!(t.lookup(99, &k, 0), None);
    t.insert(99, &k, 5, FlowState::TcpOpen, 10);
    let hit = t.lookup(99, &k, 20).unwrap();
    assert_eq!(hit.backend, 5);
    assert_eq!(hit.state, FlowState::TcpOpen);
    // Different port, listener or address: miss.
    assert_eq!(
        t.lookup(
            99,
            &FlowKey {
                port: k.port + 1,
                ..k
            },
            20
        ),
        None
    );
    assert_eq!(t.lookup(99, &FlowKey { listener: 8, ..k }, 20), None);
    assert_eq!(t.lookup(99, &key(2), 20), None);
    // Re-insert of the same key replaces, does not duplicate.
    t.insert(99, &k, 6, FlowState::TcpOpen, 30);
    assert_eq!(t.lookup(99, &k, 31).unwrap().backend, 6);
    assert_eq!(t.count_live(31), 1);
}

#[test]
fn timeouts_per_state() {
    let to = Timeouts {
        tcp_open_ms: 1000,
        tcp_closing_ms: 100,
        udp_ms: 500,
        tcp_syn_ms: 50,
    };
    let mut t = FlowTable::new(64, to).unwrap();
    t.insert(1, &key(1), 1, FlowState::TcpOpen, 0);
    t.insert(2, &key(2), 1, FlowState::Udp, 0);
    t.insert(3, &key(3), 1, FlowState::TcpClosing, 0);
    assert!(t.lookup(1, &key(1), 1000).is_some());
    assert!(t.lookup(1, &key(1), 1001).is_none());
    assert!(t.lookup(2, &key(2), 500).is_some());
    assert!(t.lookup(2, &key(2), 501).is_none());
    assert!(t.lookup(3, &key(3), 100).is_some());
    assert!(t.lookup(3, &key(3), 101).is_none());
    // Touch moves an open flow to closing and refreshes it.
    let hit = t.lookup(1, &key(1), 900).unwrap();
    t.touch(hit.slot, FlowState::TcpClosing, 900);
    assert_eq!(
        t.lookup(1, &key(1), 950).unwrap().state,
        FlowState::TcpClosing
    );
    assert!(t.lookup(1, &key(1), 1001).is_none());
}

#[test]
fn wrapping_clock() {
    let mut t = FlowTable::new(64, Timeouts::default()).unwrap();
    let start = u32::MAX - 10;
    t.insert(1, &key(1), 3, FlowState::Udp, start);
    assert!(t.lookup(1, &key(1), start.wrapping_add(1000)).is_some());
}

#[test]
fn half_open_flows_never_evict_established_ones() {
    let mut t = FlowTable::new(1024, Timeouts::default()).unwrap();
    let buckets = (t.capacity() / WAYS) as u64;
    // Every entry of every bucket an established flow.
    let mut established = Vec::new();
    for b in 0..buckets {
        for w in 0..WAYS as u32 {
            let k = key((b as u32) * 16 + w);
            t.insert(b, &k, 1, FlowState::TcpOpen, 100);
            established.push((b, k));
        }
    }
    assert_eq!(t.count_live(100), t.capacity());
    // A SYN flood: 100 000 half-open flows from random sources over every bucket.
    for i in 0..100_000u32 {
        let k = FlowKey {
            client: [
                (i >> 8) as u8,
                i as u8,
                7,
                7,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            ],
            listener: 7,
            port: (i % 50_000) as u16 + 1,
        };
        t.insert(u64::from(i) * 0x9e37_79b9, &k, 2, FlowState::TcpSyn, 200);
    }
    for (b, k) in &established {
        assert_eq!(t.lookup(*b, k, 300).map(|h| h.backend), Some(1));
    }
    let st = t.stats();
    assert_eq!(st.evictions, 0);
    assert_eq!(st.syn_not_recorded, 100_000);
    // A flow that completes its handshake is recorded: established, it takes the least
    // recently seen established entry, as before.
    t.insert(3, &key(9999), 3, FlowState::TcpOpen, 400);
    assert_eq!(t.lookup(3, &key(9999), 401).map(|h| h.backend), Some(3));
    assert_eq!(t.stats().evictions, 1);
}

#[test]
fn half_open_entries_go_first_and_expire_fast() {
    let mut t = FlowTable::new(64, Timeouts::default()).unwrap();
    // Bucket 5: two established (older), two half-open (newer).
    t.insert(5, &key(0), 0, FlowState::TcpOpen, 100);
    t.insert(5, &key(1), 1, FlowState::TcpOpen, 101);
    t.insert(5, &key(2), 2, FlowState::TcpSyn, 200);
    t.insert(5, &key(3), 3, FlowState::TcpSyn, 201);
    // An established newcomer replaces the oldest half-open entry, not the older
    // established ones.
    t.insert(5, &key(4), 4, FlowState::TcpOpen, 300);
    assert!(t.lookup(5, &key(2), 301).is_none());
    for i in [0u32, 1, 3, 4] {
        assert!(t.lookup(5, &key(i), 301).is_some(), "entry {i} kept");
    }
    assert_eq!((t.stats().evictions, t.stats().half_open_evictions), (1, 1));
    // A half-open newcomer replaces the remaining half-open entry.
    t.insert(5, &key(5), 5, FlowState::TcpSyn, 302);
    assert!(t.lookup(5, &key(3), 303).is_none());
    // Half-open entries expire after tcp_syn_ms (5 s), established ones do not.
    assert!(t.lookup(5, &key(5), 302 + 5_000).is_some());
    assert!(t.lookup(5, &key(5), 302 + 5_001).is_none());
    assert!(t.lookup(5, &key(0), 302 + 5_001).is_some());
    // The ACK makes a half-open flow established.
    t.insert(6, &key(7), 7, FlowState::TcpSyn, 0);
    let h = t.lookup(6, &key(7), 1).unwrap();
    assert_eq!(h.state, FlowState::TcpSyn);
    t.touch(h.slot, FlowState::TcpOpen, 1);
    assert!(t.lookup(6, &key(7), 10_000).is_some());
}

#[test]
fn full_bucket_evicts_least_recently_seen() {
    let mut t = FlowTable::new(64, Timeouts::default()).unwrap();
    // All keys hash to the same bucket.
    for i in 0..WAYS as u32 {
        t.insert(5, &key(i), i, FlowState::TcpOpen, 100 + i);
    }
    // Refresh key 0 so key 1 becomes the oldest.
    let h = t.lookup(5, &key(0), 200).unwrap();
    t.touch(h.slot, FlowState::TcpOpen, 200);
    t.insert(5, &key(100), 100, FlowState::TcpOpen, 201);
    assert_eq!(t.stats().evictions, 1);
    assert!(t.lookup(5, &key(1), 202).is_none(), "oldest entry evicted");
    for i in [0u32, 2, 3, 100] {
        assert!(t.lookup(5, &key(i), 202).is_some(), "entry {i} kept");
    }
}

#[test]
fn expired_entry_is_reused_before_evicting() {
    let to = Timeouts {
        tcp_open_ms: 1000,
        tcp_closing_ms: 10,
        udp_ms: 1000,
        tcp_syn_ms: 50,
    };
    let mut t = FlowTable::new(64, to).unwrap();
    for i in 0..WAYS as u32 {
        let st = if i == 2 {
            FlowState::TcpClosing
        } else {
            FlowState::TcpOpen
        };
        t.insert(5, &key(i), i, st, 100);
    }
    t.insert(5, &key(9), 9, FlowState::TcpOpen, 200);
    assert_eq!(t.stats().evictions, 0);
    assert!(t.lookup(5, &key(2), 200).is_none());
    for i in [0u32, 1, 3, 9] {
        assert!(t.lookup(5, &key(i), 200).is_some());
    }
}

#[test]
fn flood_does_not_grow_and_keeps_capacity() {
    let mut t = FlowTable::new(1 << 12, Timeouts::default()).unwrap();
    let before = t.memory_bytes();
    for i in 0..100_000u32 {
        let h = xxhash_like(i);
        t.insert(h, &key(i), i, FlowState::TcpOpen, i);
    }
    assert_eq!(t.memory_bytes(), before);
    let live = t.count_live(100_000);
    assert!(live <= t.capacity());
    assert!(live > t.capacity() * 9 / 10, "table well used: {live}");
}

fn xxhash_like(i: u32) -> u64 {
    let mut x = u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    x.wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

/// Entry of listener slot `l` to backend handle `h` in bucket `bucket`.
fn put(t: &mut FlowTable, bucket: u64, i: u32, l: u32, h: u32, st: FlowState, now: u32) {
    let k = FlowKey {
        listener: l,
        ..key(i)
    };
    t.insert(bucket, &k, h, st, now);
}

/// Runs whole passes until one completes, returning the calls it took.
fn full_pass(t: &FlowTable, s: &mut FlowSweep, now: u32, per_call: usize) -> usize {
    let mut calls = 1;
    while !t.sweep(s, now, per_call) {
        calls += 1;
    }
    calls
}

#[test]
fn sweep_counts_live_entries_per_listener_and_backend() {
    let to = Timeouts {
        tcp_open_ms: 1000,
        tcp_closing_ms: 100,
        udp_ms: 500,
        tcp_syn_ms: 50,
    };
    let mut t = FlowTable::new(1024, to).unwrap();
    // Backend handles carry an incarnation above the 24 slot bits.
    let h = |slot: u32, inc: u32| (inc << 24) | slot;
    for i in 0..30u32 {
        put(
            &mut t,
            u64::from(i) * 7,
            i,
            i % 3,
            h(i % 5, 1 + i % 2),
            FlowState::TcpOpen,
            0,
        );
    }
    // Expire by the time of the sweep: UDP and closing flows seen at 0, swept at 600.
    for i in 30..40u32 {
        put(&mut t, u64::from(i) * 7, i, 0, h(0, 1), FlowState::Udp, 0);
    }
    for i in 40..45u32 {
        put(
            &mut t,
            u64::from(i) * 7,
            i,
            1,
            h(1, 1),
            FlowState::TcpClosing,
            0,
        );
    }
    // Backend slot beyond the sweep's arrays: in `live`, in its listener, in no backend.
    put(&mut t, 999, 999, 2, h(100, 1), FlowState::TcpOpen, 0);
    // Listener slot beyond the arrays: in `live` only.
    put(&mut t, 998, 998, 50, h(4, 1), FlowState::TcpOpen, 0);
    let now = 600;
    let mut s = FlowSweep::new(8, 16);
    assert_eq!(s.completed_passes(), 0);
    let calls = full_pass(&t, &mut s, now, 8);
    assert_eq!(calls, t.capacity() / WAYS / 8);
    assert_eq!(s.completed_passes(), 1);
    assert_eq!(s.live() as usize, t.count_live(now));
    assert_eq!(s.live(), 32);
    for l in 0..3 {
        assert_eq!(s.listener_active(l), 10 + u64::from(l == 2), "listener {l}");
    }
    assert_eq!(s.listener_active(3), 0);
    assert_eq!(s.listener_active(50), 0);
    for b in 0..5 {
        assert_eq!(s.backend_active(b), 6 + u64::from(b == 4), "backend {b}");
    }
    assert_eq!(s.backend_active(100), 0);
    // Later, the TCP flows expire too; the next pass publishes zero.
    full_pass(&t, &mut s, 1200, 64);
    assert_eq!(s.live(), 0);
    assert_eq!(t.count_live(1200), 0);
    assert_eq!(s.listener_active(0), 0);
    assert_eq!(s.backend_active(0), 0);
}

#[test]
fn sweep_publishes_only_after_a_full_pass() {
    let mut t = FlowTable::new(64, Timeouts::default()).unwrap();
    let mut s = FlowSweep::new(4, 4);
    // 16 buckets. Fill a few.
    for i in 0..6u32 {
        put(&mut t, u64::from(i), i, 1, 2, FlowState::TcpOpen, 0);
    }
    assert!(!t.sweep(&mut s, 1, 15));
    assert_eq!(s.position(), 15);
    // Mid-pass: nothing published yet, though all six entries were counted.
    assert_eq!(s.completed_passes(), 0);
    assert_eq!(s.listener_active(1), 0);
    assert_eq!(s.backend_active(2), 0);
    assert!(t.sweep(&mut s, 1, 15), "the last bucket ends the pass");
    assert_eq!(s.position(), 0);
    assert_eq!(s.listener_active(1), 6);
    assert_eq!(s.backend_active(2), 6);
    // During the next pass the previous result stays published, even as entries are added.
    for i in 6..10u32 {
        put(&mut t, u64::from(i), i, 1, 2, FlowState::TcpOpen, 0);
    }
    assert!(!t.sweep(&mut s, 1, 8));
    assert_eq!(s.listener_active(1), 6);
    assert!(t.sweep(&mut s, 1, 8));
    assert_eq!(s.listener_active(1), 10);
    assert_eq!(s.live(), 10);
    assert_eq!(s.completed_passes(), 2);
}

#[test]
fn sweep_work_per_call_is_bounded() {
    let t = FlowTable::new(1 << 12, Timeouts::default()).unwrap();
    let buckets = t.capacity() / WAYS;
    let mut s = FlowSweep::new(4, 4);
    for step in 1..=buckets {
        assert_eq!(t.sweep(&mut s, 0, 8), step * 8 == buckets);
        if step * 8 == buckets {
            break;
        }
        assert_eq!(s.position(), step * 8, "8 buckets per call, no more");
    }
    // A huge budget still stops at the end of the pass instead of starting the next one.
    assert!(t.sweep(&mut s, 0, usize::MAX));
    assert_eq!(s.position(), 0);
    assert_eq!(s.completed_passes(), 2);
    // A zero budget still makes progress.
    assert!(!t.sweep(&mut s, 0, 0));
    assert_eq!(s.position(), 1);
}

#[test]
fn sweep_moved_to_a_smaller_table_restarts() {
    let big = FlowTable::new(1 << 10, Timeouts::default()).unwrap();
    let mut small = FlowTable::new(16, Timeouts::default()).unwrap();
    put(&mut small, 0, 1, 0, 0, FlowState::TcpOpen, 0);
    let mut s = FlowSweep::new(1, 1);
    for _ in 0..100 {
        big.sweep(&mut s, 0, 1);
    }
    assert_eq!(s.position(), 100);
    // A position past the end of another table is taken as the start of a pass.
    assert!(small.sweep(&mut s, 0, 100));
    assert_eq!(s.listener_active(0), 1);
}

#[test]
fn sweep_survives_the_pass_number_wrapping() {
    let mut t = FlowTable::new(16, Timeouts::default()).unwrap();
    let mut s = FlowSweep::new(4, 4);
    // Pass 1: slot 3 has a flow, which then goes away (expires).
    put(&mut t, 0, 1, 3, 3, FlowState::Udp, 0);
    full_pass(&t, &mut s, 1, 100);
    assert_eq!(s.listener_active(3), 1);
    // Jump to just before the wrap, where slot 3 has no flow any more.
    s.set_pass(u32::MAX);
    full_pass(&t, &mut s, 100_000, 100);
    assert_eq!(s.listener_active(3), 0);
    // Pass 0 and pass 1 again: the old count tagged 1 must not come back.
    put(&mut t, 1, 2, 0, 0, FlowState::TcpOpen, 100_000);
    for _ in 0..3 {
        full_pass(&t, &mut s, 100_000, 100);
        assert_eq!(s.listener_active(3), 0);
        assert_eq!(s.backend_active(3), 0);
        assert_eq!(s.listener_active(0), 1);
    }
}

#[test]
fn rejects_bad_capacity() {
    assert!(matches!(
        FlowTable::new(3, Timeouts::default()),
        Err(FlowTableError::TooSmall(3))
    ));
    assert!(FlowTable::new(1 << 32, Timeouts::default()).is_err());
}
