//! fiberlbctl's output: failures with what to do, JSON, tables and the row of each object kind.

use std::net::IpAddr;

use fiberlb_controlplane::pb;
use serde::Serialize;

use super::Output;

/// A failure with what to do about it.
#[derive(Debug)]
pub(crate) struct Failure(pub(crate) String);

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        use tonic::Code;
        let hint = match s.code() {
            Code::Unauthenticated => " (pass a valid --token or set FIBERLB_TOKEN)",
            Code::PermissionDenied => " (the token acts in its own org/project only)",
            // fiberlbd answered, but its store (etcd) did not: the message says so.
            Code::Unavailable if s.message().contains("not saved") => "",
            Code::Unavailable => " (is fiberlbd running? check --server)",
            _ => "",
        };
        Failure(format!("{:?}: {}{hint}", s.code(), s.message()))
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure(format!("{e:#}"))
    }
}

pub(crate) fn parse_endpoint(s: &str, what: &str) -> Result<(IpAddr, u32), Failure> {
    let bad = || {
        Failure(format!(
            "{what} {s:?}: write it as ADDRESS:PORT, e.g. 198.51.100.7:40000 or [2001:db8::7]:40000"
        ))
    };
    let sa: std::net::SocketAddr = s.parse().map_err(|_| bad())?;
    Ok((sa.ip(), u32::from(sa.port())))
}

pub(crate) fn print_json<T: Serialize>(v: &T) -> Result<(), Failure> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Failure(e.to_string()))?;
    out!("{s}");
    Ok(())
}

pub(crate) fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(x) = w.get_mut(i) {
                *x = (*x).max(c.len());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w.get(i).copied().unwrap_or(0)))
            .collect();
        out!("{}", s.join("  ").trim_end());
    };
    line(header.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
}

pub(crate) fn show<T: Serialize>(
    out: Output,
    v: &T,
    header: &[&str],
    rows: Vec<Vec<String>>,
) -> Result<(), Failure> {
    match out {
        Output::Json => print_json(v),
        Output::Table => {
            table(header, rows);
            Ok(())
        }
    }
}

pub(crate) const LB_H: &[&str] = &["ID", "NAME", "VIP", "ALLOCATED", "DESCRIPTION"];
pub(crate) fn lb_row(l: &pb::LoadBalancer) -> Vec<String> {
    vec![
        l.id.to_string(),
        l.name.clone(),
        l.vip.clone(),
        l.vip_allocated.to_string(),
        l.description.clone(),
    ]
}
pub(crate) const LISTENER_H: &[&str] = &["ID", "LB", "PORT", "PROTOCOL", "MODE", "ENCAP", "POOL"];
pub(crate) fn listener_row(l: &pb::Listener) -> Vec<String> {
    vec![
        l.id.to_string(),
        l.load_balancer_id.to_string(),
        l.port.to_string(),
        l.protocol.clone(),
        l.mode.clone(),
        if l.mode == "tunnel" {
            l.encap.clone()
        } else {
            "-".into()
        },
        l.pool_id.to_string(),
    ]
}
pub(crate) const POOL_H: &[&str] = &["ID", "NAME", "ALGORITHM", "TABLE", "HEALTH CHECK"];
pub(crate) fn pool_row(p: &pb::Pool) -> Vec<String> {
    vec![
        p.id.to_string(),
        p.name.clone(),
        p.algorithm.clone(),
        p.table_size.to_string(),
        if p.health_check_id == 0 {
            "-".into()
        } else {
            p.health_check_id.to_string()
        },
    ]
}
pub(crate) const BACKEND_H: &[&str] = &[
    "ID", "POOL", "ADDRESS", "PORT", "WEIGHT", "MAC", "STATE", "HEALTHY", "NEXT-HOP",
];
pub(crate) fn backend_row(b: &pb::Backend) -> Vec<String> {
    vec![
        b.id.to_string(),
        b.pool_id.to_string(),
        b.address.clone(),
        b.port.to_string(),
        b.weight.to_string(),
        if b.mac.is_empty() {
            "-".into()
        } else {
            b.mac.clone()
        },
        b.admin_state.clone(),
        b.healthy.to_string(),
        if b.next_hop.is_empty() {
            "-".into()
        } else {
            b.next_hop.clone()
        },
    ]
}
pub(crate) const HC_H: &[&str] = &[
    "ID", "NAME", "KIND", "INTERVAL", "TIMEOUT", "RISE", "FALL", "DETAIL",
];
pub(crate) fn hc_row(h: &pb::HealthCheck) -> Vec<String> {
    let detail = match h.kind.as_str() {
        "http" | "https" => format!(
            "GET {} expect {}-{}",
            h.http_path, h.expected_status_min, h.expected_status_max
        ),
        "udp" => format!("{} byte payload", h.udp_payload.len()),
        _ => "connect".into(),
    };
    vec![
        h.id.to_string(),
        h.name.clone(),
        h.kind.clone(),
        format!("{}ms", h.interval_ms),
        format!("{}ms", h.timeout_ms),
        h.rise.to_string(),
        h.fall.to_string(),
        detail,
    ]
}

pub(crate) fn deleted(
    out: Output,
    kind: &str,
    id: u32,
    r: pb::DeleteResponse,
) -> Result<(), Failure> {
    match out {
        Output::Json => print_json(&r),
        Output::Table => {
            out!("deleted {kind} {id} (generation {})", r.generation);
            Ok(())
        }
    }
}
