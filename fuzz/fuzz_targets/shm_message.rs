//! Fuzzes the shared-memory message decoder: it must never panic, and anything it accepts must
//! re-encode to the very same bytes (the encoding is canonical, so nothing is silently dropped).
#![no_main]

use fiberlb_shared::shm::message::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = decode(data) {
        let again = encode(&frame).expect("a decoded frame re-encodes");
        assert_eq!(&again[..], data, "decode/encode is not canonical");
    }
});
