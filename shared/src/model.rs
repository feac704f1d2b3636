//! The declarative service model the data plane forwards by.
//!
//! It is FiberLB's object model flattened to what forwarding needs: listeners (a VIP, a port,
//! a protocol and a forwarding mode), pools (an algorithm and a Maglev table size) and
//! backends (address, port, weight, admin state, health). Every object carries a stable id,
//! assigned by whoever writes the configuration (the control plane from its store, or the
//! services-file loader from each object's identity), so that a flow table entry that names a
//! backend keeps meaning the same backend across configuration snapshots.
//!
//! [`ServiceSet::validate`] is the single place that decides whether a set of objects can be
//! forwarded by; both the services-file loader and the shared-memory transaction path call it.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// An Ethernet MAC address.
pub type Mac = [u8; 6];

/// Largest backend weight accepted (weights are relative; 0 means "no new flows").
pub const MAX_WEIGHT: u32 = 10_000;

/// Default UDP destination port of GUE encapsulation (the port Katran and GLB use by default).
pub const DEFAULT_GUE_PORT: u16 = 6080;

/// Stable id of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ListenerId(pub u32);

/// Stable id of a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PoolId(pub u32);

/// Stable id of a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BackendId(pub u32);

/// L4 protocol of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    pub const fn ip_proto(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    /// The protocol for an IP protocol number, if fiberlb balances it.
    pub const fn from_ip_proto(proto: u8) -> Option<Protocol> {
        match proto {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            _ => None,
        }
    }
}

/// How a listener forwards packets to the chosen backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Direct server return: only the destination MAC is rewritten; backends hold the VIP.
    Dsr,
    /// Encapsulation (IPIP / IP6IP6 or GUE) to the backend; backends decapsulate.
    Tunnel,
    /// Destination NAT to backend address:port; replies are rewritten back to VIP:port.
    Nat,
}

/// Encapsulation of a `tunnel` listener.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encap {
    /// IPIP for IPv4 backends, IP6IP6 for IPv6 backends (IPv4-in-IPv6 / IPv6-in-IPv4 when
    /// the VIP and backend families differ).
    #[default]
    Ipip,
    /// Generic UDP Encapsulation (variant 1: the inner IP packet directly after the UDP header).
    Gue,
}

/// Backend selection algorithm of a pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    /// Maglev over the 5-tuple.
    #[default]
    #[serde(rename = "maglev")]
    Maglev,
    /// Maglev over the 3-tuple (source address, destination address, protocol): every
    /// connection of a client goes to the same backend.
    #[serde(rename = "maglev-source-ip")]
    MaglevSourceIp,
}

/// Operator's admin state of a backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    /// Takes new flows (when healthy) and keeps existing ones.
    #[default]
    Enabled,
    /// Takes no new flows; existing flows continue.
    Drained,
    /// Takes nothing; its flows are re-balanced.
    Disabled,
}

/// The string forms of the model's enums: the one definition of `tcp`/`udp`,
/// `dsr`/`tunnel`/`nat`, `ipip`/`gue`, `maglev`/`maglev-source-ip` and
/// `enabled`/`drained`/`disabled` that the services file, the slots file, the API and the CLI
/// use. Each gets `NAMES` (every variant with its name, in declaration order), `as_str`,
/// `from_name` (exact, lower case) and `Display`. The serde names (`rename`) are checked
/// equal by a test.
macro_rules! string_forms {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every variant with its string form, in declaration order.
            pub const NAMES: &'static [(&'static str, $ty)] = &[$(($name, $ty::$variant)),+];

            /// The string form.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }

            /// The variant named `name` (exact, lower case).
            pub fn from_name(name: &str) -> Option<$ty> {
                Self::NAMES.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_forms!(Protocol { Tcp => "tcp", Udp => "udp" });
string_forms!(Mode { Dsr => "dsr", Tunnel => "tunnel", Nat => "nat" });
string_forms!(Encap { Ipip => "ipip", Gue => "gue" });
string_forms!(Algorithm { Maglev => "maglev", MaglevSourceIp => "maglev-source-ip" });
string_forms!(AdminState { Enabled => "enabled", Drained => "drained", Disabled => "disabled" });

/// Parses a MAC address: `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff` (one separator
/// throughout), two hex digits per byte, either case. The one MAC parser of fiberlb (services
/// file, `dataplane.toml`, the API).
pub fn parse_mac(text: &str) -> Option<Mac> {
    let sep = if text.contains('-') { '-' } else { ':' };
    let mut mac = [0u8; 6];
    let mut parts = text.split(sep);
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff` (lower case).
pub fn format_mac(m: &Mac) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// What the data plane may send to a backend, derived from weight, admin state and health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Usability {
    /// New and existing flows.
    Active,
    /// Existing flows only (drained, or weight 0).
    ExistingOnly,
    /// Nothing.
    Unusable,
}

/// A listener: packets to `vip:port/protocol` are balanced over `pool` by `mode`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub id: ListenerId,
    /// Human name, for counters and errors (`<loadbalancer>/<port>/<protocol>` by default).
    pub name: String,
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub mode: Mode,
    pub encap: Encap,
    pub pool: PoolId,
}

/// A pool of backends with its balancing algorithm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    pub id: PoolId,
    pub name: String,
    pub algorithm: Algorithm,
    /// Maglev lookup table size; must be prime.
    pub table_size: u32,
}

/// A backend, member of exactly one pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub id: BackendId,
    pub pool: PoolId,
    pub address: IpAddr,
    /// Destination port after `nat`; ignored by `dsr` and `tunnel`, which keep the VIP port.
    pub port: u16,
    pub weight: u32,
    /// MAC of the backend (dsr) or of the next hop towards it (tunnel, nat). When absent the
    /// data plane uses its configured gateway MAC.
    pub mac: Option<Mac>,
    pub admin: AdminState,
    /// Result of health checks; `true` when no health check is configured.
    pub healthy: bool,
}

impl Backend {
    /// What the data plane may send to this backend.
    pub fn usability(&self) -> Usability {
        match (self.admin, self.healthy) {
            (AdminState::Disabled, _) | (_, false) => Usability::Unusable,
            (AdminState::Drained, true) => Usability::ExistingOnly,
            (AdminState::Enabled, true) if self.weight == 0 => Usability::ExistingOnly,
            (AdminState::Enabled, true) => Usability::Active,
        }
    }
}

/// Node-wide tunnel settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelSettings {
    /// Outer source address for IPv4 outer headers.
    pub source_v4: Option<Ipv4Addr>,
    /// Outer source address for IPv6 outer headers.
    pub source_v6: Option<Ipv6Addr>,
    /// UDP destination port of GUE.
    pub gue_port: u16,
}

impl Default for TunnelSettings {
    fn default() -> Self {
        TunnelSettings {
            source_v4: None,
            source_v6: None,
            gue_port: DEFAULT_GUE_PORT,
        }
    }
}

/// A complete, declarative configuration of the data plane.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceSet {
    pub listeners: Vec<Listener>,
    pub pools: Vec<Pool>,
    pub backends: Vec<Backend>,
    pub tunnel: TunnelSettings,
}

/// Why a [`ServiceSet`] cannot be forwarded by. Each message names the object and the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("duplicate {kind} id {id}")]
    DuplicateId { kind: &'static str, id: u32 },
    #[error("listener {listener:?}: port must be 1-65535, got 0")]
    ListenerPortZero { listener: String },
    #[error("listener {listener:?}: VIP {vip} is not a usable unicast address")]
    BadVip { listener: String, vip: IpAddr },
    #[error("listener {listener:?}: pool id {pool} does not exist")]
    UnknownPool { listener: String, pool: u32 },
    #[error(
        "listener {listener:?}: {vip} port {port}/{protocol} is already used by listener {other:?}"
    )]
    DuplicateListener {
        listener: String,
        other: String,
        vip: IpAddr,
        port: u16,
        protocol: Protocol,
    },
    #[error("listener {listener:?}: tunnel mode to {family} backends needs a tunnel source address (tunnel.source_{family})")]
    MissingTunnelSource {
        listener: String,
        family: &'static str,
    },
    #[error("listener {listener:?}: dsr mode needs backends of the VIP's address family; backend {backend} is not")]
    DsrFamilyMismatch { listener: String, backend: IpAddr },
    #[error("listener {listener:?}: nat mode needs backends of the VIP's address family; backend {backend} is not")]
    NatFamilyMismatch { listener: String, backend: IpAddr },
    #[error("nat backend {address} port {port}/{protocol} is reached through two listeners ({first:?} and {second:?}); replies could not be mapped back to one VIP")]
    AmbiguousNatReturn {
        address: IpAddr,
        port: u16,
        protocol: Protocol,
        first: String,
        second: String,
    },
    #[error("pool {pool:?}: {reason}")]
    BadTableSize { pool: String, reason: String },
    #[error("pool {pool:?}: duplicate pool name")]
    DuplicatePoolName { pool: String },
    #[error("backend {address}:{port}: pool id {pool} does not exist")]
    BackendUnknownPool {
        address: IpAddr,
        port: u16,
        pool: u32,
    },
    #[error("backend {address}:{port}: weight {weight} out of range 0-{max}", max = MAX_WEIGHT)]
    WeightOutOfRange {
        address: IpAddr,
        port: u16,
        weight: u32,
    },
    #[error("backend {address}:{port}: port must be 1-65535, got 0")]
    BackendPortZero { address: IpAddr, port: u16 },
    #[error("backend {address}:{port}: not a usable unicast address")]
    BadBackendAddress { address: IpAddr, port: u16 },
    #[error("backend {address}:{port} appears twice in pool {pool:?}")]
    DuplicateBackend {
        address: IpAddr,
        port: u16,
        pool: String,
    },
    #[error("tunnel.gue_port must be 1-65535, got 0")]
    GuePortZero,
}

/// True for an address a VIP or backend may have: not unspecified, multicast or broadcast.
pub fn is_usable_unicast(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}

impl ServiceSet {
    /// Checks everything forwarding relies on. Returns the first problem found.
    ///
    /// # Errors
    /// A [`ModelError`] naming the object and the field at fault.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.tunnel.gue_port == 0 {
            return Err(ModelError::GuePortZero);
        }
        let mut pools: HashMap<PoolId, &Pool> = HashMap::new();
        let mut pool_names = HashSet::new();
        for p in &self.pools {
            if pools.insert(p.id, p).is_some() {
                return Err(ModelError::DuplicateId {
                    kind: "pool",
                    id: p.id.0,
                });
            }
            if !pool_names.insert(p.name.as_str()) {
                return Err(ModelError::DuplicatePoolName {
                    pool: p.name.clone(),
                });
            }
            crate::maglev::check_table_size(p.table_size).map_err(|e| {
                ModelError::BadTableSize {
                    pool: p.name.clone(),
                    reason: e.to_string(),
                }
            })?;
        }
        let mut backend_ids = HashSet::new();
        let mut members: HashMap<PoolId, Vec<&Backend>> = HashMap::new();
        let mut seen_in_pool = HashSet::new();
        for b in &self.backends {
            if !backend_ids.insert(b.id) {
                return Err(ModelError::DuplicateId {
                    kind: "backend",
                    id: b.id.0,
                });
            }
            let Some(pool) = pools.get(&b.pool) else {
                return Err(ModelError::BackendUnknownPool {
                    address: b.address,
                    port: b.port,
                    pool: b.pool.0,
                });
            };
            if b.weight > MAX_WEIGHT {
                return Err(ModelError::WeightOutOfRange {
                    address: b.address,
                    port: b.port,
                    weight: b.weight,
                });
            }
            if b.port == 0 {
                return Err(ModelError::BackendPortZero {
                    address: b.address,
                    port: b.port,
                });
            }
            if !is_usable_unicast(b.address) {
                return Err(ModelError::BadBackendAddress {
                    address: b.address,
                    port: b.port,
                });
            }
            if !seen_in_pool.insert((b.pool, b.address, b.port)) {
                return Err(ModelError::DuplicateBackend {
                    address: b.address,
                    port: b.port,
                    pool: pool.name.clone(),
                });
            }
            members.entry(b.pool).or_default().push(b);
        }
        let mut listener_ids = HashSet::new();
        let mut keys: HashMap<(IpAddr, u16, Protocol), &str> = HashMap::new();
        let mut nat_returns: HashMap<(IpAddr, u16, Protocol), &str> = HashMap::new();
        for l in &self.listeners {
            if !listener_ids.insert(l.id) {
                return Err(ModelError::DuplicateId {
                    kind: "listener",
                    id: l.id.0,
                });
            }
            if l.port == 0 {
                return Err(ModelError::ListenerPortZero {
                    listener: l.name.clone(),
                });
            }
            if !is_usable_unicast(l.vip) {
                return Err(ModelError::BadVip {
                    listener: l.name.clone(),
                    vip: l.vip,
                });
            }
            if !pools.contains_key(&l.pool) {
                return Err(ModelError::UnknownPool {
                    listener: l.name.clone(),
                    pool: l.pool.0,
                });
            }
            if let Some(other) = keys.insert((l.vip, l.port, l.protocol), &l.name) {
                return Err(ModelError::DuplicateListener {
                    listener: l.name.clone(),
                    other: other.to_string(),
                    vip: l.vip,
                    port: l.port,
                    protocol: l.protocol,
                });
            }
            let backends = members.get(&l.pool).map(Vec::as_slice).unwrap_or(&[]);
            for b in backends {
                match l.mode {
                    Mode::Dsr if b.address.is_ipv4() != l.vip.is_ipv4() => {
                        return Err(ModelError::DsrFamilyMismatch {
                            listener: l.name.clone(),
                            backend: b.address,
                        })
                    }
                    Mode::Nat if b.address.is_ipv4() != l.vip.is_ipv4() => {
                        return Err(ModelError::NatFamilyMismatch {
                            listener: l.name.clone(),
                            backend: b.address,
                        })
                    }
                    Mode::Tunnel if b.address.is_ipv4() && self.tunnel.source_v4.is_none() => {
                        return Err(ModelError::MissingTunnelSource {
                            listener: l.name.clone(),
                            family: "v4",
                        })
                    }
                    Mode::Tunnel if b.address.is_ipv6() && self.tunnel.source_v6.is_none() => {
                        return Err(ModelError::MissingTunnelSource {
                            listener: l.name.clone(),
                            family: "v6",
                        })
                    }
                    Mode::Nat => {
                        let key = (b.address, b.port, l.protocol);
                        if let Some(first) = nat_returns.insert(key, &l.name) {
                            return Err(ModelError::AmbiguousNatReturn {
                                address: b.address,
                                port: b.port,
                                protocol: l.protocol,
                                first: first.to_string(),
                                second: l.name.clone(),
                            });
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_name<T: Serialize>(v: T) -> String {
        serde_json::to_value(v)
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The serde names (the slots file, JSON output) are the string forms.
    #[test]
    fn serde_names_are_the_string_forms() {
        fn check<T: Copy + Serialize + fmt::Display + PartialEq + fmt::Debug>(
            names: &[(&str, T)],
            from: fn(&str) -> Option<T>,
        ) {
            for &(n, v) in names {
                assert_eq!(serde_name(v), n);
                assert_eq!(v.to_string(), n);
                assert_eq!(from(n), Some(v));
            }
            assert_eq!(from("nope"), None);
        }
        check(Protocol::NAMES, Protocol::from_name);
        check(Mode::NAMES, Mode::from_name);
        check(Encap::NAMES, Encap::from_name);
        check(Algorithm::NAMES, Algorithm::from_name);
        check(AdminState::NAMES, AdminState::from_name);
        assert_eq!(Algorithm::MaglevSourceIp.as_str(), "maglev-source-ip");
    }

    #[test]
    fn mac_rule() {
        assert_eq!(parse_mac("02:00:00:00:01:ff"), Some([2, 0, 0, 0, 1, 0xff]));
        assert_eq!(parse_mac("02-00-00-00-01-FF"), Some([2, 0, 0, 0, 1, 0xff]));
        for bad in [
            "",
            "02:00:00:00:01",
            "02:00:00:00:01:ff:00",
            "2:00:00:00:01:ff",
            "02:00:00:00:01:+f",
            "02-00:00:00:01:ff",
            "02:00:00:00:01:fg",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
        assert_eq!(format_mac(&[2, 0xaa, 0, 0, 1, 0xff]), "02:aa:00:00:01:ff");
    }
}
