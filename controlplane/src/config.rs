//! `fiberlbd --config controlplane.toml`: the daemon's configuration file.
//!
//! ```toml
//! listen = "/run/fiberlb/fiberlbd.sock"     # Unix socket (mode 0600), the default
//! # listen_tcp = "0.0.0.0:7443"            # optional TCP listener; needs [tls] and tokens
//! store_path = "/var/lib/fiberlb/store.redb"
//! # store = "etcd"                        # with [etcd] below: one configuration for a tier
//! shm_path = "/dev/shm/fiberlb"             # the data plane's region (optional)
//! hash_seed = 7308604899480821281           # must equal the data plane's [forwarding] hash_seed
//! vip_ranges = ["10.10.0.0/24", "fd00:10::/120"]
//! metrics_address = "127.0.0.1:9750"
//! require_token = false                     # on the Unix socket; TCP always requires one
//!
//! [tls]
//! cert = "/etc/fiberlb/tls.crt"
//! key = "/etc/fiberlb/tls.key"
//!
//! [tunnel]
//! source_v4 = "10.10.0.1"
//! source_v6 = "fd00:10::1"
//! gue_port = 6080
//!
//! [health_defaults]
//! interval_ms = 2000
//! timeout_ms = 1000
//! rise = 2
//! fall = 3
//!
//! [[tokens]]
//! token = "s3cret-acme-web"
//! org_id = "acme"
//! project_id = "web"
//!
//! [etcd]                                    # store = "etcd" (see store/etcd.rs)
//! endpoints = ["http://10.0.0.21:2379"]
//! prefix = "/fiberlb"
//!
//! [bgp]                                     # announce VIPs through a local BIRD (see bgp.rs)
//! enabled = true
//! include_path = "/etc/bird/fiberlb.conf"   # BIRD's config includes this file
//! socket = "/run/bird/bird.ctl"
//! vips = "all"                              # or ["10.10.0.1", "fd00:10::1"]
//! liveness_interface = "fiberlb0"           # TAP device that lives as long as fiberlbd
//! communities = ["65000:100"]
//! med = 50
//! dataplane_timeout_ms = 500
//! ```

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use fiberlb_shared::flow_hash::DEFAULT_SEED;
use fiberlb_shared::model::{TunnelSettings, DEFAULT_GUE_PORT};
use serde::Deserialize;

use crate::model::Scope;
use crate::vip::VipAllocator;

/// Default Unix socket of fiberlbd (and of fiberlbctl's `--server`).
pub const DEFAULT_SOCKET: &str = "/run/fiberlb/fiberlbd.sock";
/// Default store file.
pub const DEFAULT_STORE: &str = "/var/lib/fiberlb/store.redb";

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// TLS material of the TCP listener (PEM files).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Node-wide tunnel settings passed to the data plane with every configuration.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TunnelConfig {
    pub source_v4: Option<Ipv4Addr>,
    pub source_v6: Option<Ipv6Addr>,
    #[serde(default = "default_gue_port")]
    pub gue_port: u16,
}

fn default_gue_port() -> u16 {
    DEFAULT_GUE_PORT
}

impl Default for TunnelConfig {
    fn default() -> Self {
        TunnelConfig {
            source_v4: None,
            source_v6: None,
            gue_port: DEFAULT_GUE_PORT,
        }
    }
}

impl TunnelConfig {
    /// As the shared model spells it.
    pub fn settings(&self) -> TunnelSettings {
        TunnelSettings {
            source_v4: self.source_v4,
            source_v6: self.source_v6,
            gue_port: self.gue_port,
        }
    }
}

/// Values a health check takes for fields left at zero.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthDefaults {
    pub interval_ms: u32,
    pub timeout_ms: u32,
    pub rise: u32,
    pub fall: u32,
}

impl Default for HealthDefaults {
    fn default() -> Self {
        HealthDefaults {
            interval_ms: 2000,
            timeout_ms: 1000,
            rise: 2,
            fall: 3,
        }
    }
}

/// A bearer token and the tenant it acts for.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub token: String,
    pub org_id: String,
    pub project_id: String,
}

/// `store = ...`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The embedded redb file at `store_path` (one node).
    #[default]
    Redb,
    /// etcd (`[etcd]`): one configuration for several nodes.
    Etcd,
}

/// The whole file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: PathBuf,
    pub listen_tcp: Option<SocketAddr>,
    /// Where the configuration lives: "redb" (this node's file, the default) or "etcd" (shared
    /// by every node of a tier; needs `[etcd]`).
    #[serde(default)]
    pub store: StoreKind,
    /// The redb file; with `store = "etcd"`, its directory still holds this node's own files
    /// (drain mark, applied state, the etcd cache).
    #[serde(default = "default_store")]
    pub store_path: PathBuf,
    pub etcd: Option<crate::store::etcd::EtcdConfig>,
    pub shm_path: Option<PathBuf>,
    #[serde(default = "default_seed")]
    pub hash_seed: u64,
    #[serde(default)]
    pub vip_ranges: Vec<String>,
    pub metrics_address: Option<SocketAddr>,
    #[serde(default)]
    pub require_token: bool,
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub tunnel: TunnelConfig,
    #[serde(default)]
    pub health_defaults: HealthDefaults,
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    pub bgp: Option<crate::bgp::BgpConfig>,
}

fn default_listen() -> PathBuf {
    PathBuf::from(DEFAULT_SOCKET)
}
fn default_store() -> PathBuf {
    PathBuf::from(DEFAULT_STORE)
}
fn default_seed() -> u64 {
    DEFAULT_SEED
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: default_listen(),
            listen_tcp: None,
            store: StoreKind::Redb,
            store_path: default_store(),
            etcd: None,
            shm_path: None,
            hash_seed: DEFAULT_SEED,
            vip_ranges: Vec::new(),
            metrics_address: None,
            require_token: false,
            tls: None,
            tunnel: TunnelConfig::default(),
            health_defaults: HealthDefaults::default(),
            tokens: Vec::new(),
            bgp: None,
        }
    }
}

impl Config {
    /// Reads and checks `path`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and what is wrong in it.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and checks the text of a configuration file (`path` is only for messages).
    ///
    /// # Errors
    /// [`ConfigError`].
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        c.vip_allocator().map_err(|e| invalid(e.to_string()))?;
        if c.listen_tcp.is_some() && c.tls.is_none() {
            return Err(invalid(
                "listen_tcp needs a [tls] section (cert and key PEM files): tokens must not \
                 travel in clear text"
                    .into(),
            ));
        }
        if c.listen_tcp.is_some() && c.tokens.is_empty() {
            return Err(invalid(
                "listen_tcp needs at least one [[tokens]] entry: TCP clients must authenticate"
                    .into(),
            ));
        }
        if c.require_token && c.tokens.is_empty() {
            return Err(invalid(
                "require_token = true but no [[tokens]] are configured".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, t) in c.tokens.iter().enumerate() {
            if t.token.len() < 16 {
                return Err(invalid(format!(
                    "tokens[{i}].token is shorter than 16 characters; use a long random string \
                     (e.g. `openssl rand -hex 32`)"
                )));
            }
            if !seen.insert(&t.token) {
                return Err(invalid(format!("tokens[{i}].token is listed twice")));
            }
            Scope::new(&t.org_id, &t.project_id)
                .validate()
                .map_err(|e| invalid(format!("tokens[{i}].{e}")))?;
        }
        match (c.store, &c.etcd) {
            (StoreKind::Etcd, None) => {
                return Err(invalid(
                    "store = \"etcd\" needs an [etcd] section with endpoints".into(),
                ))
            }
            (StoreKind::Redb, Some(_)) => {
                return Err(invalid(
                    "[etcd] is set but store = \"redb\" (the default); set store = \"etcd\" \
                     to use it"
                        .into(),
                ))
            }
            (_, Some(e)) => e.validate().map_err(|m| invalid(format!("etcd.{m}")))?,
            (_, None) => {}
        }
        if let Some(b) = &c.bgp {
            b.validate().map_err(|e| invalid(format!("bgp.{e}")))?;
        }
        if c.tunnel.gue_port == 0 {
            return Err(invalid("tunnel.gue_port must be 1-65535".into()));
        }
        Ok(c)
    }

    /// The `[etcd]` section with its defaults filled in (the cache beside `store_path`).
    pub fn etcd_config(&self) -> Option<crate::store::etcd::EtcdConfig> {
        let mut e = self.etcd.clone()?;
        if e.cache_path.is_none() {
            e.cache_path = Some(
                self.store_path
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join("etcd-cache.json"),
            );
        }
        Some(e)
    }

    /// The allocator over `vip_ranges`.
    ///
    /// # Errors
    /// The first range that is not valid CIDR.
    pub fn vip_allocator(&self) -> Result<VipAllocator, crate::vip::RangeError> {
        VipAllocator::new(&self.vip_ranges)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/controlplane.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.vip_ranges.len(), 2);
        assert_eq!(c.tokens.len(), 1);
    }

    #[test]
    fn refusals_say_what_to_do() {
        let p = Path::new("t.toml");
        let e = Config::parse("vip_ranges = [\"10.0.0.1/24\"]", p).unwrap_err();
        assert!(e.to_string().contains("host bits set"), "{e}");
        let e = Config::parse("listen_tcp = \"127.0.0.1:7443\"", p).unwrap_err();
        assert!(e.to_string().contains("[tls]"), "{e}");
        let e = Config::parse(
            "[[tokens]]\ntoken = \"short\"\norg_id = \"a\"\nproject_id = \"b\"\n",
            p,
        )
        .unwrap_err();
        assert!(e.to_string().contains("shorter than 16"), "{e}");
        let e = Config::parse("lisen = \"/x\"", p).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let c = Config::parse("", p).unwrap();
        assert_eq!(c, Config::default());
        let e = Config::parse("store = \"etcd\"", p).unwrap_err();
        assert!(e.to_string().contains("[etcd]"), "{e}");
        let e = Config::parse(
            "store = \"etcd\"\n[etcd]\nendpoints = [\"10.0.0.1:2379\"]",
            p,
        )
        .unwrap_err();
        assert!(e.to_string().contains("etcd.endpoints[0]"), "{e}");
        let e = Config::parse("store = \"zookeeper\"", p).unwrap_err();
        assert!(e.to_string().contains("unknown variant"), "{e}");
        let c = Config::parse(
            "store = \"etcd\"\nstore_path = \"/var/lib/x/s.redb\"\n[etcd]\nendpoints = [\"http://10.0.0.1:2379\"]",
            p,
        )
        .unwrap();
        let e = c.etcd_config().unwrap();
        assert_eq!(e.prefix, "/fiberlb");
        assert_eq!(
            e.cache_path.unwrap(),
            Path::new("/var/lib/x/etcd-cache.json")
        );
    }
}
