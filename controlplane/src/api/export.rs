//! `fiberlbctl export`: the running configuration of an org/project as a services file that
//! `fiberlbctl apply -f` takes back with "no changes" (round-trip tested in
//! `controlplane/tests/fiberlbctl.rs`).
//!
//! Written: load balancers (name, VIP) with their listeners (port, protocol, mode, encap, pool),
//! pools (name, algorithm, table size) with their backends (address, port, weight, MAC, admin
//! state), health checks (every field explicit) and which pool uses which. Not written, as
//! `apply` does not carry them: the node-wide `tunnel` section and health results.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::apply::{spec_of, Current};

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The services file for `c`; `origin` goes into the header comment.
pub fn to_services_yaml(c: &Current, origin: &str) -> String {
    let mut out = format!(
        "# fiberlb services file exported by `fiberlbctl export` from {origin}.\n\
         # Apply it with `fiberlbctl apply -f FILE` (the same objects: \"no changes\").\n"
    );
    let pool_names: HashMap<u32, &str> = c.pools.iter().map(|p| (p.id, p.name.as_str())).collect();
    let mut lbs: Vec<_> = c.load_balancers.iter().collect();
    lbs.sort_by(|a, b| a.name.cmp(&b.name));
    if lbs.is_empty() {
        out.push_str("loadbalancers: []\n");
    } else {
        out.push_str("loadbalancers:\n");
    }
    for lb in lbs {
        let _ = writeln!(out, "  - name: {}\n    vip: {}", q(&lb.name), q(&lb.vip));
        let mut ls: Vec<_> = c
            .listeners
            .iter()
            .filter(|l| l.load_balancer_id == lb.id)
            .collect();
        ls.sort_by(|a, b| (a.port, &a.protocol).cmp(&(b.port, &b.protocol)));
        if ls.is_empty() {
            out.push_str("    listeners: []\n");
            continue;
        }
        out.push_str("    listeners:\n");
        for l in ls {
            let pool = pool_names.get(&l.pool_id).copied().unwrap_or("");
            let _ = write!(
                out,
                "      - {{port: {}, protocol: {}, mode: {}",
                l.port, l.protocol, l.mode
            );
            if l.mode == "tunnel" && !l.encap.is_empty() {
                let _ = write!(out, ", encap: {}", l.encap);
            }
            let _ = writeln!(out, ", pool: {}}}", q(pool));
        }
    }
    let hc_names: HashMap<u32, &str> = c
        .health_checks
        .iter()
        .map(|h| (h.id, h.name.as_str()))
        .collect();
    let mut hcs: Vec<_> = c.health_checks.iter().map(spec_of).collect();
    hcs.sort_by(|a, b| a.name.cmp(&b.name));
    if !hcs.is_empty() {
        out.push_str("\nhealth_checks:\n");
    }
    for h in hcs {
        let _ = write!(
            out,
            "  - {{name: {}, kind: {}, interval_ms: {}, timeout_ms: {}, rise: {}, fall: {}",
            q(&h.name),
            h.kind,
            h.interval_ms,
            h.timeout_ms,
            h.rise,
            h.fall
        );
        if !h.http_path.is_empty() {
            let _ = write!(out, ", path: {}", q(&h.http_path));
        }
        if let Some((lo, hi)) = h.expected_status {
            let _ = write!(out, ", expect_status: \"{lo}-{hi}\"");
        }
        if !h.udp_send.is_empty() {
            let _ = write!(out, ", send: {}", q(&h.udp_send));
        }
        if !h.udp_expect.is_empty() {
            let _ = write!(out, ", expect: {}", q(&h.udp_expect));
        }
        out.push_str("}\n");
    }
    let mut pools: Vec<_> = c.pools.iter().collect();
    pools.sort_by(|a, b| a.name.cmp(&b.name));
    if pools.is_empty() {
        out.push_str("pools: []\n");
    } else {
        out.push_str("\npools:\n");
    }
    for p in pools {
        let _ = writeln!(out, "  - name: {}", q(&p.name));
        if !p.algorithm.is_empty() {
            let _ = writeln!(out, "    algorithm: {}", p.algorithm);
        }
        if p.table_size != 0 {
            let _ = writeln!(out, "    table_size: {}", p.table_size);
        }
        if let Some(h) = hc_names.get(&p.health_check_id) {
            let _ = writeln!(out, "    health_check: {}", q(h));
        }
        let mut bs: Vec<_> = c.backends.iter().filter(|b| b.pool_id == p.id).collect();
        bs.sort_by(|a, b| (&a.address, a.port).cmp(&(&b.address, b.port)));
        if bs.is_empty() {
            out.push_str("    backends: []\n");
            continue;
        }
        out.push_str("    backends:\n");
        for b in bs {
            let _ = write!(
                out,
                "      - {{address: {}, port: {}, weight: {}",
                q(&b.address),
                b.port,
                b.weight
            );
            if !b.mac.is_empty() {
                let _ = write!(out, ", mac: {}", q(&b.mac));
            }
            if !b.admin_state.is_empty() && b.admin_state != "enabled" {
                let _ = write!(out, ", state: {}", b.admin_state);
            }
            out.push_str("}\n");
        }
    }
    out
}
