//! `LoadBalancerService`: load balancers and their VIPs.

use super::*;

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
