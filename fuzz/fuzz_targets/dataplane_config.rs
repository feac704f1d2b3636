//! Fuzzes dataplane.toml's parser, `DataplaneConfig::parse(text, path)` (string level; `load`
//! only adds reading the file). Operator input: it must never panic, and a rejection names the
//! file and gives a non-empty reason. An accepted config must also be usable without panicking
//! by what the data plane derives from it without system access (`driver`, `port_roles`,
//! `pipeline`, `pipeline_with_port_macs`, the ports' display names and the UMEM size).
#![no_main]

use fiberlb_dataplane::config::{ConfigError, DataplaneConfig};
use libfuzzer_sys::fuzz_target;

const PATH: &str = "fuzz/dataplane.toml";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match DataplaneConfig::parse(&text, PATH) {
        Err(e) => {
            let shown = e.to_string();
            match &e {
                ConfigError::Parse { path, message } => {
                    assert_eq!(path, PATH);
                    assert!(!message.trim().is_empty(), "empty reason: {e:?}");
                }
                other => panic!("parse returned a non-parse error: {other:?}"),
            }
            assert!(
                shown.starts_with(&format!("{PATH}: ")),
                "error does not name the file: {shown:?}"
            );
        }
        Ok(cfg) => {
            let _ = cfg.driver();
            let _ = cfg.port_roles();
            let _ = cfg.pipeline();
            let _ = cfg.pipeline_with_port_macs(|i| [2, 0, 0, 0, 0, i as u8]);
            for p in &cfg.ports {
                let _ = p.display_name();
            }
            let _ = cfg.umem.bytes();
            let _ = cfg.shm.resolved_path();
        }
    }
});
