//! `NodeService`: the node's VIP announcements and drain (administrator only).

use std::time::Duration;

use tonic::{Request, Response, Status};

use super::auth::Caller;
use super::service::Api;
use crate::bgp::NodeStatus;
use crate::pb;
use crate::pb::node_service_server::NodeService;

/// How long `Drain`/`Resume` wait for BIRD to take the change before answering.
const SETTLE: Duration = Duration::from_secs(5);

/// The reply for `s` and the store's state `st`.
pub fn status_reply(s: &NodeStatus, st: &crate::store::StoreHealth) -> pb::NodeStatusResponse {
    let mut vips: Vec<pb::NodeVip> = s
        .announced
        .iter()
        .map(|v| pb::NodeVip {
            address: v.to_string(),
            announced: true,
            reason: String::new(),
        })
        .collect();
    vips.extend(s.withheld.iter().map(|(v, why)| pb::NodeVip {
        address: v.to_string(),
        announced: false,
        reason: why.clone(),
    }));
    pb::NodeStatusResponse {
        bgp_enabled: s.bgp_enabled,
        drain_state: s.drain.as_str().to_string(),
        drain_since_unix_ms: s.drain_since_unix_ms,
        listener_packets_per_second: s.listener_pps,
        dataplane_alive: s.dataplane_alive,
        vips,
        sessions: s
            .sessions
            .iter()
            .map(|x| pb::BgpSession {
                name: x.name.clone(),
                state: x.state.clone(),
                since: x.since.clone(),
                info: x.info.clone(),
                established: x.established(),
            })
            .collect(),
        last_change_unix_ms: s.last_change_unix_ms,
        last_error: s.last_error.clone(),
        include_path: s.include_path.clone(),
        store_kind: st.kind.to_string(),
        store_location: st.location.clone(),
        store_reachable: st.reachable,
        store_error: st.error.clone(),
        store_generation: st.generation,
    }
}

impl Api {
    fn admin<T>(&self, req: &Request<T>) -> Result<(), Status> {
        match self.auth().caller(req)? {
            Caller::Admin => Ok(()),
            Caller::Tenant(_) => Err(Status::permission_denied(
                "node operations are for the node's administrator (the local socket without a \
                 token), not for a tenant token",
            )),
        }
    }

    async fn set_drain(&self, drain: bool) -> Result<Response<pb::NodeStatusResponse>, Status> {
        let node = self.shared().node.clone();
        node.set_drain(drain).map_err(Status::failed_precondition)?;
        let s = node.settled(SETTLE).await;
        if !s.last_error.is_empty() {
            return Err(Status::unavailable(format!(
                "drain mark saved, but BIRD did not take the change yet (fiberlbd retries): {}",
                s.last_error
            )));
        }
        Ok(Response::new(status_reply(
            &s,
            &self.shared().store.health().borrow(),
        )))
    }
}

#[tonic::async_trait]
impl NodeService for Api {
    async fn status(
        &self,
        req: Request<pb::NodeStatusRequest>,
    ) -> Result<Response<pb::NodeStatusResponse>, Status> {
        self.admin(&req)?;
        Ok(Response::new(status_reply(
            &self.shared().node.status(),
            &self.shared().store.health().borrow(),
        )))
    }

    async fn drain(
        &self,
        req: Request<pb::NodeDrainRequest>,
    ) -> Result<Response<pb::NodeStatusResponse>, Status> {
        self.admin(&req)?;
        self.set_drain(true).await
    }

    async fn resume(
        &self,
        req: Request<pb::NodeResumeRequest>,
    ) -> Result<Response<pb::NodeStatusResponse>, Status> {
        self.admin(&req)?;
        self.set_drain(false).await
    }
}
