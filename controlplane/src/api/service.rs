//! The gRPC handlers. Each write runs as one [`Store::mutate`](crate::store::Store::mutate)
//! (so it is durable before the reply) on a blocking thread; reads use the in-memory snapshot.
//! Objects of another org/project are invisible: asking for one by id gives NOT_FOUND.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use fiberlb_shared::flow_hash::table_index;
use fiberlb_shared::maglev::{self, MaglevBackend, EMPTY};
use fiberlb_shared::model::{AdminState, Algorithm, BackendId, Mode, Usability};
use fiberlb_shared::shm::counters::drop_reason_label;
use tonic::{Request, Response, Status};

use super::auth::Auth;
use super::{convert, Shared};
use crate::model::{self as m, Error, Scope};
use crate::pb;
use crate::pb::backend_service_server::BackendService;
use crate::pb::dataplane_service_server::DataplaneService;
use crate::pb::health_check_service_server::HealthCheckService;
use crate::pb::listener_service_server::ListenerService;
use crate::pb::load_balancer_service_server::LoadBalancerService;
use crate::pb::pool_service_server::PoolService;
use crate::store::{Kind, Txn};
use crate::vip::Family;

/// Implements every fiberlb service over one [`Shared`] with one listener's [`Auth`].
#[derive(Clone, Debug)]
pub struct Api {
    shared: Arc<Shared>,
    auth: Auth,
}

impl Api {
    /// Handlers over `shared`, with `auth`'s access rules.
    pub fn new(shared: Arc<Shared>, auth: Auth) -> Self {
        Api { shared, auth }
    }

    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(super) fn auth(&self) -> &Auth {
        &self.auth
    }

    /// Commits `f` durably (on a blocking thread); the store announces the new generation.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnMut(&mut Txn) -> Result<T, Error> + Send + 'static,
    ) -> Result<(T, u64), Status> {
        let store = self.shared.store.clone();
        let (value, generation) = tokio::task::spawn_blocking(move || store.mutate(f))
            .await
            .map_err(|e| Status::internal(format!("store task failed: {e}")))??;
        Ok((value, generation))
    }

    /// A backend as the API shows it: health and next-hop state included.
    fn backend_pb(&self, b: &m::Backend, healthy: bool) -> pb::Backend {
        let mut o = convert::backend(b, healthy);
        o.next_hop = convert::next_hop_state(b, self.shared.dataplane.status().as_ref());
        o
    }

    fn healthy(&self, id: u32) -> bool {
        self.shared
            .health
            .health()
            .get(&BackendId(id))
            .copied()
            .unwrap_or(true)
    }
}

/// `10.0.0.1:80` / `[fd00::1]:80`.
fn fmt_endpoint(a: std::net::IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(a, port).to_string()
}

/// Objects that belong to a scope.
trait Scoped {
    fn scope(&self) -> &Scope;
}

macro_rules! scoped {
    ($($t:ty),*) => {$(
        impl Scoped for $t {
            fn scope(&self) -> &Scope {
                &self.scope
            }
        }
    )*};
}
scoped!(
    m::LoadBalancer,
    m::Listener,
    m::Pool,
    m::Backend,
    m::HealthCheck
);

/// The object `id` of `map` if it belongs to `scope`; NOT_FOUND otherwise (also for another
/// tenant's object, so ids of other tenants reveal nothing).
fn owned<'a, T: Scoped>(
    map: &'a BTreeMap<u32, T>,
    id: u32,
    scope: &Scope,
    kind: &'static str,
) -> Result<&'a T, Error> {
    match map.get(&id) {
        Some(o) if o.scope() == scope => Ok(o),
        _ => Err(Error::not_found(kind, id)),
    }
}

fn owned_mut<'a, T: Scoped>(
    map: &'a mut BTreeMap<u32, T>,
    id: u32,
    scope: &Scope,
    kind: &'static str,
) -> Result<&'a mut T, Error> {
    match map.get_mut(&id) {
        Some(o) if o.scope() == scope => Ok(o),
        _ => Err(Error::not_found(kind, id)),
    }
}

fn check_description(d: &str) -> Result<(), Error> {
    if d.len() > m::MAX_DESCRIPTION_LEN {
        return Err(Error::invalid(
            "description",
            format!("longer than {} bytes", m::MAX_DESCRIPTION_LEN),
        ));
    }
    Ok(())
}

fn ids(list: impl Iterator<Item = u32>) -> String {
    list.map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

#[tonic::async_trait]
impl LoadBalancerService for Api {
    async fn create(
        &self,
        req: Request<pb::CreateLoadBalancerRequest>,
    ) -> Result<Response<pb::LoadBalancerReply>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let r = req.into_inner();
        m::check_name("name", &r.name)?;
        check_description(&r.description)?;
        let explicit = match r.vip.trim() {
            "" => None,
            v => Some(m::parse_address("vip", v)?),
        };
        let family = match r.vip_family.to_ascii_lowercase().as_str() {
            "" | "ipv4" | "v4" => Family::V4,
            "ipv6" | "v6" => Family::V6,
            other => {
                return Err(Error::invalid(
                    "vip_family",
                    format!("unknown family {other:?}; use ipv4 or ipv6"),
                )
                .into())
            }
        };
        let vips = self.shared.vips.clone();
        let (lb, generation) = self
            .write(move |t| {
                let (vip, allocated) = match explicit {
                    Some(v) => {
                        if let Some(o) = t.state.load_balancers.values().find(|l| l.vip == v) {
                            return Err(Error::AlreadyExists(format!(
                                "vip: {v} is already used by load balancer {}; leave vip empty \
                                 to allocate one",
                                o.id
                            )));
                        }
                        (v, false)
                    }
                    None => {
                        let used: HashSet<_> =
                            t.state.load_balancers.values().map(|l| l.vip).collect();
                        (vips.allocate(family, &used)?, true)
                    }
                };
                let id = t.allocate_id(Kind::LoadBalancer)?;
                let lb = m::LoadBalancer {
                    id,
                    scope: scope.clone(),
                    name: r.name.clone(),
                    vip,
                    vip_allocated: allocated,
                    description: r.description.clone(),
                };
                t.state.load_balancers.insert(id, lb.clone());
                Ok(lb)
            })
            .await?;
        Ok(Response::new(pb::LoadBalancerReply {
            load_balancer: Some(convert::load_balancer(&lb)),
            generation,
        }))
    }

    async fn get(
        &self,
        req: Request<pb::GetRequest>,
    ) -> Result<Response<pb::LoadBalancerReply>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let snap = self.shared.store.snapshot();
        let lb = owned(
            &snap.state.load_balancers,
            req.get_ref().id,
            &scope,
            "load-balancer",
        )?;
        Ok(Response::new(pb::LoadBalancerReply {
            load_balancer: Some(convert::load_balancer(lb)),
            generation: snap.generation,
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListLoadBalancersResponse>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let snap = self.shared.store.snapshot();
        Ok(Response::new(pb::ListLoadBalancersResponse {
            load_balancers: snap
                .state
                .load_balancers
                .values()
                .filter(|o| o.scope == scope)
                .map(convert::load_balancer)
                .collect(),
        }))
    }

    async fn update(
        &self,
        req: Request<pb::UpdateLoadBalancerRequest>,
    ) -> Result<Response<pb::LoadBalancerReply>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let r = req.into_inner();
        if let Some(n) = &r.name {
            m::check_name("name", n)?;
        }
        if let Some(d) = &r.description {
            check_description(d)?;
        }
        let (lb, generation) = self
            .write(move |t| {
                let lb = owned_mut(&mut t.state.load_balancers, r.id, &scope, "load-balancer")?;
                if let Some(n) = r.name.clone() {
                    lb.name = n;
                }
                if let Some(d) = r.description.clone() {
                    lb.description = d;
                }
                Ok(lb.clone())
            })
            .await?;
        Ok(Response::new(pb::LoadBalancerReply {
            load_balancer: Some(convert::load_balancer(&lb)),
            generation,
        }))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let id = req.get_ref().id;
        let ((), generation) = self
            .write(move |t| {
                owned(&t.state.load_balancers, id, &scope, "load-balancer")?;
                let users: Vec<u32> = t
                    .state
                    .listeners
                    .values()
                    .filter(|l| l.load_balancer_id == id)
                    .map(|l| l.id)
                    .collect();
                if !users.is_empty() {
                    return Err(Error::FailedPrecondition(format!(
                        "load balancer {id} still has listeners {}; delete them first",
                        ids(users.into_iter())
                    )));
                }
                t.state.load_balancers.remove(&id);
                Ok(())
            })
            .await?;
        Ok(Response::new(pb::DeleteResponse { generation }))
    }
}

#[tonic::async_trait]
impl ListenerService for Api {
    async fn create(
        &self,
        req: Request<pb::CreateListenerRequest>,
    ) -> Result<Response<pb::ListenerReply>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let r = req.into_inner();
        let port = m::parse_port("port", r.port)?;
        let protocol = m::parse_protocol("protocol", &r.protocol)?;
        let mode = m::parse_mode("mode", &r.mode)?;
        let encap = m::parse_encap("encap", &r.encap)?;
        check_encap(mode, &r.encap)?;
        let (l, generation) = self
            .write(move |t| {
                owned(
                    &t.state.load_balancers,
                    r.load_balancer_id,
                    &scope,
                    "load-balancer",
                )?;
                owned(&t.state.pools, r.pool_id, &scope, "pool")?;
                let id = t.allocate_id(Kind::Listener)?;
                let l = m::Listener {
                    id,
                    scope: scope.clone(),
                    load_balancer_id: r.load_balancer_id,
                    port,
                    protocol,
                    mode,
                    encap,
                    pool_id: r.pool_id,
                };
                t.state.listeners.insert(id, l.clone());
                Ok(l)
            })
            .await?;
        Ok(Response::new(pb::ListenerReply {
            listener: Some(convert::listener(&l)),
            generation,
        }))
    }

    async fn get(
        &self,
        req: Request<pb::GetRequest>,
    ) -> Result<Response<pb::ListenerReply>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let snap = self.shared.store.snapshot();
        let l = owned(&snap.state.listeners, req.get_ref().id, &scope, "listener")?;
        Ok(Response::new(pb::ListenerReply {
            listener: Some(convert::listener(l)),
            generation: snap.generation,
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListListenersResponse>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let lb = req.get_ref().load_balancer_id;
        let snap = self.shared.store.snapshot();
        Ok(Response::new(pb::ListListenersResponse {
            listeners: snap
                .state
                .listeners
                .values()
                .filter(|o| o.scope == scope && (lb == 0 || o.load_balancer_id == lb))
                .map(convert::listener)
                .collect(),
        }))
    }

    async fn update(
        &self,
        req: Request<pb::UpdateListenerRequest>,
    ) -> Result<Response<pb::ListenerReply>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let r = req.into_inner();
        let mode = r
            .mode
            .as_deref()
            .map(|v| m::parse_mode("mode", v))
            .transpose()?;
        let encap = r
            .encap
            .as_deref()
            .map(|v| m::parse_encap("encap", v))
            .transpose()?;
        let (l, generation) = self
            .write(move |t| {
                if let Some(p) = r.pool_id {
                    owned(&t.state.pools, p, &scope, "pool")?;
                }
                let l = owned_mut(&mut t.state.listeners, r.id, &scope, "listener")?;
                if let Some(v) = mode {
                    l.mode = v;
                }
                if let Some(v) = encap {
                    l.encap = v;
                }
                if let Some(v) = r.pool_id {
                    l.pool_id = v;
                }
                if l.mode != Mode::Tunnel && l.encap == fiberlb_shared::model::Encap::Gue {
                    return Err(Error::invalid(
                        "encap",
                        "gue is only for mode tunnel; set encap to ipip or mode to tunnel",
                    ));
                }
                Ok(l.clone())
            })
            .await?;
        Ok(Response::new(pb::ListenerReply {
            listener: Some(convert::listener(&l)),
            generation,
        }))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let id = req.get_ref().id;
        let ((), generation) = self
            .write(move |t| {
                owned(&t.state.listeners, id, &scope, "listener")?;
                t.state.listeners.remove(&id);
                Ok(())
            })
            .await?;
        Ok(Response::new(pb::DeleteResponse { generation }))
    }
}

fn check_encap(mode: Mode, encap: &str) -> Result<(), Error> {
    if mode != Mode::Tunnel && !encap.is_empty() && !encap.eq_ignore_ascii_case("ipip") {
        return Err(Error::invalid(
            "encap",
            format!("{encap:?} is only for mode tunnel; leave encap empty for mode {mode}"),
        ));
    }
    Ok(())
}

#[tonic::async_trait]
impl PoolService for Api {
    async fn create(
        &self,
        req: Request<pb::CreatePoolRequest>,
    ) -> Result<Response<pb::PoolReply>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let r = req.into_inner();
        m::check_name("name", &r.name)?;
        let algorithm = m::parse_algorithm("algorithm", &r.algorithm)?;
        let table_size = m::parse_table_size("table_size", r.table_size)?;
        let (p, generation) = self
            .write(move |t| {
                let hc = match r.health_check_id {
                    0 => None,
                    h => Some(owned(&t.state.health_checks, h, &scope, "health-check")?.id),
                };
                let id = t.allocate_id(Kind::Pool)?;
                let p = m::Pool {
                    id,
                    scope: scope.clone(),
                    name: r.name.clone(),
                    algorithm,
                    table_size,
                    health_check_id: hc,
                };
                t.state.pools.insert(id, p.clone());
                Ok(p)
            })
            .await?;
        Ok(Response::new(pb::PoolReply {
            pool: Some(convert::pool(&p)),
            generation,
        }))
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::PoolReply>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let snap = self.shared.store.snapshot();
        let p = owned(&snap.state.pools, req.get_ref().id, &scope, "pool")?;
        Ok(Response::new(pb::PoolReply {
            pool: Some(convert::pool(p)),
            generation: snap.generation,
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListPoolsResponse>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let snap = self.shared.store.snapshot();
        Ok(Response::new(pb::ListPoolsResponse {
            pools: snap
                .state
                .pools
                .values()
                .filter(|o| o.scope == scope)
                .map(convert::pool)
                .collect(),
        }))
    }

    async fn update(
        &self,
        req: Request<pb::UpdatePoolRequest>,
    ) -> Result<Response<pb::PoolReply>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let r = req.into_inner();
        if let Some(n) = &r.name {
            m::check_name("name", n)?;
        }
        let algorithm = r
            .algorithm
            .as_deref()
            .map(|v| m::parse_algorithm("algorithm", v))
            .transpose()?;
        let table_size = r
            .table_size
            .map(|v| m::parse_table_size("table_size", v))
            .transpose()?;
        let (p, generation) = self
            .write(move |t| {
                if let Some(h) = r.health_check_id.filter(|&h| h != 0) {
                    owned(&t.state.health_checks, h, &scope, "health-check")?;
                }
                let p = owned_mut(&mut t.state.pools, r.id, &scope, "pool")?;
                if let Some(v) = r.name.clone() {
                    p.name = v;
                }
                if let Some(v) = algorithm {
                    p.algorithm = v;
                }
                if let Some(v) = table_size {
                    p.table_size = v;
                }
                if let Some(h) = r.health_check_id {
                    p.health_check_id = (h != 0).then_some(h);
                }
                Ok(p.clone())
            })
            .await?;
        Ok(Response::new(pb::PoolReply {
            pool: Some(convert::pool(&p)),
            generation,
        }))
    }

    /// Deleting a pool deletes its backends with it; a pool a listener uses cannot be deleted.
    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let id = req.get_ref().id;
        let ((), generation) = self
            .write(move |t| {
                owned(&t.state.pools, id, &scope, "pool")?;
                let users: Vec<u32> = t
                    .state
                    .listeners
                    .values()
                    .filter(|l| l.pool_id == id)
                    .map(|l| l.id)
                    .collect();
                if !users.is_empty() {
                    return Err(Error::FailedPrecondition(format!(
                        "pool {id} is used by listeners {}; point them at another pool or \
                         delete them first",
                        ids(users.into_iter())
                    )));
                }
                t.state.pools.remove(&id);
                t.state.backends.retain(|_, b| b.pool_id != id);
                Ok(())
            })
            .await?;
        Ok(Response::new(pb::DeleteResponse { generation }))
    }
}

#[tonic::async_trait]
impl BackendService for Api {
    async fn create(
        &self,
        req: Request<pb::CreateBackendRequest>,
    ) -> Result<Response<pb::BackendReply>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let r = req.into_inner();
        let address = m::parse_address("address", &r.address)?;
        let port = m::parse_port("port", r.port)?;
        let weight = m::parse_weight("weight", r.weight.unwrap_or(1))?;
        let mac = m::parse_mac("mac", &r.mac)?;
        let admin_state = m::parse_admin_state("admin_state", &r.admin_state)?;
        let (b, generation) = self
            .write(move |t| {
                owned(&t.state.pools, r.pool_id, &scope, "pool")?;
                let id = t.allocate_id(Kind::Backend)?;
                let b = m::Backend {
                    id,
                    scope: scope.clone(),
                    pool_id: r.pool_id,
                    address,
                    port,
                    weight,
                    mac,
                    admin_state,
                    lease: None,
                };
                t.state.backends.insert(id, b.clone());
                Ok(b)
            })
            .await?;
        Ok(Response::new(pb::BackendReply {
            backend: Some(self.backend_pb(&b, self.healthy(b.id))),
            generation,
        }))
    }

    async fn get(
        &self,
        req: Request<pb::GetRequest>,
    ) -> Result<Response<pb::BackendReply>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let snap = self.shared.store.snapshot();
        let b = owned(&snap.state.backends, req.get_ref().id, &scope, "backend")?;
        Ok(Response::new(pb::BackendReply {
            backend: Some(self.backend_pb(b, self.healthy(b.id))),
            generation: snap.generation,
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListBackendsResponse>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let pool = req.get_ref().pool_id;
        let snap = self.shared.store.snapshot();
        let health = self.shared.health.health();
        let dp = self.shared.dataplane.status();
        Ok(Response::new(pb::ListBackendsResponse {
            backends: snap
                .state
                .backends
                .values()
                .filter(|o| o.scope == scope && (pool == 0 || o.pool_id == pool))
                .map(|b| {
                    let mut o =
                        convert::backend(b, health.get(&BackendId(b.id)).copied().unwrap_or(true));
                    o.next_hop = convert::next_hop_state(b, dp.as_ref());
                    o
                })
                .collect(),
        }))
    }

    async fn update(
        &self,
        req: Request<pb::UpdateBackendRequest>,
    ) -> Result<Response<pb::BackendReply>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let r = req.into_inner();
        let weight = r.weight.map(|w| m::parse_weight("weight", w)).transpose()?;
        let mac = r
            .mac
            .as_deref()
            .map(|v| m::parse_mac("mac", v))
            .transpose()?;
        let admin = r
            .admin_state
            .as_deref()
            .map(|v| m::parse_admin_state("admin_state", v))
            .transpose()?;
        let (b, generation) = self
            .write(move |t| {
                let b = owned_mut(&mut t.state.backends, r.id, &scope, "backend")?;
                if let Some(v) = weight {
                    b.weight = v;
                }
                if let Some(v) = mac {
                    b.mac = v;
                }
                if let Some(v) = admin {
                    b.admin_state = v;
                }
                Ok(b.clone())
            })
            .await?;
        Ok(Response::new(pb::BackendReply {
            backend: Some(self.backend_pb(&b, self.healthy(b.id))),
            generation,
        }))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let id = req.get_ref().id;
        let ((), generation) = self
            .write(move |t| {
                owned(&t.state.backends, id, &scope, "backend")?;
                t.state.backends.remove(&id);
                Ok(())
            })
            .await?;
        Ok(Response::new(pb::DeleteResponse { generation }))
    }

    async fn register(
        &self,
        req: Request<pb::RegisterBackendRequest>,
    ) -> Result<Response<pb::RegisterBackendResponse>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let r = req.into_inner();
        let address = m::parse_address("address", &r.address)?;
        let port = m::parse_port("port", r.port)?;
        let weight = m::parse_weight("weight", r.weight.unwrap_or(1))?;
        let mac = m::parse_mac("mac", &r.mac)?;
        if !(1000..=3_600_000).contains(&r.ttl_ms) {
            return Err(Error::invalid("ttl_ms", "must be 1000-3600000 (1 s to 1 h)").into());
        }
        let pool_id = r.pool_id;
        owned(
            &self.shared.store.snapshot().state.pools,
            pool_id,
            &scope,
            "pool",
        )?;
        let store = self.shared.store.clone();
        let ttl_ms = r.ttl_ms;
        let lease = tokio::task::spawn_blocking(move || store.grant_lease(ttl_ms))
            .await
            .map_err(|e| Status::internal(format!("store task failed: {e}")))??;
        let (b, generation) = self
            .write(move |t| {
                owned(&t.state.pools, pool_id, &scope, "pool")?;
                let existing = t
                    .state
                    .backends
                    .values()
                    .find(|b| b.pool_id == pool_id && b.address == address && b.port == port)
                    .map(|b| (b.id, b.lease.is_some()));
                let id = match existing {
                    // Re-registration (an agent that restarted): same backend, new lease.
                    Some((id, true)) => id,
                    Some((id, false)) => {
                        return Err(Error::AlreadyExists(format!(
                            "backend {} of pool {pool_id} exists as a permanent backend (id \
                             {id}); delete it first or register another address or port",
                            fmt_endpoint(address, port)
                        )))
                    }
                    None => t.allocate_id(Kind::Backend)?,
                };
                let b = m::Backend {
                    id,
                    scope: scope.clone(),
                    pool_id,
                    address,
                    port,
                    weight,
                    mac,
                    admin_state: AdminState::Enabled,
                    lease: Some(lease),
                };
                t.state.backends.insert(id, b.clone());
                t.attach_lease(lease.id, id);
                Ok(b)
            })
            .await?;
        Ok(Response::new(pb::RegisterBackendResponse {
            backend: Some(self.backend_pb(&b, self.healthy(b.id))),
            generation,
            lease_id: lease.id,
            ttl_ms: lease.ttl_ms,
        }))
    }

    async fn keep_alive(
        &self,
        req: Request<pb::KeepAliveRequest>,
    ) -> Result<Response<pb::KeepAliveResponse>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let id = req.get_ref().lease_id;
        let expired = || {
            Status::not_found(format!(
                "lease {id} has expired (or was never granted); register the backend again"
            ))
        };
        // Only the tenant whose backend holds the lease may renew it.
        let held = self
            .shared
            .store
            .snapshot()
            .state
            .backends
            .values()
            .any(|b| b.scope == scope && b.lease.is_some_and(|l| l.id == id));
        if !held {
            return Err(expired());
        }
        let store = self.shared.store.clone();
        let ttl = tokio::task::spawn_blocking(move || store.keep_alive(id))
            .await
            .map_err(|e| Status::internal(format!("store task failed: {e}")))??;
        match ttl {
            Some(ttl_ms) => Ok(Response::new(pb::KeepAliveResponse { ttl_ms })),
            None => Err(expired()),
        }
    }
}

impl Api {
    /// A health check from its message, zero fields taking the configured defaults.
    fn health_check_from(
        &self,
        h: pb::HealthCheck,
        id: u32,
        scope: Scope,
    ) -> Result<m::HealthCheck, Error> {
        let d = self.shared.health_defaults;
        let kind = m::parse_health_kind("kind", &h.kind)?;
        let or = |v: u32, def: u32| if v == 0 { def } else { v };
        let web = matches!(kind, m::HealthCheckKind::Http | m::HealthCheckKind::Https);
        let status = |field: &str, v: u32, def: u16| -> Result<u16, Error> {
            match v {
                0 => Ok(def),
                v => u16::try_from(v)
                    .map_err(|_| Error::invalid(field, format!("{v} is not an HTTP status"))),
            }
        };
        let hc = m::HealthCheck {
            id,
            scope,
            name: h.name,
            kind,
            interval_ms: or(h.interval_ms, d.interval_ms),
            timeout_ms: or(h.timeout_ms, d.timeout_ms),
            rise: or(h.rise, d.rise),
            fall: or(h.fall, d.fall),
            http_path: if web && h.http_path.is_empty() {
                "/".into()
            } else {
                h.http_path
            },
            expected_status: (
                status("expected_status_min", h.expected_status_min, 200)?,
                status("expected_status_max", h.expected_status_max, 399)?,
            ),
            udp_payload: h.udp_payload,
            udp_expected_reply: h.udp_expected_reply,
        };
        hc.validate()?;
        Ok(hc)
    }
}

#[tonic::async_trait]
impl HealthCheckService for Api {
    async fn create(
        &self,
        req: Request<pb::CreateHealthCheckRequest>,
    ) -> Result<Response<pb::HealthCheckReply>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let h = req
            .into_inner()
            .health_check
            .ok_or_else(|| Error::invalid("health_check", "missing"))?;
        // Validate before allocating (id 0 as a placeholder).
        let hc = self.health_check_from(h, 0, scope)?;
        let (hc, generation) = self
            .write(move |t| {
                let mut hc = hc.clone();
                hc.id = t.allocate_id(Kind::HealthCheck)?;
                t.state.health_checks.insert(hc.id, hc.clone());
                Ok(hc)
            })
            .await?;
        Ok(Response::new(pb::HealthCheckReply {
            health_check: Some(convert::health_check(&hc)),
            generation,
        }))
    }

    async fn get(
        &self,
        req: Request<pb::GetRequest>,
    ) -> Result<Response<pb::HealthCheckReply>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let snap = self.shared.store.snapshot();
        let h = owned(
            &snap.state.health_checks,
            req.get_ref().id,
            &scope,
            "health-check",
        )?;
        Ok(Response::new(pb::HealthCheckReply {
            health_check: Some(convert::health_check(h)),
            generation: snap.generation,
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListHealthChecksResponse>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let snap = self.shared.store.snapshot();
        Ok(Response::new(pb::ListHealthChecksResponse {
            health_checks: snap
                .state
                .health_checks
                .values()
                .filter(|o| o.scope == scope)
                .map(convert::health_check)
                .collect(),
        }))
    }

    async fn update(
        &self,
        req: Request<pb::UpdateHealthCheckRequest>,
    ) -> Result<Response<pb::HealthCheckReply>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let h = req
            .into_inner()
            .health_check
            .ok_or_else(|| Error::invalid("health_check", "missing"))?;
        let hc = self.health_check_from(h.clone(), h.id, scope.clone())?;
        let (hc, generation) = self
            .write(move |t| {
                let cur = owned_mut(&mut t.state.health_checks, hc.id, &scope, "health-check")?;
                *cur = hc.clone();
                Ok(hc.clone())
            })
            .await?;
        Ok(Response::new(pb::HealthCheckReply {
            health_check: Some(convert::health_check(&hc)),
            generation,
        }))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let scope = self.auth.scope(&req, req.get_ref().scope.as_ref())?;
        let id = req.get_ref().id;
        let ((), generation) = self
            .write(move |t| {
                owned(&t.state.health_checks, id, &scope, "health-check")?;
                let users: Vec<u32> = t
                    .state
                    .pools
                    .values()
                    .filter(|p| p.health_check_id == Some(id))
                    .map(|p| p.id)
                    .collect();
                if !users.is_empty() {
                    return Err(Error::FailedPrecondition(format!(
                        "health check {id} is used by pools {}; detach it first",
                        ids(users.into_iter())
                    )));
                }
                t.state.health_checks.remove(&id);
                Ok(())
            })
            .await?;
        Ok(Response::new(pb::DeleteResponse { generation }))
    }
}

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
        let oc = |id: u32, name: String, v: Option<&super::ObjectCounters>| {
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
fn port_counters(p: &super::PortCounters) -> pb::PortCounters {
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
