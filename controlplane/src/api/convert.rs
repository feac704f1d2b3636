//! Model objects as protobuf messages.

use crate::model::{
    admin_state_name, algorithm_name, encap_name, format_mac, health_kind_name, Backend,
    HealthCheck, Listener, LoadBalancer, Pool,
};
use crate::pb;

/// A load balancer as the API shows it.
pub fn load_balancer(lb: &LoadBalancer) -> pb::LoadBalancer {
    pb::LoadBalancer {
        id: lb.id,
        org_id: lb.scope.org_id.clone(),
        project_id: lb.scope.project_id.clone(),
        name: lb.name.clone(),
        vip: lb.vip.to_string(),
        vip_allocated: lb.vip_allocated,
        description: lb.description.clone(),
    }
}

/// A listener as the API shows it.
pub fn listener(l: &Listener) -> pb::Listener {
    pb::Listener {
        id: l.id,
        org_id: l.scope.org_id.clone(),
        project_id: l.scope.project_id.clone(),
        load_balancer_id: l.load_balancer_id,
        port: u32::from(l.port),
        protocol: l.protocol.to_string(),
        mode: l.mode.to_string(),
        encap: encap_name(l.encap).to_string(),
        pool_id: l.pool_id,
    }
}

/// A pool as the API shows it.
pub fn pool(p: &Pool) -> pb::Pool {
    pb::Pool {
        id: p.id,
        org_id: p.scope.org_id.clone(),
        project_id: p.scope.project_id.clone(),
        name: p.name.clone(),
        algorithm: algorithm_name(p.algorithm).to_string(),
        table_size: p.table_size,
        health_check_id: p.health_check_id.unwrap_or(0),
    }
}

/// A backend as the API shows it, with its current health.
pub fn backend(b: &Backend, healthy: bool) -> pb::Backend {
    pb::Backend {
        id: b.id,
        org_id: b.scope.org_id.clone(),
        project_id: b.scope.project_id.clone(),
        pool_id: b.pool_id,
        address: b.address.to_string(),
        port: u32::from(b.port),
        weight: b.weight,
        mac: b.mac.as_ref().map(format_mac).unwrap_or_default(),
        admin_state: admin_state_name(b.admin_state).to_string(),
        healthy,
        next_hop: String::new(),
        lease_id: b.lease.map_or(0, |l| l.id),
        lease_ttl_ms: b.lease.map_or(0, |l| l.ttl_ms),
    }
}

/// A backend's next-hop state for the API: `configured` (the store has its MAC), else by the
/// programmer's view of the neighbour table, `unresolved` or `resolved`; empty when no data
/// plane is attached.
pub fn next_hop_state(b: &Backend, dataplane: Option<&crate::api::DataplaneStatus>) -> String {
    if b.mac.is_some() {
        return "configured".into();
    }
    match dataplane {
        None => String::new(),
        Some(d) if d.unresolved_backends.contains(&b.address) => "unresolved".into(),
        Some(_) => "resolved".into(),
    }
}

/// A health check as the API shows it.
pub fn health_check(h: &HealthCheck) -> pb::HealthCheck {
    pb::HealthCheck {
        id: h.id,
        org_id: h.scope.org_id.clone(),
        project_id: h.scope.project_id.clone(),
        name: h.name.clone(),
        kind: health_kind_name(h.kind).to_string(),
        interval_ms: h.interval_ms,
        timeout_ms: h.timeout_ms,
        rise: h.rise,
        fall: h.fall,
        http_path: h.http_path.clone(),
        expected_status_min: u32::from(h.expected_status.0),
        expected_status_max: u32::from(h.expected_status.1),
        udp_payload: h.udp_payload.clone(),
        udp_expected_reply: h.udp_expected_reply.clone(),
    }
}
