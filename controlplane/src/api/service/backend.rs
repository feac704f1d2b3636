//! `BackendService`: backends, and registered backends with leases.

use super::*;

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
