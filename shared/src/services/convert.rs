//! Tree -> ServiceSet: the schema, conversion of each section, and the checks across
//! objects (validation), with the place of every error.

use super::*;

pub(super) const TOP_FIELDS: &[&str] = &["tunnel", "loadbalancers", "pools", "health_checks"];
pub(super) const TUNNEL_FIELDS: &[&str] = &["source_v4", "source_v6", "gue_port"];
pub(super) const LB_FIELDS: &[&str] = &["name", "vip", "listeners"];
pub(super) const LISTENER_FIELDS: &[&str] = &["port", "protocol", "mode", "pool", "encap", "name"];
pub(super) const POOL_FIELDS: &[&str] = &[
    "name",
    "algorithm",
    "table_size",
    "health_check",
    "backends",
];
pub(super) const HEALTH_CHECK_FIELDS: &[&str] = &[
    "name",
    "kind",
    "interval_ms",
    "timeout_ms",
    "rise",
    "fall",
    "path",
    "expect_status",
    "send",
    "expect",
];
pub(super) const HEALTH_KINDS: &[(&str, &str)] = &[
    ("tcp", "tcp"),
    ("http", "http"),
    ("https", "https"),
    ("udp", "udp"),
];
pub(super) const BACKEND_FIELDS: &[&str] =
    &["address", "port", "weight", "mac", "state", "healthy"];

pub(super) const PROTOCOLS: &[(&str, Protocol)] = Protocol::NAMES;
pub(super) const MODES: &[(&str, Mode)] = Mode::NAMES;
pub(super) const ENCAPS: &[(&str, Encap)] = Encap::NAMES;
pub(super) const ALGORITHMS: &[(&str, Algorithm)] = Algorithm::NAMES;
pub(super) const STATES: &[(&str, AdminState)] = AdminState::NAMES;

/// Where a listener's parts are, to point at them from errors found after reading.
#[derive(Clone, Copy)]
pub(super) struct ListenerPos {
    pub(super) node: Mark,
    pub(super) vip: Mark,
    pub(super) port: Mark,
    pub(super) mode: Mark,
    pub(super) pool: Mark,
}

#[derive(Clone, Copy)]
pub(super) struct PoolPos {
    pub(super) node: Mark,
    pub(super) name: Mark,
    pub(super) table_size: Mark,
}

#[derive(Clone, Copy)]
pub(super) struct BackendPos {
    pub(super) node: Mark,
    pub(super) address: Mark,
    pub(super) port: Mark,
    pub(super) weight: Mark,
}

/// A listener whose pool is still a name: pools may come after load balancers in the file.
pub(super) struct PendingListener {
    pub(super) listener: Listener,
    pub(super) pool_name: String,
    pub(super) pos: ListenerPos,
}

pub(super) struct Converter {
    pub(super) set: ServiceSet,
    pub(super) gue_port: Mark,
    pub(super) lb_names: HashMap<String, Mark>,
    pub(super) pool_names: HashMap<String, Mark>,
    pub(super) pending: Vec<PendingListener>,
    pub(super) pools: Vec<PoolPos>,
    pub(super) backends: Vec<BackendPos>,
    pub(super) backend_keys: HashMap<(PoolId, IpAddr, u16), Mark>,
    /// Validate as if tunnel sources were set ([`parse_services_without_node_settings`]).
    pub(super) node_settings_optional: bool,
    pub(super) health_checks: Vec<HealthCheckSpec>,
    pub(super) health_check_names: HashMap<String, Mark>,
    /// (pool, health check, where the pool names it)
    pub(super) pool_checks: Vec<(String, String, Mark)>,
    /// Load balancers by name, in file order (the control plane creates them by name).
    pub(super) load_balancers: Vec<(String, IpAddr)>,
}

impl Default for Converter {
    fn default() -> Self {
        Converter {
            set: ServiceSet::default(),
            gue_port: Mark::START,
            lb_names: HashMap::new(),
            pool_names: HashMap::new(),
            pending: Vec::new(),
            pools: Vec::new(),
            backends: Vec::new(),
            backend_keys: HashMap::new(),
            node_settings_optional: false,
            health_checks: Vec::new(),
            health_check_names: HashMap::new(),
            pool_checks: Vec::new(),
            load_balancers: Vec::new(),
        }
    }
}

impl Converter {
    pub(super) fn document(&mut self, root: &Node) -> Result<(), ServicesError> {
        if !matches!(root.kind, Kind::Map(_) | Kind::Null) {
            return Err(ServicesError::at(
                root.mark,
                format!(
                    "a services file is a mapping with the fields {}; got {}",
                    TOP_FIELDS.join(", "),
                    root.kind.describe()
                ),
            ));
        }
        let top = fields(root, "the top level", TOP_FIELDS, true)?;
        // Sections in the order they appear, so the first error reported is the first in the file.
        for &(section, value) in &top.entries {
            match section {
                "tunnel" => self.tunnel(value)?,
                "loadbalancers" => {
                    for lb in list(Some(value), "loadbalancers")? {
                        self.loadbalancer(lb)?;
                    }
                }
                "health_checks" => {
                    for hc in list(Some(value), "health_checks")? {
                        self.health_check(hc)?;
                    }
                }
                _ => {
                    for pool in list(Some(value), "pools")? {
                        self.pool(pool)?;
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn health_check(&mut self, node: &Node) -> Result<(), ServicesError> {
        let f = fields(node, "health check", HEALTH_CHECK_FIELDS, false)?;
        let name_node = f.required("name")?;
        let hc_name = name(name_node, "health check name", NameRule::Word)?;
        if let Some(first) = self.health_check_names.get(&hc_name) {
            return Err(ServicesError::at(
                name_node.mark,
                format!(
                    "duplicate health check name {hc_name:?} (first used on line {})",
                    first.line
                ),
            ));
        }
        self.health_check_names
            .insert(hc_name.clone(), name_node.mark);
        let kind = choice(f.required("kind")?, "kind", HEALTH_KINDS)?;
        let num = |field: &str, hi: u64| -> Result<u32, ServicesError> {
            match f.get(field) {
                None => Ok(0),
                Some(n) => Ok(u32::try_from(integer(n, field, 1, hi)?).unwrap_or(u32::MAX)),
            }
        };
        let web = matches!(kind, "http" | "https");
        let only = |field: &str, ok: bool, what: &str| -> Result<(), ServicesError> {
            match f.get(field) {
                Some(n) if !ok => Err(ServicesError::at(
                    n.mark,
                    format!("{field} applies only to {what} health checks; this one is {kind}"),
                )),
                _ => Ok(()),
            }
        };
        only("path", web, "http/https")?;
        only("expect_status", web, "http/https")?;
        only("send", kind == "udp", "udp")?;
        only("expect", kind == "udp", "udp")?;
        let http_path = match f.get("path") {
            Some(n) => {
                let p = string(n, "path")?;
                if !p.starts_with('/') || p.contains(char::is_whitespace) {
                    return Err(ServicesError::at(
                        n.mark,
                        format!("path {p:?} must start with '/' and hold no spaces"),
                    ));
                }
                p.to_string()
            }
            None => String::new(),
        };
        let expected_status = match f.get("expect_status") {
            None => None,
            Some(n) => {
                let text = match &n.kind {
                    Kind::Scalar { text, .. } => text.to_string(),
                    _ => String::new(),
                };
                let (lo, hi) = text.split_once('-').unwrap_or((&text, &text));
                match (lo.trim().parse::<u32>(), hi.trim().parse::<u32>()) {
                    (Ok(lo), Ok(hi)) if (100..=599).contains(&lo) && (lo..=599).contains(&hi) => {
                        Some((lo, hi))
                    }
                    _ => {
                        return Err(ServicesError::at(
                            n.mark,
                            format!(
                                "expect_status {text:?}: a status (200) or a range (200-399) \
                                 within 100-599"
                            ),
                        ))
                    }
                }
            }
        };
        let text_field = |field: &str| -> Result<String, ServicesError> {
            match f.get(field) {
                None => Ok(String::new()),
                Some(n) => {
                    let t = string(n, field)?;
                    if t.is_empty() || t.len() > 1400 {
                        return Err(ServicesError::at(
                            n.mark,
                            format!("{field} must hold 1-1400 bytes"),
                        ));
                    }
                    Ok(t.to_string())
                }
            }
        };
        let udp_send = text_field("send")?;
        if kind == "udp" && udp_send.is_empty() {
            return Err(ServicesError::at(
                node.mark,
                "a udp health check needs `send`: the datagram sent to each backend",
            ));
        }
        let spec = HealthCheckSpec {
            name: hc_name,
            kind: kind.to_string(),
            interval_ms: num("interval_ms", 3_600_000)?,
            timeout_ms: num("timeout_ms", 3_600_000)?,
            rise: num("rise", 100)?,
            fall: num("fall", 100)?,
            http_path,
            expected_status,
            udp_send,
            udp_expect: text_field("expect")?,
        };
        if spec.timeout_ms != 0 && spec.interval_ms != 0 && spec.timeout_ms > spec.interval_ms {
            return Err(ServicesError::at(
                f.mark_of("timeout_ms"),
                format!(
                    "timeout_ms {} is longer than interval_ms {}",
                    spec.timeout_ms, spec.interval_ms
                ),
            ));
        }
        self.health_checks.push(spec);
        Ok(())
    }

    pub(super) fn tunnel(&mut self, node: &Node) -> Result<(), ServicesError> {
        let f = fields(node, "tunnel", TUNNEL_FIELDS, true)?;
        if let Some(n) = f.get("source_v4") {
            match ip(n, "tunnel.source_v4")? {
                IpAddr::V4(a) if is_usable_unicast(a.into()) => self.set.tunnel.source_v4 = Some(a),
                other => {
                    return Err(ServicesError::at(
                        n.mark,
                        format!("tunnel.source_v4 must be a unicast IPv4 address, got {other}"),
                    ))
                }
            }
        }
        if let Some(n) = f.get("source_v6") {
            match ip(n, "tunnel.source_v6")? {
                IpAddr::V6(a) if is_usable_unicast(a.into()) => self.set.tunnel.source_v6 = Some(a),
                other => {
                    return Err(ServicesError::at(
                        n.mark,
                        format!("tunnel.source_v6 must be a unicast IPv6 address, got {other}"),
                    ))
                }
            }
        }
        if let Some(n) = f.get("gue_port") {
            self.set.tunnel.gue_port = port(n, "tunnel.gue_port")?;
        }
        self.gue_port = f.mark_of("gue_port");
        Ok(())
    }

    pub(super) fn loadbalancer(&mut self, node: &Node) -> Result<(), ServicesError> {
        let f = fields(node, "load balancer", LB_FIELDS, false)?;
        let name_node = f.required("name")?;
        let lb = name(name_node, "load balancer name", NameRule::Word)?;
        if let Some(first) = self.lb_names.get(&lb) {
            return Err(ServicesError::at(
                name_node.mark,
                format!(
                    "duplicate load balancer name {lb:?} (first used on line {})",
                    first.line
                ),
            ));
        }
        self.lb_names.insert(lb.clone(), name_node.mark);
        let vip_node = f.required("vip")?;
        let vip = ip(vip_node, "vip")?;
        if !is_usable_unicast(vip) {
            return Err(ServicesError::at(
                vip_node.mark,
                format!("vip {vip} is not a usable unicast address (it is unspecified, multicast or broadcast)"),
            ));
        }
        for l in list(f.get("listeners"), "listeners")? {
            self.listener(l, &lb, vip, vip_node.mark)?;
        }
        self.load_balancers.push((lb, vip));
        Ok(())
    }

    pub(super) fn listener(
        &mut self,
        node: &Node,
        lb: &str,
        vip: IpAddr,
        vip_mark: Mark,
    ) -> Result<(), ServicesError> {
        let f = fields(node, "listener", LISTENER_FIELDS, false)?;
        let port_node = f.required("port")?;
        let port = port(port_node, "listener port")?;
        let protocol = choice(f.required("protocol")?, "protocol", PROTOCOLS)?;
        let mode_node = f.required("mode")?;
        let mode = choice(mode_node, "mode", MODES)?;
        let encap = match f.get("encap") {
            None => Encap::default(),
            Some(n) => {
                let encap = choice(n, "encap", ENCAPS)?;
                if mode != Mode::Tunnel {
                    return Err(ServicesError::at(
                        n.mark,
                        format!(
                            "encap applies only to mode tunnel; this listener's mode is {mode}"
                        ),
                    ));
                }
                encap
            }
        };
        let pool_node = f.required("pool")?;
        let pool_name = string(pool_node, "pool")?.to_string();
        let listener_name = match f.get("name") {
            Some(n) => name(n, "listener name", NameRule::Printable)?,
            None => format!("{lb}/{port}/{protocol}"),
        };
        self.pending.push(PendingListener {
            listener: Listener {
                id: ListenerId(next_id(self.pending.len())),
                name: listener_name,
                vip,
                port,
                protocol,
                mode,
                encap,
                pool: PoolId(0),
            },
            pool_name,
            pos: ListenerPos {
                node: node.mark,
                vip: vip_mark,
                port: port_node.mark,
                mode: mode_node.mark,
                pool: pool_node.mark,
            },
        });
        Ok(())
    }

    pub(super) fn pool(&mut self, node: &Node) -> Result<(), ServicesError> {
        let f = fields(node, "pool", POOL_FIELDS, false)?;
        let name_node = f.required("name")?;
        let pool_name = name(name_node, "pool name", NameRule::Printable)?;
        if let Some(first) = self.pool_names.get(&pool_name) {
            return Err(ServicesError::at(
                name_node.mark,
                format!(
                    "duplicate pool name {pool_name:?} (first used on line {})",
                    first.line
                ),
            ));
        }
        self.pool_names.insert(pool_name.clone(), name_node.mark);
        let algorithm = match f.get("algorithm") {
            Some(n) => choice(n, "algorithm", ALGORITHMS)?,
            None => Algorithm::default(),
        };
        let table_size = match f.get("table_size") {
            Some(n) => {
                let size = integer(n, "table_size", 1, u64::from(u32::MAX))?;
                let size = u32::try_from(size)
                    .map_err(|_| ServicesError::at(n.mark, "table_size out of range"))?;
                check_table_size(size)
                    .map_err(|e| ServicesError::at(n.mark, format!("pool {pool_name:?}: {e}")))?;
                size
            }
            None => DEFAULT_TABLE_SIZE,
        };
        let id = PoolId(next_id(self.set.pools.len()));
        self.set.pools.push(Pool {
            id,
            name: pool_name.clone(),
            algorithm,
            table_size,
        });
        self.pools.push(PoolPos {
            node: node.mark,
            name: name_node.mark,
            table_size: f.mark_of("table_size"),
        });
        if let Some(n) = f.get("health_check") {
            let hc = string(n, "health_check")?.to_string();
            self.pool_checks.push((pool_name.clone(), hc, n.mark));
        }
        for b in list(f.get("backends"), "backends")? {
            self.backend(b, id, &pool_name)?;
        }
        Ok(())
    }

    pub(super) fn backend(
        &mut self,
        node: &Node,
        pool: PoolId,
        pool_name: &str,
    ) -> Result<(), ServicesError> {
        let f = fields(node, "backend", BACKEND_FIELDS, false)?;
        let address_node = f.required("address")?;
        let address = ip(address_node, "backend address")?;
        if !is_usable_unicast(address) {
            return Err(ServicesError::at(
                address_node.mark,
                format!("backend address {address} is not a usable unicast address (it is unspecified, multicast or broadcast)"),
            ));
        }
        let port_node = f.required("port")?;
        let port = port(port_node, "backend port")?;
        let weight = match f.get("weight") {
            Some(n) => {
                let w = integer(n, "backend weight", 0, u64::from(MAX_WEIGHT))?;
                u32::try_from(w).unwrap_or(u32::MAX)
            }
            None => 1,
        };
        let mac = f.get("mac").map(mac).transpose()?;
        let admin = match f.get("state") {
            Some(n) => choice(n, "backend state", STATES)?,
            None => AdminState::default(),
        };
        let healthy = match f.get("healthy") {
            Some(n) => boolean(n, "healthy")?,
            None => true,
        };
        if let Some(first) = self.backend_keys.get(&(pool, address, port)) {
            return Err(ServicesError::at(
                node.mark,
                format!(
                    "backend {} appears twice in pool {pool_name:?} (first on line {})",
                    SocketText(address, port),
                    first.line
                ),
            ));
        }
        self.backend_keys.insert((pool, address, port), node.mark);
        self.set.backends.push(Backend {
            id: BackendId(next_id(self.set.backends.len())),
            pool,
            address,
            port,
            weight,
            mac,
            admin,
            healthy,
        });
        self.backends.push(BackendPos {
            node: node.mark,
            address: address_node.mark,
            port: port_node.mark,
            weight: f.mark_of("weight"),
        });
        Ok(())
    }

    /// Resolves pool names, checks what spans objects, then runs the model's own validation.
    pub(super) fn finish(mut self) -> Result<ServiceSet, ServicesError> {
        let pool_ids: HashMap<&str, PoolId> = self
            .set
            .pools
            .iter()
            .map(|p| (p.name.as_str(), p.id))
            .collect();
        let mut names: HashMap<&str, Mark> = HashMap::new();
        let mut keys: HashMap<(IpAddr, u16, Protocol), (&str, Mark)> = HashMap::new();
        let mut listeners = Vec::with_capacity(self.pending.len());
        for p in &self.pending {
            let l = &p.listener;
            let Some(&pool) = pool_ids.get(p.pool_name.as_str()) else {
                let mut defined: Vec<&str> =
                    self.set.pools.iter().map(|p| p.name.as_str()).collect();
                defined.truncate(10);
                return Err(ServicesError::at(
                    p.pos.pool,
                    format!(
                        "listener {:?} names pool {:?}, which is not defined under pools; defined: {}",
                        l.name,
                        shorten(&p.pool_name),
                        if defined.is_empty() { "none".to_string() } else { defined.join(", ") }
                    ),
                ));
            };
            if let Some((other, mark)) = keys.get(&(l.vip, l.port, l.protocol)) {
                return Err(ServicesError::at(
                    p.pos.node,
                    format!(
                        "listener {:?}: {} port {}/{} is already used by listener {other:?} (line {})",
                        l.name, l.vip, l.port, l.protocol, mark.line
                    ),
                ));
            }
            keys.insert((l.vip, l.port, l.protocol), (&l.name, p.pos.node));
            if let Some(first) = names.get(l.name.as_str()) {
                return Err(ServicesError::at(
                    p.pos.node,
                    format!(
                        "duplicate listener name {:?} (first used on line {})",
                        l.name, first.line
                    ),
                ));
            }
            names.insert(&l.name, p.pos.node);
            listeners.push(Listener { pool, ..l.clone() });
        }
        self.set.listeners = listeners;
        assign_ids(&mut self.set);
        let checked = if self.node_settings_optional {
            let mut probe = self.set.clone();
            probe.tunnel.source_v4 = probe
                .tunnel
                .source_v4
                .or(Some(std::net::Ipv4Addr::new(192, 0, 2, 1)));
            probe.tunnel.source_v6 = probe.tunnel.source_v6.or(Some(std::net::Ipv6Addr::new(
                0x2001, 0xdb8, 0, 0, 0, 0, 0, 1,
            )));
            probe.validate()
        } else {
            self.set.validate()
        };
        match checked {
            Ok(()) => Ok(self.set),
            Err(e) => Err(ServicesError::at(self.locate(&e), e.to_string())),
        }
    }

    pub(super) fn listener_pos(&self, name: &str) -> Option<(usize, ListenerPos)> {
        let i = self.set.listeners.iter().position(|l| l.name == name)?;
        Some((i, self.pending.get(i)?.pos))
    }

    pub(super) fn backend_pos(&self, f: impl Fn(&Backend) -> bool) -> Option<BackendPos> {
        let i = self.set.backends.iter().position(f)?;
        self.backends.get(i).copied()
    }

    /// The place of the object a [`ModelError`] names.
    pub(super) fn locate(&self, e: &ModelError) -> Mark {
        let mark = match e {
            // Cannot happen (ids are made distinct), but point at the second holder if it does.
            ModelError::DuplicateId { kind, id } => match *kind {
                "listener" => {
                    let i = self.set.listeners.iter().rposition(|l| l.id.0 == *id);
                    i.and_then(|i| self.pending.get(i)).map(|p| p.pos.node)
                }
                "pool" => {
                    let i = self.set.pools.iter().rposition(|p| p.id.0 == *id);
                    i.and_then(|i| self.pools.get(i)).map(|p| p.node)
                }
                _ => {
                    let i = self.set.backends.iter().rposition(|b| b.id.0 == *id);
                    i.and_then(|i| self.backends.get(i)).map(|b| b.node)
                }
            },
            ModelError::ListenerPortZero { listener } => {
                self.listener_pos(listener).map(|(_, p)| p.port)
            }
            ModelError::BadVip { listener, .. } => self.listener_pos(listener).map(|(_, p)| p.vip),
            ModelError::UnknownPool { listener, .. } => {
                self.listener_pos(listener).map(|(_, p)| p.pool)
            }
            ModelError::DuplicateListener { listener, .. } => {
                let last = self.set.listeners.iter().rposition(|l| l.name == *listener);
                last.and_then(|i| self.pending.get(i)).map(|p| p.pos.node)
            }
            ModelError::MissingTunnelSource { listener, .. } => {
                self.listener_pos(listener).map(|(_, p)| p.mode)
            }
            ModelError::DsrFamilyMismatch { listener, backend }
            | ModelError::NatFamilyMismatch { listener, backend } => {
                self.listener_pos(listener).map(|(i, p)| {
                    let pool = self.set.listeners.get(i).map(|l| l.pool);
                    self.backend_pos(|b| Some(b.pool) == pool && b.address == *backend)
                        .map_or(p.mode, |b| b.address)
                })
            }
            ModelError::AmbiguousNatReturn { second, .. } => {
                self.listener_pos(second).map(|(_, p)| p.pool)
            }
            ModelError::BadTableSize { pool, .. } => {
                let i = self.set.pools.iter().position(|p| p.name == *pool);
                i.and_then(|i| self.pools.get(i)).map(|p| p.table_size)
            }
            ModelError::DuplicatePoolName { pool } => {
                let i = self.set.pools.iter().rposition(|p| p.name == *pool);
                i.and_then(|i| self.pools.get(i)).map(|p| p.name)
            }
            ModelError::BackendUnknownPool { address, port, .. } => self
                .backend_pos(|b| b.address == *address && b.port == *port)
                .map(|b| b.node),
            ModelError::WeightOutOfRange { address, port, .. } => self
                .backend_pos(|b| b.address == *address && b.port == *port && b.weight > MAX_WEIGHT)
                .map(|b| b.weight),
            ModelError::BackendPortZero { address, .. } => self
                .backend_pos(|b| b.address == *address && b.port == 0)
                .map(|b| b.port),
            ModelError::BadBackendAddress { address, port } => self
                .backend_pos(|b| b.address == *address && b.port == *port)
                .map(|b| b.address),
            ModelError::DuplicateBackend { address, port, .. } => {
                let i = self
                    .set
                    .backends
                    .iter()
                    .rposition(|b| b.address == *address && b.port == *port);
                i.and_then(|i| self.backends.get(i)).map(|b| b.node)
            }
            ModelError::GuePortZero => Some(self.gue_port),
        };
        mark.unwrap_or(Mark::START)
    }
}

/// `10.0.0.1:80` or `[fd00::1]:80`.
pub(super) struct SocketText(IpAddr, u16);

impl fmt::Display for SocketText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.1),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.1),
        }
    }
}
