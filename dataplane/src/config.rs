//! `dataplane.toml`: the node's own settings (what the services file does not say).
//!
//! ```toml
//! [forwarding]
//! hash_seed = 7308604899480821281   # same on every node behind one ECMP group
//! flow_capacity = 1048576           # flow-table entries per worker (32 bytes each)
//! mtu = 1500                        # largest IP packet towards backends (tunnel check)
//! backend_gateway_mac = "02:00:00:00:02:fe"  # next hop for backends without a MAC
//! client_gateway_mac = "02:00:00:00:01:fe"   # next hop towards clients (nat replies)
//! # backend_side_mac / client_side_mac: source MACs; default: the receiving port's MAC
//! max_listeners = 4096
//! max_backends = 65536
//!
//! [timeouts]                        # flow idle timeouts, seconds
//! tcp_open = 900
//! tcp_closing = 10
//! udp = 60
//! ```
//! Unknown keys are errors, reported with their line.

use std::path::Path;

use fiberlb_shared::model::Mac;
use serde::Deserialize;

use crate::flow_table::Timeouts;
use crate::pipeline::PipelineConfig;

/// Why dataplane.toml was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
}

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    #[serde(default)]
    pub forwarding: ForwardingConfig,
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
}

/// `[forwarding]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardingConfig {
    pub hash_seed: u64,
    pub flow_capacity: usize,
    pub mtu: u16,
    #[serde(deserialize_with = "opt_mac")]
    pub backend_gateway_mac: Option<Mac>,
    #[serde(deserialize_with = "opt_mac")]
    pub client_gateway_mac: Option<Mac>,
    #[serde(deserialize_with = "opt_mac")]
    pub backend_side_mac: Option<Mac>,
    #[serde(deserialize_with = "opt_mac")]
    pub client_side_mac: Option<Mac>,
    pub max_listeners: usize,
    pub max_backends: usize,
}

impl Default for ForwardingConfig {
    fn default() -> Self {
        let d = PipelineConfig::default();
        ForwardingConfig {
            hash_seed: d.hash_seed,
            flow_capacity: d.flow_capacity,
            mtu: d.mtu,
            backend_gateway_mac: None,
            client_gateway_mac: None,
            backend_side_mac: None,
            client_side_mac: None,
            max_listeners: d.max_listeners,
            max_backends: d.max_backends,
        }
    }
}

/// `[timeouts]`, in seconds.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsConfig {
    pub tcp_open: u32,
    pub tcp_closing: u32,
    pub udp: u32,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        let t = Timeouts::default();
        TimeoutsConfig {
            tcp_open: t.tcp_open_ms / 1000,
            tcp_closing: t.tcp_closing_ms / 1000,
            udp: t.udp_ms / 1000,
        }
    }
}

/// Parses "02:00:00:00:01:01".
pub fn parse_mac(s: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn opt_mac<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Mac>, D::Error> {
    let s = String::deserialize(d)?;
    parse_mac(&s).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "{s:?} is not a MAC address (expected 02:00:00:00:01:01)"
        ))
    })
}

const MAX_TIMEOUT_S: u32 = 2_000_000; // < 2^31 ms, the flow table's clock range

impl DataplaneConfig {
    /// Parses the file's text; `path` names it in errors.
    ///
    /// # Errors
    /// With the line and the reason.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let cfg: DataplaneConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        let t = &cfg.timeouts;
        for (name, v) in [
            ("tcp_open", t.tcp_open),
            ("tcp_closing", t.tcp_closing),
            ("udp", t.udp),
        ] {
            if v == 0 || v > MAX_TIMEOUT_S {
                return Err(ConfigError::Parse {
                    path: path.to_string(),
                    message: format!("timeouts.{name} = {v}: must be 1-{MAX_TIMEOUT_S} seconds"),
                });
            }
        }
        if cfg.forwarding.mtu < 576 {
            return Err(ConfigError::Parse {
                path: path.to_string(),
                message: format!(
                    "forwarding.mtu = {}: must be at least 576",
                    cfg.forwarding.mtu
                ),
            });
        }
        Ok(cfg)
    }

    /// Reads and parses a file.
    ///
    /// # Errors
    /// When it cannot be read or is invalid.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        Self::parse(&text, &p)
    }

    /// The pipeline settings this file gives.
    pub fn pipeline(&self) -> PipelineConfig {
        let f = &self.forwarding;
        PipelineConfig {
            hash_seed: f.hash_seed,
            flow_capacity: f.flow_capacity,
            timeouts: Timeouts {
                tcp_open_ms: self.timeouts.tcp_open * 1000,
                tcp_closing_ms: self.timeouts.tcp_closing * 1000,
                udp_ms: self.timeouts.udp * 1000,
            },
            backend_side_mac: f.backend_side_mac,
            client_side_mac: f.client_side_mac,
            backend_gateway_mac: f.backend_gateway_mac,
            client_gateway_mac: f.client_gateway_mac,
            mtu: f.mtu,
            max_listeners: f.max_listeners,
            max_backends: f.max_backends,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reports_lines() {
        let c = DataplaneConfig::parse(
            "[forwarding]\nhash_seed = 5\nclient_gateway_mac = \"02:00:00:00:01:fe\"\n[timeouts]\nudp = 30\n",
            "t.toml",
        )
        .unwrap();
        let p = c.pipeline();
        assert_eq!(p.hash_seed, 5);
        assert_eq!(p.client_gateway_mac, Some([2, 0, 0, 0, 1, 0xfe]));
        assert_eq!(p.timeouts.udp_ms, 30_000);
        let e = DataplaneConfig::parse("[forwarding]\n\nmtux = 3\n", "t.toml").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("line 3") && msg.contains("mtux"), "{msg}");
        let e = DataplaneConfig::parse("[forwarding]\nclient_gateway_mac = \"zz\"\n", "t.toml")
            .unwrap_err();
        assert!(
            e.to_string().contains("line 2") && e.to_string().contains("not a MAC"),
            "{e}"
        );
        let e = DataplaneConfig::parse("[timeouts]\nudp = 0\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("timeouts.udp"), "{e}");
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(
            parse_mac("02:aa:00:00:01:ff"),
            Some([2, 0xaa, 0, 0, 1, 0xff])
        );
        assert_eq!(parse_mac("02:aa:00:00:01"), None);
        assert_eq!(parse_mac("02:aa:00:00:01:ff:00"), None);
        assert_eq!(parse_mac("2:aa:00:00:01:ff"), None);
    }
}
