//! `HealthCheckService`: health checks attached to pools.

use super::*;

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
