//! Fuzzes the shared-memory message decoder: it must never panic, and anything it accepts must
//! re-encode to the very same bytes (the encoding is canonical, so nothing is silently dropped).
//!
//! Two inputs per run: the raw bytes as a slot, and a *repaired* frame built from them — valid
//! magic, version, length and CRC around a fuzzed kind and payload — so the fuzzer explores the
//! payload decoder behind the checksum instead of stopping at it.
#![no_main]

use fiberlb_shared::shm::message::{crc32, decode, encode, FORMAT_VERSION, FRAME_MAGIC, HEADER_LEN, SLOT_SIZE};
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8]) {
    if let Ok(frame) = decode(bytes) {
        let again = encode(&frame).expect("a decoded frame re-encodes");
        assert_eq!(&again[..], bytes, "decode/encode is not canonical");
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() < 17 {
        return;
    }
    let (head, payload) = data.split_at(17);
    let payload = &payload[..payload.len().min(SLOT_SIZE - HEADER_LEN)];
    let mut slot = vec![0u8; SLOT_SIZE];
    slot[0..2].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
    slot[2] = FORMAT_VERSION;
    slot[3] = head[0];
    slot[4..6].copy_from_slice(&(payload.len() as u16).to_le_bytes());
    slot[8..24].copy_from_slice(&head[1..17]);
    slot[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
    let mut covered = slot[..24].to_vec();
    covered.extend_from_slice(payload);
    slot[24..28].copy_from_slice(&crc32(&covered).to_le_bytes());
    check(&slot);
});
