//! `fiberlbctl node status|drain|resume`.

use clap::Subcommand;
use fiberlb_controlplane::api::client::Clients;
use fiberlb_controlplane::pb;

use super::{print_json, table, Failure, Output};

#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// What this node announces over BGP (and why not), the BGP sessions, drain state.
    Status,
    /// Withdraw every VIP from BGP (persisted across restarts). Flows that still arrive are
    /// forwarded; wait for `drain state: drained` before stopping the node.
    Drain,
    /// Announce again what this node can serve.
    Resume,
}

fn ago(unix_ms: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
    if unix_ms == 0 {
        return "never".into();
    }
    #[allow(clippy::cast_precision_loss)]
    let secs = now.saturating_sub(unix_ms) as f64 / 1000.0;
    format!("{secs:.1} s ago")
}

pub async fn node_cmd(c: &mut Clients, out: Output, cmd: NodeCmd) -> Result<(), Failure> {
    let s = match cmd {
        NodeCmd::Status => c.node.status(pb::NodeStatusRequest {}).await?,
        NodeCmd::Drain => c.node.drain(pb::NodeDrainRequest {}).await?,
        NodeCmd::Resume => c.node.resume(pb::NodeResumeRequest {}).await?,
    }
    .into_inner();
    if out == Output::Json {
        return print_json(&s);
    }
    out!(
        "store:        {} {} at generation {}{}",
        s.store_kind,
        s.store_location,
        s.store_generation,
        if s.store_reachable {
            String::new()
        } else {
            format!(
                "; UNREACHABLE ({}): writes refused, forwarding the last configuration",
                s.store_error
            )
        }
    );
    if !s.bgp_enabled {
        out!("bgp:          not enabled ([bgp] in controlplane.toml): no VIP is announced by this node");
        return Ok(());
    }
    out!(
        "bgp:          through BIRD, include file {}",
        s.include_path
    );
    out!(
        "drain state:  {}{}",
        s.drain_state,
        if s.drain_since_unix_ms > 0 {
            format!(" (drained {})", ago(s.drain_since_unix_ms))
        } else {
            String::new()
        }
    );
    out!(
        "data plane:   {}; listener traffic {} packets/s",
        if s.dataplane_alive {
            "alive"
        } else {
            "NOT alive"
        },
        s.listener_packets_per_second
    );
    out!("last change:  {}", ago(s.last_change_unix_ms));
    if !s.last_error.is_empty() {
        out!("BIRD error:   {}", s.last_error);
    }
    out!("");
    table(
        &["VIP", "ANNOUNCED", "WHY NOT"],
        s.vips
            .iter()
            .map(|v| {
                vec![
                    v.address.clone(),
                    if v.announced { "yes" } else { "no" }.into(),
                    v.reason.clone(),
                ]
            })
            .collect(),
    );
    out!("");
    table(
        &["BGP SESSION", "STATE", "SINCE", "INFO"],
        s.sessions
            .iter()
            .map(|x| {
                vec![
                    x.name.clone(),
                    x.state.clone(),
                    x.since.clone(),
                    x.info.clone(),
                ]
            })
            .collect(),
    );
    Ok(())
}
