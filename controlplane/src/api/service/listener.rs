//! `ListenerService`: listeners (port, protocol, mode, pool) of a load balancer.

use super::*;

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
