//! `DataplaneService`: status, counters and lookups of the attached data plane.

use super::*;

#[tonic::async_trait]
impl DataplaneService for Api {
    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        self.auth.caller(&req)?;
        let generation = self.shared.store.snapshot().generation;
        let s = self.shared.dataplane.status();
        Ok(Response::new(pb::StatusResponse {
            store_generation: generation,
            attached: s.is_some(),
            instance_id: s
                .as_ref()
                .map(|s| format!("{:032x}", s.instance_id))
                .unwrap_or_default(),
            applied_generation: s.as_ref().map_or(0, |s| s.applied_generation),
            heartbeat_age_ms: s.as_ref().map_or(0, |s| s.heartbeat_age_ms),
            synced_store_generation: s.as_ref().and_then(|s| s.synced_store_generation),
            unresolved_backends: s
                .as_ref()
                .map(|s| {
                    s.unresolved_backends
                        .iter()
                        .map(|a| a.to_string())
                        .collect()
                })
                .unwrap_or_default(),
        }))
    }

    async fn counters(
        &self,
        req: Request<pb::CountersRequest>,
    ) -> Result<Response<pb::CountersResponse>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let snap = self.shared.store.snapshot();
        let Some(c) = self.shared.dataplane.counters() else {
            return Ok(Response::new(pb::CountersResponse::default()));
        };
        let oc = |id: u32, name: String, v: Option<&crate::api::ObjectCounters>| {
            let v = v.copied().unwrap_or_default();
            pb::ObjectCounters {
                id,
                name,
                packets: v.packets,
                bytes: v.bytes,
                new_flows: v.new_flows,
                active_flows: v.active_flows,
            }
        };
        let by_reason = |drops: &[u64]| -> Vec<pb::DropCount> {
            drops
                .iter()
                .enumerate()
                .filter(|&(_, &v)| v > 0)
                .map(|(i, &v)| pb::DropCount {
                    reason: drop_reason_label(i),
                    packets: v,
                })
                .collect()
        };
        let s = &snap.state;
        let listeners = s
            .listeners
            .values()
            .filter(|l| l.scope == scope)
            .map(|l| {
                let name = s
                    .load_balancers
                    .get(&l.load_balancer_id)
                    .map(|lb| m::listener_name(lb, l))
                    .unwrap_or_default();
                oc(l.id, name, c.listeners.get(&l.id))
            })
            .collect();
        let backends = s
            .backends
            .values()
            .filter(|b| b.scope == scope)
            .map(|b| {
                oc(
                    b.id,
                    format!("{}:{}", b.address, b.port),
                    c.backends.get(&b.id),
                )
            })
            .collect();
        Ok(Response::new(pb::CountersResponse {
            attached: true,
            rx_packets: c.rx_packets,
            tx_packets: c.tx_packets,
            drops: c.drops,
            listeners,
            backends,
            drops_by_reason: by_reason(&c.drops_by_reason),
            to_host: c.to_host,
            rx_bytes: c.rx_bytes,
            tx_bytes: c.tx_bytes,
            workers: c
                .workers
                .iter()
                .map(|w| pb::WorkerCounters {
                    worker: w.worker,
                    rx_packets: w.rx_packets,
                    rx_bytes: w.rx_bytes,
                    tx_packets: w.tx_packets,
                    tx_bytes: w.tx_bytes,
                    to_host: w.to_host,
                    drops: w.drops,
                    drops_by_reason: by_reason(&w.drops_by_reason),
                })
                .collect(),
            ports: c.ports.iter().map(port_counters).collect(),
            ports_age_ms: c.ports_age_ms,
            ports_stale: c.ports_stale,
        }))
    }

    /// The Maglev answer for a NEW flow: the same hash, table and slot the data plane computes
    /// for a packet that finds no flow-table entry. An established flow keeps whatever backend
    /// its flow-table entry names (while that backend stays usable).
    async fn lookup(
        &self,
        req: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::LookupResponse>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let r = req.into_inner();
        let src = m::parse_address("src_address", &r.src_address)?;
        let dst = m::parse_address("dst_address", &r.dst_address)?;
        let sport = m::parse_port("src_port", r.src_port)?;
        let dport = m::parse_port("dst_port", r.dst_port)?;
        let protocol = m::parse_protocol("protocol", &r.protocol)?;
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(Error::invalid(
                "src_address",
                "source and destination must be of the same address family",
            )
            .into());
        }
        let snap = self.shared.store.snapshot();
        let s = &snap.state;
        let listener = s
            .listeners
            .values()
            .filter(|l| l.scope == scope && l.port == dport && l.protocol == protocol)
            .find(|l| {
                s.load_balancers
                    .get(&l.load_balancer_id)
                    .is_some_and(|lb| lb.vip == dst)
            })
            .ok_or_else(|| Error::NotFound {
                kind: "listener",
                id: format!("{dst} port {dport}/{protocol}"),
            })?;
        let pool = owned(&s.pools, listener.pool_id, &scope, "pool")?;
        let set = m::compile(s, &self.shared.health.health());
        // Exactly the data plane's table: usable backends of the pool, in any order (the
        // builder's result depends only on the set).
        let active: Vec<&fiberlb_shared::model::Backend> = set
            .backends
            .iter()
            .filter(|b| b.pool.0 == pool.id && b.usability() == Usability::Active)
            .collect();
        let inputs: Vec<MaglevBackend> = active
            .iter()
            .map(|b| MaglevBackend {
                address: b.address,
                port: b.port,
                weight: b.weight,
            })
            .collect();
        let table = maglev::build_table(&inputs, pool.table_size)
            .map_err(|e| Status::failed_precondition(format!("pool {}: {e}", pool.id)))?;
        let proto = protocol.ip_proto();
        let hash = match pool.algorithm {
            Algorithm::Maglev => self.shared.hasher.hash(src, dst, sport, dport, proto),
            Algorithm::MaglevSourceIp => self.shared.hasher.hash_3tuple(src, dst, proto),
        };
        let slot = table_index(hash, pool.table_size);
        let backend = table
            .get(slot as usize)
            .copied()
            .filter(|&i| i != EMPTY)
            .and_then(|i| active.get(i as usize))
            .and_then(|b| s.backends.get(&b.id.0))
            .map(|b| convert::backend(b, true));
        Ok(Response::new(pb::LookupResponse {
            listener: Some(convert::listener(listener)),
            pool: Some(convert::pool(pool)),
            backend,
            flow_hash: hash,
            table_slot: slot,
            generation: snap.generation,
        }))
    }
}

/// A data plane port for the `Counters` reply.
fn port_counters(p: &crate::api::PortCounters) -> pb::PortCounters {
    pb::PortCounters {
        name: p.name.clone(),
        driver: p.driver.clone(),
        device: p.device.clone(),
        link_up: p.link_up,
        speed_mbps: p.speed_mbps,
        rx_packets: p.rx_packets,
        tx_packets: p.tx_packets,
        rx_bytes: p.rx_bytes,
        tx_bytes: p.tx_bytes,
        rx_missed: p.rx_missed,
        rx_errors: p.rx_errors,
        tx_errors: p.tx_errors,
        rx_nombuf: p.rx_nombuf,
        xsk_rx_fill_ring_empty: p.xsk.map(|x| x.rx_fill_ring_empty),
        xdp_redirected: p.xdp.map(|x| x.redirected),
        xdp_passed: p.xdp.map(|x| x.passed),
        pmd: p.pmd.clone().unwrap_or_default(),
        error: p.error.clone().unwrap_or_default(),
    }
}
