//! `PoolService`: pools and their Maglev tables.

use super::*;

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
