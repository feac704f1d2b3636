//! The control plane's object model (FiberLB's): load balancers, listeners, pools, backends and
//! health checks, each scoped to an org and a project, with validation and the compilation into
//! the flattened [`ServiceSet`] the data plane forwards by.
//!
//! Ids are `u32`, allocated by the store per kind, never reused, and stable: a listener's,
//! pool's or backend's id is the data plane's `ListenerId` / `PoolId` / `BackendId`, so flows
//! keep pointing at the same backend across configuration changes and restarts.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

use fiberlb_shared::maglev::{check_table_size, DEFAULT_TABLE_SIZE};
use fiberlb_shared::model::{
    self as dp, is_usable_unicast, AdminState, Algorithm, BackendId, Encap, ListenerId, Mac, Mode,
    PoolId, Protocol, ServiceSet, MAX_WEIGHT,
};
use serde::{Deserialize, Serialize};

/// Longest name, org id or project id accepted.
pub const MAX_NAME_LEN: usize = 128;
/// Longest description accepted.
pub const MAX_DESCRIPTION_LEN: usize = 1024;

/// The tenant an object belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Scope {
    pub org_id: String,
    pub project_id: String,
}

impl Scope {
    /// A scope from its two parts.
    pub fn new(org_id: impl Into<String>, project_id: impl Into<String>) -> Self {
        Scope {
            org_id: org_id.into(),
            project_id: project_id.into(),
        }
    }

    /// Checks both parts are non-empty identifiers.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming `org_id` or `project_id`.
    pub fn validate(&self) -> Result<(), Error> {
        check_ident("org_id", &self.org_id)?;
        check_ident("project_id", &self.project_id)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.org_id, self.project_id)
    }
}

/// A VIP owned by a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancer {
    pub id: u32,
    pub scope: Scope,
    pub name: String,
    pub vip: IpAddr,
    /// Allocated from a configured range (as opposed to given explicitly).
    pub vip_allocated: bool,
    pub description: String,
}

/// A VIP port and protocol, forwarded by `mode` to `pool_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    pub id: u32,
    pub scope: Scope,
    pub load_balancer_id: u32,
    pub port: u16,
    pub protocol: Protocol,
    pub mode: Mode,
    pub encap: Encap,
    pub pool_id: u32,
}

/// A set of backends and how a flow picks one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub id: u32,
    pub scope: Scope,
    pub name: String,
    pub algorithm: Algorithm,
    pub table_size: u32,
    pub health_check_id: Option<u32>,
}

/// A server behind a pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    pub id: u32,
    pub scope: Scope,
    pub pool_id: u32,
    pub address: IpAddr,
    pub port: u16,
    pub weight: u32,
    pub mac: Option<Mac>,
    pub admin_state: AdminState,
    /// A registered backend: it exists while its lease is kept alive (`BackendService.Register`
    /// / `KeepAlive`) and is deleted when the lease expires. `None`: a permanent backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
}

/// The lease of a registered backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The lease id (etcd's lease id with `store = "etcd"`, fiberlbd's own otherwise).
    pub id: i64,
    /// Time to live after the last keep-alive, in milliseconds.
    pub ttl_ms: u64,
}

/// Kind of health check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthCheckKind {
    Tcp,
    Http,
    Https,
    Udp,
}

/// How a pool's backends are probed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub id: u32,
    pub scope: Scope,
    pub name: String,
    pub kind: HealthCheckKind,
    pub interval_ms: u32,
    pub timeout_ms: u32,
    /// Consecutive successes that mark a down backend up.
    pub rise: u32,
    /// Consecutive failures that mark an up backend down.
    pub fall: u32,
    /// HTTP(S): the path requested.
    pub http_path: String,
    /// HTTP(S): the accepted status range, inclusive.
    pub expected_status: (u16, u16),
    /// UDP: the datagram sent.
    pub udp_payload: Vec<u8>,
    /// UDP: the reply expected (empty: any reply).
    pub udp_expected_reply: Vec<u8>,
}

/// Every object of every tenant: what the store persists.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub load_balancers: BTreeMap<u32, LoadBalancer>,
    pub listeners: BTreeMap<u32, Listener>,
    pub pools: BTreeMap<u32, Pool>,
    pub backends: BTreeMap<u32, Backend>,
    pub health_checks: BTreeMap<u32, HealthCheck>,
}

/// What an API request can get wrong. Each maps onto one gRPC status code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A field is malformed or out of range.
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    /// The object does not exist (in the caller's scope).
    #[error("{kind} {id} not found in this org/project; list them with `fiberlbctl {kind} list`")]
    NotFound { kind: &'static str, id: String },
    /// A name, VIP or address:port is already taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// The change conflicts with other objects (e.g. deleting a pool a listener uses).
    #[error("{0}")]
    FailedPrecondition(String),
}

impl Error {
    /// An [`Error::InvalidArgument`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }

    /// An [`Error::NotFound`].
    pub fn not_found(kind: &'static str, id: u32) -> Self {
        Error::NotFound {
            kind,
            id: id.to_string(),
        }
    }
}

fn check_ident(field: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(Error::invalid(
            field,
            format!("longer than {MAX_NAME_LEN} bytes"),
        ));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(Error::invalid(
            field,
            format!("{value:?} may only hold letters, digits, '.', '_' and '-'"),
        ));
    }
    Ok(())
}

/// Checks a name: 1-128 bytes of letters, digits, '.', '_' and '-'.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `field`.
pub fn check_name(field: &str, value: &str) -> Result<(), Error> {
    check_ident(field, value)
}

/// Parses an IP address field.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `field` when it is not an address or not unicast.
pub fn parse_address(field: &str, value: &str) -> Result<IpAddr, Error> {
    let addr: IpAddr = value.trim().parse().map_err(|_| {
        Error::invalid(
            field,
            format!("{value:?} is not an IPv4 or IPv6 address (e.g. 10.0.0.1 or fd00::1)"),
        )
    })?;
    if !is_usable_unicast(addr) {
        return Err(Error::invalid(
            field,
            format!("{addr} is not a unicast address (unspecified, multicast or broadcast)"),
        ));
    }
    Ok(addr)
}

/// Checks a port field: 1-65535.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `field`.
pub fn parse_port(field: &str, value: u32) -> Result<u16, Error> {
    match u16::try_from(value) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(Error::invalid(
            field,
            format!("must be 1-65535, got {value}"),
        )),
    }
}

/// Parses a protocol field: `tcp` or `udp`.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `field`.
pub fn parse_protocol(field: &str, value: &str) -> Result<Protocol, Error> {
    match Protocol::from_name(&value.to_ascii_lowercase()) {
        Some(p) => Ok(p),
        None => Err(Error::invalid(
            field,
            format!("unknown protocol {value:?}; use tcp or udp"),
        )),
    }
}

/// Parses a forwarding mode field: `dsr`, `tunnel` or `nat`.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `field`.
pub fn parse_mode(field: &str, value: &str) -> Result<Mode, Error> {
    match Mode::from_name(&value.to_ascii_lowercase()) {
        Some(m) => Ok(m),
        None => Err(Error::invalid(
            field,
            format!("unknown mode {value:?}; use dsr, tunnel or nat"),
        )),
    }
}

/// Parses an encapsulation field: `ipip` (also the empty default) or `gue`.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `field`.
pub fn parse_encap(field: &str, value: &str) -> Result<Encap, Error> {
    match value.to_ascii_lowercase().as_str() {
        "" => Ok(Encap::Ipip),
        v => Encap::from_name(v).ok_or_else(|| {
            Error::invalid(
                field,
                format!("unknown encapsulation {value:?}; use ipip or gue"),
            )
        }),
    }
}

/// Parses an algorithm field: `maglev` (also the empty default) or `maglev-source-ip`.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `field`.
pub fn parse_algorithm(field: &str, value: &str) -> Result<Algorithm, Error> {
    match value.to_ascii_lowercase().as_str() {
        "" => Ok(Algorithm::Maglev),
        v => Algorithm::from_name(v).ok_or_else(|| {
            Error::invalid(
                field,
                format!("unknown algorithm {value:?}; use maglev or maglev-source-ip"),
            )
        }),
    }
}

/// Checks a Maglev table size (0 means the default, 65537).
///
/// # Errors
/// [`Error::InvalidArgument`] naming `field` for a size that is not prime or out of range.
pub fn parse_table_size(field: &str, value: u32) -> Result<u32, Error> {
    if value == 0 {
        return Ok(DEFAULT_TABLE_SIZE);
    }
    check_table_size(value).map_err(|e| Error::invalid(field, e.to_string()))?;
    Ok(value)
}

/// Checks a weight: 0-10000.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `field`.
pub fn parse_weight(field: &str, value: u32) -> Result<u32, Error> {
    if value > MAX_WEIGHT {
        return Err(Error::invalid(
            field,
            format!("{value} out of range 0-{MAX_WEIGHT}"),
        ));
    }
    Ok(value)
}

/// Parses a MAC field (`aa:bb:cc:dd:ee:ff`, `-` also accepted); empty means none.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `field`.
pub fn parse_mac(field: &str, value: &str) -> Result<Option<Mac>, Error> {
    if value.is_empty() {
        return Ok(None);
    }
    fiberlb_shared::model::parse_mac(value)
        .map(Some)
        .ok_or_else(|| {
            Error::invalid(
                field,
                format!("{value:?} is not a MAC address; write it as 02:00:00:00:01:01"),
            )
        })
}

pub use fiberlb_shared::model::format_mac;

/// Parses an admin state field: `enabled` (also the empty default), `drained` or `disabled`.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `field`.
pub fn parse_admin_state(field: &str, value: &str) -> Result<AdminState, Error> {
    match value.to_ascii_lowercase().as_str() {
        "" => Ok(AdminState::Enabled),
        v => AdminState::from_name(v).ok_or_else(|| {
            Error::invalid(
                field,
                format!("unknown admin state {value:?}; use enabled, drained or disabled"),
            )
        }),
    }
}

/// The lowercase name of an admin state, as the API spells it.
pub fn admin_state_name(a: AdminState) -> &'static str {
    a.as_str()
}

/// The API spelling of an algorithm.
pub fn algorithm_name(a: Algorithm) -> &'static str {
    a.as_str()
}

/// The API spelling of an encapsulation.
pub fn encap_name(e: Encap) -> &'static str {
    e.as_str()
}

/// Parses a health check kind: `tcp`, `http`, `https` or `udp`.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `field`.
pub fn parse_health_kind(field: &str, value: &str) -> Result<HealthCheckKind, Error> {
    match value.to_ascii_lowercase().as_str() {
        "tcp" => Ok(HealthCheckKind::Tcp),
        "http" => Ok(HealthCheckKind::Http),
        "https" => Ok(HealthCheckKind::Https),
        "udp" => Ok(HealthCheckKind::Udp),
        _ => Err(Error::invalid(
            field,
            format!("unknown health check kind {value:?}; use tcp, http, https or udp"),
        )),
    }
}

/// The API spelling of a health check kind.
pub fn health_kind_name(k: HealthCheckKind) -> &'static str {
    match k {
        HealthCheckKind::Tcp => "tcp",
        HealthCheckKind::Http => "http",
        HealthCheckKind::Https => "https",
        HealthCheckKind::Udp => "udp",
    }
}

impl HealthCheck {
    /// Checks the fields' ranges and their consistency with the kind.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the field.
    pub fn validate(&self) -> Result<(), Error> {
        check_name("name", &self.name)?;
        if !(10..=3_600_000).contains(&self.interval_ms) {
            return Err(Error::invalid(
                "interval_ms",
                format!("must be 10-3600000 ms, got {}", self.interval_ms),
            ));
        }
        if self.timeout_ms == 0 || self.timeout_ms > self.interval_ms {
            return Err(Error::invalid(
                "timeout_ms",
                format!(
                    "must be 1..=interval_ms ({}), got {}",
                    self.interval_ms, self.timeout_ms
                ),
            ));
        }
        for (field, v) in [("rise", self.rise), ("fall", self.fall)] {
            if !(1..=100).contains(&v) {
                return Err(Error::invalid(field, format!("must be 1-100, got {v}")));
            }
        }
        match self.kind {
            HealthCheckKind::Http | HealthCheckKind::Https => {
                if !self.http_path.starts_with('/') || self.http_path.contains(char::is_whitespace)
                {
                    return Err(Error::invalid(
                        "http_path",
                        format!(
                            "{:?} must start with '/' and hold no spaces",
                            self.http_path
                        ),
                    ));
                }
                let (lo, hi) = self.expected_status;
                if !(100..=599).contains(&lo) || !(lo..=599).contains(&hi) {
                    return Err(Error::invalid(
                        "expected_status_min",
                        format!("status range {lo}-{hi} must lie within 100-599, min <= max"),
                    ));
                }
            }
            HealthCheckKind::Udp => {
                if self.udp_payload.is_empty() || self.udp_payload.len() > 1400 {
                    return Err(Error::invalid(
                        "udp_payload",
                        "must hold 1-1400 bytes (the datagram sent to the backend)",
                    ));
                }
                if self.udp_expected_reply.len() > 1400 {
                    return Err(Error::invalid(
                        "udp_expected_reply",
                        "must hold at most 1400 bytes",
                    ));
                }
            }
            HealthCheckKind::Tcp => {}
        }
        Ok(())
    }
}

/// Name of a listener in the compiled set and in counters: `<org>/<project>/<lb>/<port>/<proto>`.
pub fn listener_name(lb: &LoadBalancer, l: &Listener) -> String {
    format!(
        "{}/{}/{}/{}/{}",
        l.scope.org_id, l.scope.project_id, lb.name, l.port, l.protocol
    )
}

/// Name of a pool in the compiled set: `<org>/<project>/<pool>` (unique across tenants).
pub fn pool_name(p: &Pool) -> String {
    format!("{}/{}/{}", p.scope.org_id, p.scope.project_id, p.name)
}

/// Flattens every tenant's objects into the data plane's [`ServiceSet`] (tunnel settings at
/// their defaults: the caller sets the node's). `health` holds health-check results; a backend
/// missing from it counts as healthy (no check configured, or none run yet).
///
/// A listener whose load balancer or pool is missing (which the store never allows) is left
/// out rather than producing an invalid set.
pub fn compile(state: &State, health: &HashMap<BackendId, bool>) -> ServiceSet {
    let listeners = state
        .listeners
        .values()
        .filter(|l| state.pools.contains_key(&l.pool_id))
        .filter_map(|l| {
            let lb = state.load_balancers.get(&l.load_balancer_id)?;
            Some(dp::Listener {
                id: ListenerId(l.id),
                name: listener_name(lb, l),
                vip: lb.vip,
                port: l.port,
                protocol: l.protocol,
                mode: l.mode,
                encap: l.encap,
                pool: PoolId(l.pool_id),
            })
        })
        .collect();
    let pools = state
        .pools
        .values()
        .map(|p| dp::Pool {
            id: PoolId(p.id),
            name: pool_name(p),
            algorithm: p.algorithm,
            table_size: p.table_size,
        })
        .collect();
    let backends = state
        .backends
        .values()
        .filter(|b| state.pools.contains_key(&b.pool_id))
        .map(|b| dp::Backend {
            id: BackendId(b.id),
            pool: PoolId(b.pool_id),
            address: b.address,
            port: b.port,
            weight: b.weight,
            mac: b.mac,
            admin: b.admin_state,
            healthy: health.get(&BackendId(b.id)).copied().unwrap_or(true),
        })
        .collect();
    ServiceSet {
        listeners,
        pools,
        backends,
        tunnel: Default::default(),
    }
}

impl State {
    /// Checks the references and uniqueness rules between objects (the per-field checks happen
    /// when requests are parsed). Called by the store before every commit.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] for a duplicate name, VIP, backend or listener port;
    /// [`Error::FailedPrecondition`] for a reference across tenants or to nothing.
    pub fn check(&self) -> Result<(), Error> {
        let mut names = HashMap::new();
        let mut vips = HashMap::new();
        for lb in self.load_balancers.values() {
            if let Some(other) = names.insert((&lb.scope, &lb.name), lb.id) {
                return Err(Error::AlreadyExists(format!(
                    "name: a load balancer named {:?} already exists (id {other}); pick another name",
                    lb.name
                )));
            }
            if let Some(other) = vips.insert(lb.vip, lb.id) {
                return Err(Error::AlreadyExists(format!(
                    "vip: {} is already used by load balancer {other}; leave vip empty to allocate one",
                    lb.vip
                )));
            }
        }
        let mut names = HashMap::new();
        for p in self.pools.values() {
            if let Some(other) = names.insert((&p.scope, &p.name), p.id) {
                return Err(Error::AlreadyExists(format!(
                    "name: a pool named {:?} already exists (id {other}); pick another name",
                    p.name
                )));
            }
            if let Some(hc) = p.health_check_id {
                match self.health_checks.get(&hc) {
                    Some(h) if h.scope == p.scope => {}
                    _ => return Err(Error::not_found("health-check", hc)),
                }
            }
        }
        let mut names = HashMap::new();
        for h in self.health_checks.values() {
            if let Some(other) = names.insert((&h.scope, &h.name), h.id) {
                return Err(Error::AlreadyExists(format!(
                    "name: a health check named {:?} already exists (id {other}); pick another name",
                    h.name
                )));
            }
        }
        let mut members = HashMap::new();
        for b in self.backends.values() {
            match self.pools.get(&b.pool_id) {
                Some(p) if p.scope == b.scope => {}
                _ => return Err(Error::not_found("pool", b.pool_id)),
            }
            if let Some(other) = members.insert((b.pool_id, b.address, b.port), b.id) {
                return Err(Error::AlreadyExists(format!(
                    "address: backend {}:{} is already in pool {} (backend {other})",
                    b.address, b.port, b.pool_id
                )));
            }
        }
        let mut ports = HashMap::new();
        for l in self.listeners.values() {
            match self.load_balancers.get(&l.load_balancer_id) {
                Some(lb) if lb.scope == l.scope => {}
                _ => return Err(Error::not_found("load-balancer", l.load_balancer_id)),
            }
            match self.pools.get(&l.pool_id) {
                Some(p) if p.scope == l.scope => {}
                _ => return Err(Error::not_found("pool", l.pool_id)),
            }
            if let Some(other) = ports.insert((l.load_balancer_id, l.port, l.protocol), l.id) {
                return Err(Error::AlreadyExists(format!(
                    "port: load balancer {} already has a listener on {}/{} (listener {other})",
                    l.load_balancer_id, l.port, l.protocol
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
