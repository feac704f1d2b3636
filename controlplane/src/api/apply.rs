//! `fiberlbctl apply -f services.yaml`: make the caller's org/project match a services file.
//!
//! The file is parsed and validated by
//! [`fiberlb_shared::services::parse_services_without_node_settings`] (so errors
//! carry line numbers), then mapped onto objects by name: load balancers by name, pools by name,
//! backends by (pool, address, port), listeners by (load balancer, port, protocol). The plan
//! creates what is missing, updates what differs and — the file being the whole desired
//! configuration of the scope — deletes what the file does not mention (unless `prune` is off).
//! Applying the same file twice changes nothing the second time.
//!
//! Not carried over: the file's `tunnel` section (node-wide: fiberlbd's `[tunnel]` config), a
//! backend's `healthy` flag (health checks decide), and custom listener names (listeners are
//! named `<org>/<project>/<lb>/<port>/<protocol>`). Health checks are applied by name, before the
//! pools that use them, and deleted (prune) after the pools stop using them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

use fiberlb_shared::model::ServiceSet;
use fiberlb_shared::services::{parse_services_without_node_settings, HealthCheckSpec};

use super::client::Clients;
use crate::model::{admin_state_name, algorithm_name, encap_name, format_mac};
use crate::pb;

mod execute;
pub use execute::{current, execute};

/// Why a file cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    File(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{change}: {:?}: {}", status.code(), status.message())]
    Api {
        change: String,
        status: Box<tonic::Status>,
    },
}

/// A load balancer as the file names it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct WantLb {
    name: String,
    vip: IpAddr,
}

/// The desired objects of a scope, by their natural keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    lbs: BTreeMap<String, IpAddr>,
    /// name → (algorithm, table_size)
    pools: BTreeMap<String, (String, u32)>,
    /// (pool, address, port) → (weight, mac, admin_state)
    backends: BTreeMap<(String, IpAddr, u16), (u32, String, String)>,
    /// (lb, port, protocol) → (mode, encap, pool)
    listeners: BTreeMap<(String, u16, String), (String, String, String)>,
    /// name → the file's health check
    health_checks: BTreeMap<String, HealthCheckSpec>,
    /// pool → health check name (a pool not listed has none)
    pool_checks: BTreeMap<String, String>,
}

/// Parses a services file into the desired objects.
///
/// # Errors
/// [`ApplyError::File`] with the line and column of the problem.
pub fn desired_from_yaml(text: &str) -> Result<(Desired, ServiceSet), ApplyError> {
    let parsed =
        parse_services_without_node_settings(text).map_err(|e| ApplyError::File(e.to_string()))?;
    let set = parsed.set;
    let want_lbs: Vec<WantLb> = parsed
        .load_balancers
        .iter()
        .map(|(name, vip)| WantLb {
            name: name.clone(),
            vip: *vip,
        })
        .collect();
    let mut d = Desired {
        health_checks: parsed
            .health_checks
            .into_iter()
            .map(|h| (h.name.clone(), h))
            .collect(),
        pool_checks: parsed.pool_health_checks,
        ..Desired::default()
    };
    let mut by_vip = HashMap::new();
    for lb in &want_lbs {
        if let Some(other) = by_vip.insert(lb.vip, lb.name.clone()) {
            return Err(ApplyError::File(format!(
                "load balancers {other:?} and {:?} share VIP {}; each load balancer needs its own VIP",
                lb.name, lb.vip
            )));
        }
        d.lbs.insert(lb.name.clone(), lb.vip);
    }
    let pool_names: HashMap<u32, &str> = set
        .pools
        .iter()
        .map(|p| (p.id.0, p.name.as_str()))
        .collect();
    for p in &set.pools {
        d.pools.insert(
            p.name.clone(),
            (algorithm_name(p.algorithm).to_string(), p.table_size),
        );
    }
    for b in &set.backends {
        let pool = pool_names
            .get(&b.pool.0)
            .copied()
            .unwrap_or_default()
            .to_string();
        d.backends.insert(
            (pool, b.address, b.port),
            (
                b.weight,
                b.mac.as_ref().map(format_mac).unwrap_or_default(),
                admin_state_name(b.admin).to_string(),
            ),
        );
    }
    for l in &set.listeners {
        let lb = by_vip.get(&l.vip).cloned().ok_or_else(|| {
            ApplyError::File(format!(
                "listener {:?}: no load balancer has VIP {}",
                l.name, l.vip
            ))
        })?;
        let pool = pool_names
            .get(&l.pool.0)
            .copied()
            .unwrap_or_default()
            .to_string();
        d.listeners.insert(
            (lb, l.port, l.protocol.to_string()),
            (l.mode.to_string(), encap_name(l.encap).to_string(), pool),
        );
    }
    Ok((d, set))
}

/// What the scope holds now (from the List calls).
#[derive(Clone, Debug, Default)]
pub struct Current {
    pub health_checks: Vec<pb::HealthCheck>,
    pub load_balancers: Vec<pb::LoadBalancer>,
    pub listeners: Vec<pb::Listener>,
    pub pools: Vec<pb::Pool>,
    pub backends: Vec<pb::Backend>,
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    DeleteListener {
        id: u32,
        key: String,
    },
    CreateHealthCheck {
        spec: HealthCheckSpec,
    },
    UpdateHealthCheck {
        id: u32,
        spec: HealthCheckSpec,
        was: String,
    },
    DeleteHealthCheck {
        id: u32,
        name: String,
    },
    CreatePool {
        name: String,
        algorithm: String,
        table_size: u32,
        health_check: Option<String>,
    },
    UpdatePool {
        id: u32,
        name: String,
        algorithm: String,
        table_size: u32,
        health_check: Option<String>,
        was: String,
    },
    DeleteBackend {
        id: u32,
        key: String,
    },
    CreateBackend {
        pool: String,
        address: IpAddr,
        port: u16,
        weight: u32,
        mac: String,
        admin: String,
    },
    UpdateBackend {
        id: u32,
        key: String,
        weight: u32,
        mac: String,
        admin: String,
        was: String,
    },
    CreateLb {
        name: String,
        vip: IpAddr,
    },
    CreateListener {
        lb: String,
        port: u16,
        protocol: String,
        mode: String,
        encap: String,
        pool: String,
    },
    UpdateListener {
        id: u32,
        key: String,
        mode: String,
        encap: String,
        pool: String,
        was: String,
    },
    DeleteLb {
        id: u32,
        name: String,
    },
    DeletePool {
        id: u32,
        name: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::DeleteListener { key, .. } => write!(f, "- listener {key}"),
            Change::CreateHealthCheck { spec } => {
                write!(f, "+ health-check {} ({})", spec.name, hc_summary(spec))
            }
            Change::UpdateHealthCheck { spec, was, .. } => {
                write!(
                    f,
                    "~ health-check {}: {was} -> {}",
                    spec.name,
                    hc_summary(spec)
                )
            }
            Change::DeleteHealthCheck { name, .. } => write!(f, "- health-check {name}"),
            Change::CreatePool {
                name,
                algorithm,
                table_size,
                health_check,
            } => {
                write!(
                    f,
                    "+ pool {name} ({algorithm}, table {table_size}{})",
                    hc_suffix(health_check.as_deref())
                )
            }
            Change::UpdatePool {
                name,
                algorithm,
                table_size,
                health_check,
                was,
                ..
            } => {
                write!(
                    f,
                    "~ pool {name}: {was} -> {algorithm}, table {table_size}{}",
                    hc_suffix(health_check.as_deref())
                )
            }
            Change::DeleteBackend { key, .. } => write!(f, "- backend {key}"),
            Change::CreateBackend {
                pool,
                address,
                port,
                weight,
                admin,
                ..
            } => write!(
                f,
                "+ backend {} in pool {pool} (weight {weight}, {admin})",
                fmt_addr(*address, *port)
            ),
            Change::UpdateBackend {
                key,
                weight,
                mac,
                admin,
                was,
                ..
            } => write!(
                f,
                "~ backend {key}: {was} -> weight {weight}, mac {}, {admin}",
                if mac.is_empty() { "-" } else { mac }
            ),
            Change::CreateLb { name, vip } => write!(f, "+ loadbalancer {name} (vip {vip})"),
            Change::CreateListener {
                lb,
                port,
                protocol,
                mode,
                pool,
                ..
            } => {
                write!(
                    f,
                    "+ listener {lb}/{port}/{protocol} ({mode} -> pool {pool})"
                )
            }
            Change::UpdateListener {
                key,
                mode,
                encap,
                pool,
                was,
                ..
            } => {
                write!(
                    f,
                    "~ listener {key}: {was} -> {mode}/{encap} -> pool {pool}"
                )
            }
            Change::DeleteLb { name, .. } => write!(f, "- loadbalancer {name}"),
            Change::DeletePool { name, .. } => write!(f, "- pool {name} (and its backends)"),
        }
    }
}

fn hc_suffix(hc: Option<&str>) -> String {
    hc.map_or_else(String::new, |h| format!(", health check {h}"))
}

/// `http, /healthz, every 2000 ms` (what is set; the rest is the node's default).
fn hc_summary(h: &HealthCheckSpec) -> String {
    let mut parts = vec![h.kind.clone()];
    if !h.http_path.is_empty() {
        parts.push(h.http_path.clone());
    }
    if let Some((lo, hi)) = h.expected_status {
        parts.push(format!("status {lo}-{hi}"));
    }
    for (what, v, unit) in [
        ("every", h.interval_ms, " ms"),
        ("timeout", h.timeout_ms, " ms"),
        ("rise", h.rise, ""),
        ("fall", h.fall, ""),
    ] {
        if v != 0 {
            parts.push(format!("{what} {v}{unit}"));
        }
    }
    parts.join(", ")
}

/// The file form of a stored health check (every field explicit).
pub fn spec_of(h: &pb::HealthCheck) -> HealthCheckSpec {
    let web = h.kind == "http" || h.kind == "https";
    HealthCheckSpec {
        name: h.name.clone(),
        kind: h.kind.clone(),
        interval_ms: h.interval_ms,
        timeout_ms: h.timeout_ms,
        rise: h.rise,
        fall: h.fall,
        http_path: if web {
            h.http_path.clone()
        } else {
            String::new()
        },
        expected_status: web.then_some((h.expected_status_min, h.expected_status_max)),
        udp_send: String::from_utf8_lossy(&h.udp_payload).into_owned(),
        udp_expect: String::from_utf8_lossy(&h.udp_expected_reply).into_owned(),
    }
}

/// Whether the stored check differs from what the file asks. Numbers the file leaves out are
/// the node's `[health_defaults]` and are not compared; a left-out path is "/", a left-out
/// status range 200-399 (the API's defaults).
fn hc_differs(want: &HealthCheckSpec, cur: &pb::HealthCheck) -> bool {
    let num = |w: u32, c: u32| w != 0 && w != c;
    let web = want.kind == "http" || want.kind == "https";
    let path = if want.http_path.is_empty() {
        "/"
    } else {
        want.http_path.as_str()
    };
    want.kind != cur.kind
        || num(want.interval_ms, cur.interval_ms)
        || num(want.timeout_ms, cur.timeout_ms)
        || num(want.rise, cur.rise)
        || num(want.fall, cur.fall)
        || (web && path != cur.http_path)
        || (web
            && want.expected_status.unwrap_or((200, 399))
                != (cur.expected_status_min, cur.expected_status_max))
        || (want.kind == "udp"
            && (want.udp_send.as_bytes() != cur.udp_payload.as_slice()
                || want.udp_expect.as_bytes() != cur.udp_expected_reply.as_slice()))
}

fn hc_message(spec: &HealthCheckSpec, id: u32) -> pb::HealthCheck {
    let (lo, hi) = spec.expected_status.unwrap_or((0, 0));
    pb::HealthCheck {
        id,
        name: spec.name.clone(),
        kind: spec.kind.clone(),
        interval_ms: spec.interval_ms,
        timeout_ms: spec.timeout_ms,
        rise: spec.rise,
        fall: spec.fall,
        http_path: spec.http_path.clone(),
        expected_status_min: lo,
        expected_status_max: hi,
        udp_payload: spec.udp_send.clone().into_bytes(),
        udp_expected_reply: spec.udp_expect.clone().into_bytes(),
        ..Default::default()
    }
}

fn fmt_addr(a: IpAddr, port: u16) -> String {
    match a {
        IpAddr::V4(_) => format!("{a}:{port}"),
        IpAddr::V6(_) => format!("[{a}]:{port}"),
    }
}

/// The changes that make `current` match `desired`, in an order the API accepts.
///
/// # Errors
/// [`ApplyError::Conflict`] when an existing load balancer has another VIP than the file's
/// (VIPs cannot change in place).
pub fn plan(desired: &Desired, current: &Current, prune: bool) -> Result<Vec<Change>, ApplyError> {
    let mut out = Vec::new();
    let lb_by_id: HashMap<u32, &pb::LoadBalancer> =
        current.load_balancers.iter().map(|l| (l.id, l)).collect();
    let pool_by_id: HashMap<u32, &pb::Pool> = current.pools.iter().map(|p| (p.id, p)).collect();
    let lb_by_name: HashMap<&str, &pb::LoadBalancer> = current
        .load_balancers
        .iter()
        .map(|l| (l.name.as_str(), l))
        .collect();
    let pool_by_name: HashMap<&str, &pb::Pool> =
        current.pools.iter().map(|p| (p.name.as_str(), p)).collect();

    for (name, vip) in &desired.lbs {
        if let Some(lb) = lb_by_name.get(name.as_str()) {
            if lb.vip.parse::<IpAddr>().ok() != Some(*vip) {
                return Err(ApplyError::Conflict(format!(
                    "load balancer {name} has VIP {} but the file gives {vip}; a VIP cannot change \
                     in place: delete the load balancer (fiberlbctl lb delete {}) and apply again",
                    lb.vip, lb.id
                )));
            }
        }
    }

    // 1. Listeners that go away (or whose load balancer goes away) first.
    let mut kept_listeners = HashMap::new();
    for l in &current.listeners {
        let lb = lb_by_id
            .get(&l.load_balancer_id)
            .map(|l| l.name.clone())
            .unwrap_or_default();
        let key = (lb.clone(), l.port as u16, l.protocol.clone());
        let label = format!("{lb}/{}/{}", l.port, l.protocol);
        if desired.listeners.contains_key(&key) {
            kept_listeners.insert(key, l);
        } else if prune {
            out.push(Change::DeleteListener {
                id: l.id,
                key: label,
            });
        }
    }
    // 2. Health checks (before the pools that name them), then pools.
    let hc_by_name: HashMap<&str, &pb::HealthCheck> = current
        .health_checks
        .iter()
        .map(|h| (h.name.as_str(), h))
        .collect();
    let hc_name_of: HashMap<u32, &str> = current
        .health_checks
        .iter()
        .map(|h| (h.id, h.name.as_str()))
        .collect();
    for (name, spec) in &desired.health_checks {
        match hc_by_name.get(name.as_str()) {
            None => out.push(Change::CreateHealthCheck { spec: spec.clone() }),
            Some(h) if hc_differs(spec, h) => out.push(Change::UpdateHealthCheck {
                id: h.id,
                spec: spec.clone(),
                was: hc_summary(&spec_of(h)),
            }),
            Some(_) => {}
        }
    }
    for (name, (algorithm, table_size)) in &desired.pools {
        let want_hc = desired.pool_checks.get(name).cloned();
        match pool_by_name.get(name.as_str()) {
            None => out.push(Change::CreatePool {
                name: name.clone(),
                algorithm: algorithm.clone(),
                table_size: *table_size,
                health_check: want_hc,
            }),
            Some(p) => {
                let cur_hc = hc_name_of.get(&p.health_check_id).map(|s| (*s).to_string());
                if p.algorithm != *algorithm || p.table_size != *table_size || cur_hc != want_hc {
                    out.push(Change::UpdatePool {
                        id: p.id,
                        name: name.clone(),
                        algorithm: algorithm.clone(),
                        table_size: *table_size,
                        health_check: want_hc,
                        was: format!(
                            "{}, table {}{}",
                            p.algorithm,
                            p.table_size,
                            hc_suffix(cur_hc.as_deref())
                        ),
                    });
                }
            }
        }
    }
    // 3. Backends.
    let mut seen = std::collections::HashSet::new();
    for b in &current.backends {
        let pool = pool_by_id
            .get(&b.pool_id)
            .map(|p| p.name.clone())
            .unwrap_or_default();
        let Ok(addr) = b.address.parse::<IpAddr>() else {
            continue;
        };
        let key = (pool.clone(), addr, b.port as u16);
        let label = format!("{} in pool {pool}", fmt_addr(addr, b.port as u16));
        match desired.backends.get(&key) {
            Some((weight, mac, admin)) => {
                seen.insert(key.clone());
                if b.weight != *weight || b.mac != *mac || b.admin_state != *admin {
                    out.push(Change::UpdateBackend {
                        id: b.id,
                        key: label,
                        weight: *weight,
                        mac: mac.clone(),
                        admin: admin.clone(),
                        was: format!(
                            "weight {}, mac {}, {}",
                            b.weight,
                            if b.mac.is_empty() { "-" } else { &b.mac },
                            b.admin_state
                        ),
                    });
                }
            }
            // Backends of pools that go away go with their pool.
            None if prune && desired.pools.contains_key(&pool) => out.push(Change::DeleteBackend {
                id: b.id,
                key: label,
            }),
            None => {}
        }
    }
    for ((pool, address, port), (weight, mac, admin)) in &desired.backends {
        if !seen.contains(&(pool.clone(), *address, *port)) {
            out.push(Change::CreateBackend {
                pool: pool.clone(),
                address: *address,
                port: *port,
                weight: *weight,
                mac: mac.clone(),
                admin: admin.clone(),
            });
        }
    }
    // 4. Load balancers, then listeners.
    for (name, vip) in &desired.lbs {
        if !lb_by_name.contains_key(name.as_str()) {
            out.push(Change::CreateLb {
                name: name.clone(),
                vip: *vip,
            });
        }
    }
    for (key, (mode, encap, pool)) in &desired.listeners {
        let (lb, port, protocol) = key;
        match kept_listeners.get(key) {
            None => out.push(Change::CreateListener {
                lb: lb.clone(),
                port: *port,
                protocol: protocol.clone(),
                mode: mode.clone(),
                encap: encap.clone(),
                pool: pool.clone(),
            }),
            Some(l) => {
                let cur_pool = pool_by_id
                    .get(&l.pool_id)
                    .map(|p| p.name.as_str())
                    .unwrap_or("");
                if l.mode != *mode || l.encap != *encap || cur_pool != pool {
                    out.push(Change::UpdateListener {
                        id: l.id,
                        key: format!("{lb}/{port}/{protocol}"),
                        mode: mode.clone(),
                        encap: encap.clone(),
                        pool: pool.clone(),
                        was: format!("{}/{} -> pool {cur_pool}", l.mode, l.encap),
                    });
                }
            }
        }
    }
    // 5. What the file no longer mentions.
    if prune {
        for lb in &current.load_balancers {
            if !desired.lbs.contains_key(&lb.name) {
                out.push(Change::DeleteLb {
                    id: lb.id,
                    name: lb.name.clone(),
                });
            }
        }
        for p in &current.pools {
            if !desired.pools.contains_key(&p.name) {
                out.push(Change::DeletePool {
                    id: p.id,
                    name: p.name.clone(),
                });
            }
        }
        // After the pools that used them changed or went.
        for h in &current.health_checks {
            if !desired.health_checks.contains_key(&h.name) {
                out.push(Change::DeleteHealthCheck {
                    id: h.id,
                    name: h.name.clone(),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
