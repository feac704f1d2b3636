//! `fiberlbctl export`: the running configuration of an org/project as a services file that
//! `fiberlbctl apply -f` takes back with "no changes" (round-trip tested in
//! `controlplane/tests/fiberlbctl.rs`).
//!
//! The objects are turned into a [`ServicesDocument`] and written by the services file's one
//! writer, [`fiberlb_shared::services::to_yaml_document`]. Written: load balancers (name, VIP,
//! also those without listeners) with their listeners (port, protocol, mode, encap, pool), pools
//! (name, algorithm, table size) with their backends (address, port, weight, MAC, admin state),
//! health checks (every field the stored check has) and which pool uses which. Objects are
//! sorted by name (listeners by port and protocol, backends by address and port), so the same
//! objects give the same text. Not written, as `apply` does not carry them: the node-wide
//! `tunnel` section, health results, ids, and the stored listener names
//! (`<org>/<project>/<lb>/<port>/<protocol>`: `apply` names listeners itself).

use std::collections::{BTreeMap, HashMap};

use fiberlb_shared::model::{Backend, BackendId, Listener, ListenerId, Pool, PoolId, ServiceSet};
use fiberlb_shared::services::{to_yaml_document, ServicesDocument};

use super::apply::{spec_of, Current};
use crate::model::{
    parse_address, parse_admin_state, parse_algorithm, parse_encap, parse_mac, parse_mode,
    parse_protocol, parse_table_size, Error,
};

/// The services file for `c`; `origin` goes into the header comment.
///
/// # Errors
/// When a stored object has a field the API would not accept (an address, a mode…), which
/// cannot be written as a file `apply` takes back; the error names the object and the field.
pub fn to_services_yaml(c: &Current, origin: &str) -> Result<String, Error> {
    let doc = document(c)?;
    Ok(format!(
        "# fiberlb services file exported by `fiberlbctl export` from {origin}.\n\
         # Apply it with `fiberlbctl apply -f FILE` (the same objects: \"no changes\").\n{}",
        to_yaml_document(&doc)
    ))
}

/// The objects of `c` as a services document, sorted by name.
///
/// # Errors
/// As [`to_services_yaml`].
pub fn document(c: &Current) -> Result<ServicesDocument, Error> {
    let mut set = ServiceSet::default();

    let mut pools: Vec<_> = c.pools.iter().collect();
    pools.sort_by(|a, b| a.name.cmp(&b.name));
    for p in &pools {
        let field = |f: &str| format!("pool {:?} {f}", p.name);
        set.pools.push(Pool {
            id: PoolId(p.id),
            name: p.name.clone(),
            algorithm: parse_algorithm(&field("algorithm"), &p.algorithm)?,
            table_size: parse_table_size(&field("table_size"), p.table_size)?,
        });
    }

    let mut backends = Vec::with_capacity(c.backends.len());
    for b in &c.backends {
        let field = |f: &str| format!("backend {} {f}", b.id);
        backends.push(Backend {
            id: BackendId(b.id),
            pool: PoolId(b.pool_id),
            address: parse_address(&field("address"), &b.address)?,
            port: crate::model::parse_port(&field("port"), b.port)?,
            weight: b.weight,
            mac: parse_mac(&field("mac"), &b.mac)?,
            admin: parse_admin_state(&field("admin_state"), &b.admin_state)?,
            // Health results are the checks' to decide, not the file's.
            healthy: true,
        });
    }
    // Grouped by pool when written; in a pool, by address and port.
    backends.sort_by_key(|b| (b.address, b.port));
    set.backends = backends;

    let mut load_balancers = Vec::with_capacity(c.load_balancers.len());
    let mut lbs: Vec<_> = c.load_balancers.iter().collect();
    lbs.sort_by(|a, b| a.name.cmp(&b.name));
    for lb in lbs {
        let vip = parse_address(&format!("load balancer {:?} vip", lb.name), &lb.vip)?;
        load_balancers.push((lb.name.clone(), vip));
        let mut listeners = Vec::new();
        for l in c.listeners.iter().filter(|l| l.load_balancer_id == lb.id) {
            let field = |f: &str| format!("listener {} {f}", l.id);
            let port = crate::model::parse_port(&field("port"), l.port)?;
            let protocol = parse_protocol(&field("protocol"), &l.protocol)?;
            listeners.push(Listener {
                id: ListenerId(l.id),
                // The default name, which the file leaves out and `apply` gives.
                name: format!("{}/{port}/{protocol}", lb.name),
                vip,
                port,
                protocol,
                mode: parse_mode(&field("mode"), &l.mode)?,
                encap: parse_encap(&field("encap"), &l.encap)?,
                pool: PoolId(l.pool_id),
            });
        }
        listeners.sort_by_key(|l| (l.port, l.protocol.as_str()));
        set.listeners.extend(listeners);
    }

    let hc_names: HashMap<u32, &str> = c
        .health_checks
        .iter()
        .map(|h| (h.id, h.name.as_str()))
        .collect();
    let mut health_checks: Vec<_> = c.health_checks.iter().map(spec_of).collect();
    health_checks.sort_by(|a, b| a.name.cmp(&b.name));
    let pool_health_checks: BTreeMap<String, String> = c
        .pools
        .iter()
        .filter_map(|p| {
            let hc = hc_names.get(&p.health_check_id)?;
            Some((p.name.clone(), (*hc).to_string()))
        })
        .collect();

    Ok(ServicesDocument {
        set,
        load_balancers,
        health_checks,
        pool_health_checks,
    })
}
