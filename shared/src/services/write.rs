//! ServiceSet -> YAML: the writer of `fiberlbctl export` and of the round-trip tests.

use super::*;

/// Writes a [`ServiceSet`] as a services file that [`parse_services`] reads back.
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
    }

    let pool_names: HashMap<PoolId, &str> =
        set.pools.iter().map(|p| (p.id, p.name.as_str())).collect();
    let lbs = group_listeners(&set.listeners);
    if lbs.is_empty() {
        out.push_str("loadbalancers: []\n");
    } else {
        out.push_str("loadbalancers:\n");
    }
    for lb in &lbs {
        let _ = writeln!(out, "  - name: {}", yaml_string(&lb.name));
        let _ = writeln!(out, "    vip: {}", yaml_ip(lb.vip));
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

    let mut members: HashMap<PoolId, Vec<&Backend>> = HashMap::new();
    for b in &set.backends {
        members.entry(b.pool).or_default().push(b);
    }
    if set.pools.is_empty() {
        out.push_str("pools: []\n");
    } else {
        out.push_str("pools:\n");
    }
    for p in &set.pools {
        let _ = writeln!(out, "  - name: {}", yaml_string(&p.name));
        let _ = writeln!(out, "    algorithm: {}", p.algorithm);
        let _ = writeln!(out, "    table_size: {}", p.table_size);
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
            let _ = writeln!(out, ", state: {}, healthy: {}}}", b.admin, b.healthy);
        }
    }
    out
}

pub(super) struct LbOut<'a> {
    pub(super) name: String,
    pub(super) vip: IpAddr,
    pub(super) listeners: Vec<&'a Listener>,
}

/// Rebuilds load balancers from listeners: by default-name prefix and VIP, or by VIP alone for
/// listeners with their own names. Load balancer names are kept unique.
pub(super) fn group_listeners(listeners: &[Listener]) -> Vec<LbOut<'_>> {
    let mut lbs: Vec<LbOut<'_>> = Vec::new();
    let mut by_key: HashMap<(&str, IpAddr), usize> = HashMap::new();
    let mut used: HashSet<String> = HashSet::new();
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
    for l in listeners {
        let idx = match default_prefix(l) {
            Some(prefix) => match by_key.get(&(prefix, l.vip)) {
                Some(&i) => i,
                None => {
                    let i = new_lb(&mut lbs, prefix, l.vip);
                    by_key.insert((prefix, l.vip), i);
                    i
                }
            },
            None => match lbs.iter().position(|lb| lb.vip == l.vip) {
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
