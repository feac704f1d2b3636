//! Services document -> YAML: the one writer of the services file. `fiberlbctl export` (alias
//! `get`) builds a [`ServicesDocument`] from the control plane's objects and prints
//! [`to_yaml_document`]; [`to_yaml`] writes a bare [`ServiceSet`] (what the data plane holds).

use super::*;

/// Writes a [`ServiceSet`] as a services file that [`parse_services`] reads back: a
/// [`ServicesDocument`] without load balancers of its own and without health checks (see
/// [`to_yaml_document`]).
///
/// Listeners are grouped into load balancers by their default names
/// (`<loadbalancer>/<port>/<protocol>`) and VIPs; a listener with another name is written with
/// an explicit `name`. For a set that came from [`parse_services`],
/// `parse_services(&to_yaml(&set)) == Ok(set)`: ids are not written, and reading gives them back
/// because they follow from the objects (see the module documentation). Any other valid set
/// reads back as the same objects with the ids the file rules give them, so the control plane's
/// ids do not survive. An invalid set is written as well as it can be (backends of an unknown
/// pool are left out), and will be rejected on reading.
pub fn to_yaml(set: &ServiceSet) -> String {
    write_file(set, &[], &[], &BTreeMap::new())
}

/// Writes a [`ServicesDocument`] as a services file that
/// [`parse_services_without_node_settings`] reads back: the `tunnel` section when it differs
/// from the defaults, the load balancers (name and VIP, in the document's order, with
/// `listeners: []` when they have none), then the health checks, then the pools with their
/// health check and backends.
///
/// Each listener goes under the document's load balancer whose name its default name starts
/// with and whose VIP it has, else under the first with its VIP; listeners of no listed VIP are
/// grouped as [`to_yaml`] does. Listener order within a load balancer, pool order and backend
/// order are the set's. Fields at their defaults are left out where leaving them out reads
/// back the same: a default listener name, backend `state: enabled` and `healthy: true`, and a
/// health check's 0 numbers and empty strings (0 is what reading gives for a left-out number).
///
/// For a document that came from [`parse_services_without_node_settings`],
/// `parse_services_without_node_settings(&to_yaml_document(&doc)) == Ok(doc)`, except when two
/// load balancers share a VIP and the second has a listener with a name of its own: the set does
/// not say which load balancer such a listener was under, and it is written under the first.
pub fn to_yaml_document(doc: &ServicesDocument) -> String {
    write_file(
        &doc.set,
        &doc.load_balancers,
        &doc.health_checks,
        &doc.pool_health_checks,
    )
}

fn write_file(
    set: &ServiceSet,
    load_balancers: &[(String, IpAddr)],
    health_checks: &[HealthCheckSpec],
    pool_health_checks: &BTreeMap<String, String>,
) -> String {
    let mut out = String::new();
    let t = &set.tunnel;
    if t.source_v4.is_some() || t.source_v6.is_some() || t.gue_port != DEFAULT_GUE_PORT {
        out.push_str("tunnel:\n");
        if let Some(a) = t.source_v4 {
            let _ = writeln!(out, "  source_v4: {a}");
        }
        if let Some(a) = t.source_v6 {
            let _ = writeln!(out, "  source_v6: \"{a}\"");
        }
        let _ = writeln!(out, "  gue_port: {}", t.gue_port);
        out.push('\n');
    }

    let pool_names: HashMap<PoolId, &str> =
        set.pools.iter().map(|p| (p.id, p.name.as_str())).collect();
    let lbs = group_listeners(load_balancers, &set.listeners);
    if lbs.is_empty() {
        out.push_str("loadbalancers: []\n");
    } else {
        out.push_str("loadbalancers:\n");
    }
    for lb in &lbs {
        let _ = writeln!(out, "  - name: {}", yaml_string(&lb.name));
        let _ = writeln!(out, "    vip: {}", yaml_ip(lb.vip));
        if lb.listeners.is_empty() {
            out.push_str("    listeners: []\n");
            continue;
        }
        out.push_str("    listeners:\n");
        for l in &lb.listeners {
            let pool = match pool_names.get(&l.pool) {
                Some(name) => yaml_string(name),
                None => yaml_string(&format!("#unknown pool id {}", l.pool.0)),
            };
            let _ = write!(
                out,
                "      - {{port: {}, protocol: {}, mode: {}",
                l.port, l.protocol, l.mode
            );
            if l.mode == Mode::Tunnel {
                let _ = write!(out, ", encap: {}", l.encap);
            }
            let _ = write!(out, ", pool: {pool}");
            if l.name != format!("{}/{}/{}", lb.name, l.port, l.protocol) {
                let _ = write!(out, ", name: {}", yaml_string(&l.name));
            }
            out.push_str("}\n");
        }
    }

    if !health_checks.is_empty() {
        out.push_str("\nhealth_checks:\n");
    }
    for h in health_checks {
        let _ = write!(
            out,
            "  - {{name: {}, kind: {}",
            yaml_string(&h.name),
            yaml_string(&h.kind)
        );
        for (field, v) in [
            ("interval_ms", h.interval_ms),
            ("timeout_ms", h.timeout_ms),
            ("rise", h.rise),
            ("fall", h.fall),
        ] {
            if v != 0 {
                let _ = write!(out, ", {field}: {v}");
            }
        }
        if !h.http_path.is_empty() {
            let _ = write!(out, ", path: {}", yaml_string(&h.http_path));
        }
        if let Some((lo, hi)) = h.expected_status {
            let _ = write!(out, ", expect_status: \"{lo}-{hi}\"");
        }
        if !h.udp_send.is_empty() {
            let _ = write!(out, ", send: {}", yaml_string(&h.udp_send));
        }
        if !h.udp_expect.is_empty() {
            let _ = write!(out, ", expect: {}", yaml_string(&h.udp_expect));
        }
        out.push_str("}\n");
    }

    let mut members: HashMap<PoolId, Vec<&Backend>> = HashMap::new();
    for b in &set.backends {
        members.entry(b.pool).or_default().push(b);
    }
    if set.pools.is_empty() {
        out.push_str("\npools: []\n");
    } else {
        out.push_str("\npools:\n");
    }
    for p in &set.pools {
        let _ = writeln!(out, "  - name: {}", yaml_string(&p.name));
        let _ = writeln!(out, "    algorithm: {}", p.algorithm);
        let _ = writeln!(out, "    table_size: {}", p.table_size);
        if let Some(hc) = pool_health_checks.get(&p.name) {
            let _ = writeln!(out, "    health_check: {}", yaml_string(hc));
        }
        let backends = members.get(&p.id).map(Vec::as_slice).unwrap_or(&[]);
        if backends.is_empty() {
            out.push_str("    backends: []\n");
            continue;
        }
        out.push_str("    backends:\n");
        for b in backends {
            let _ = write!(
                out,
                "      - {{address: {}, port: {}, weight: {}",
                yaml_ip(b.address),
                b.port,
                b.weight
            );
            if let Some(m) = b.mac {
                let _ = write!(out, ", mac: \"{}\"", format_mac(&m));
            }
            if b.admin != AdminState::Enabled {
                let _ = write!(out, ", state: {}", b.admin);
            }
            if !b.healthy {
                out.push_str(", healthy: false");
            }
            out.push_str("}\n");
        }
    }
    out
}

pub(super) struct LbOut<'a> {
    pub(super) name: String,
    pub(super) vip: IpAddr,
    pub(super) listeners: Vec<&'a Listener>,
}

/// Puts listeners under load balancers: the `declared` ones (name, VIP) first, in their order,
/// each listener under the one its default-name prefix and VIP match, else under the first with
/// its VIP; load balancers are made up for the rest, by default-name prefix and VIP, or by VIP
/// alone for listeners with their own names. Load balancer names are kept unique.
pub(super) fn group_listeners<'a>(
    declared: &'a [(String, IpAddr)],
    listeners: &'a [Listener],
) -> Vec<LbOut<'a>> {
    let mut lbs: Vec<LbOut<'a>> = Vec::new();
    let mut by_key: HashMap<(&str, IpAddr), usize> = HashMap::new();
    let mut used: HashSet<String> = HashSet::new();
    for (name, vip) in declared {
        by_key.entry((name.as_str(), *vip)).or_insert(lbs.len());
        used.insert(name.clone());
        lbs.push(LbOut {
            name: name.clone(),
            vip: *vip,
            listeners: Vec::new(),
        });
    }
    let mut new_lb = |lbs: &mut Vec<LbOut<'_>>, base: &str, vip: IpAddr| {
        let mut name = base.to_string();
        let mut n = 2;
        while used.contains(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        used.insert(name.clone());
        lbs.push(LbOut {
            name,
            vip,
            listeners: Vec::new(),
        });
        lbs.len() - 1
    };
    let n_declared = lbs.len();
    for l in listeners {
        let prefix = default_prefix(l);
        let declared_idx = prefix
            .and_then(|p| by_key.get(&(p, l.vip)).copied())
            .filter(|&i| i < n_declared)
            .or_else(|| {
                lbs.get(..n_declared)
                    .and_then(|d| d.iter().position(|lb| lb.vip == l.vip))
            });
        let idx = match (declared_idx, prefix) {
            (Some(i), _) => i,
            (None, Some(prefix)) => match by_key.get(&(prefix, l.vip)) {
                Some(&i) => i,
                None => {
                    let i = new_lb(&mut lbs, prefix, l.vip);
                    by_key.insert((prefix, l.vip), i);
                    i
                }
            },
            (None, None) => match lbs.iter().position(|lb| lb.vip == l.vip) {
                Some(i) => i,
                None => {
                    let base = word_name(&l.name);
                    new_lb(&mut lbs, &base, l.vip)
                }
            },
        };
        if let Some(lb) = lbs.get_mut(idx) {
            lb.listeners.push(l);
        }
    }
    lbs
}

/// The load balancer part of a default listener name, if the name is a default one.
pub(super) fn default_prefix(l: &Listener) -> Option<&str> {
    let prefix = l
        .name
        .strip_suffix(&format!("/{}/{}", l.port, l.protocol))?;
    let ok = !prefix.is_empty()
        && prefix.len() <= MAX_NAME_LEN - 12
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    ok.then_some(prefix)
}

/// A load balancer name made from any listener name.
pub(super) fn word_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(MAX_NAME_LEN - 12)
        .collect();
    if s.is_empty() {
        "lb".to_string()
    } else {
        s
    }
}

pub(super) fn yaml_ip(a: IpAddr) -> String {
    match a {
        IpAddr::V4(a) => a.to_string(),
        // Quoted: a plain scalar starting with ':' (`::1`) is not valid YAML.
        IpAddr::V6(a) => format!("\"{a}\""),
    }
}

/// A string as a YAML scalar: plain when that cannot be read as anything else, else
/// double-quoted.
pub(super) fn yaml_string(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
