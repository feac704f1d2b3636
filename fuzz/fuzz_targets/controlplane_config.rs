//! Fuzzes controlplane.toml's parser, `fiberlb_controlplane::config::Config::parse(text, path)`
//! (string level; `load` only adds reading the file). Operator input: it must never panic, a
//! rejection names the file and gives a reason, and a TOML syntax/type error carries the place
//! (`line N, column M` from the toml crate). An accepted config's VIP allocator must build.
#![no_main]

use std::path::Path;

use fiberlb_controlplane::config::{Config, ConfigError};
use libfuzzer_sys::fuzz_target;

const PATH: &str = "fuzz/controlplane.toml";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Config::parse(&text, Path::new(PATH)) {
        Err(e) => {
            let shown = e.to_string();
            assert!(
                shown.starts_with(&format!("{PATH}: ")),
                "error does not name the file: {shown:?}"
            );
            match &e {
                ConfigError::Parse { source, .. } => {
                    assert!(source.span().is_some() || !source.message().is_empty());
                }
                ConfigError::Invalid { message, .. } => {
                    assert!(!message.trim().is_empty(), "empty reason: {e:?}");
                }
                other => panic!("parse returned a read error: {other:?}"),
            }
        }
        Ok(cfg) => {
            cfg.vip_allocator()
                .expect("an accepted config's vip_ranges build an allocator");
            let _ = cfg.tunnel.settings();
        }
    }
});
