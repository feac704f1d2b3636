//! Backend next hops: MACs from the kernel's neighbour table, and probes that make the kernel
//! resolve the missing ones.

use super::*;

/// Addresses of backends without a MAC that `table` does not know.
pub(super) fn unresolved_addresses(set: &ServiceSet, table: &HashMap<IpAddr, Mac>) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = set
        .backends
        .iter()
        .filter(|b| b.mac.is_none() && !table.contains_key(&b.address))
        .map(|b| b.address)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Makes the kernel resolve `addrs`: one empty UDP datagram each to the discard port (9).
/// Sending is what starts ARP / neighbour discovery on the interface the kernel's routes pick;
/// the datagram itself is discarded by a backend (or answered with ICMP port unreachable).
/// Best effort: errors (no route, a full queue) are logged at debug level.
pub fn probe_neighbours(addrs: &[IpAddr]) {
    for a in addrs {
        let bind: std::net::SocketAddr = if a.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sent = std::net::UdpSocket::bind(bind).and_then(|s| {
            s.set_nonblocking(true)?;
            s.send_to(&[], (*a, 9))
        });
        if let Err(e) = sent {
            log::debug!("neighbour probe to {a}: {e}");
        }
    }
}

/// Sets the MAC of every backend that has none and whose address is in `table`; returns the
/// addresses left unresolved.
pub fn fill_macs(set: &mut ServiceSet, table: &HashMap<IpAddr, Mac>) -> Vec<IpAddr> {
    let mut unresolved = Vec::new();
    for b in set.backends.iter_mut().filter(|b| b.mac.is_none()) {
        match table.get(&b.address) {
            Some(mac) => b.mac = Some(*mac),
            None => unresolved.push(b.address),
        }
    }
    unresolved
}

/// Reads the kernel's neighbour table over netlink (`RTM_GETNEIGH`), in the network namespace
/// of the calling process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NeighbourResolver {
    /// Only entries of this interface (`None`: any interface).
    pub interface: Option<String>,
}

impl NeighbourResolver {
    /// `address → MAC` of every usable entry (reachable, stale, delay, probe, permanent; not
    /// incomplete or failed) with a 6-byte link-layer address.
    ///
    /// # Errors
    /// [`ProgramError::Neighbours`] when netlink fails or the interface does not exist.
    pub async fn table(&self) -> Result<HashMap<IpAddr, Mac>, ProgramError> {
        use futures_util::TryStreamExt;
        use netlink_packet_route::neighbour::{
            NeighbourAddress, NeighbourAttribute, NeighbourState,
        };
        let err = |what: &str, e: &dyn std::fmt::Display| {
            ProgramError::Neighbours(format!("{what}: {e}"))
        };
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| err("netlink socket", &e))?;
        let conn = tokio::spawn(conn);
        let result = async {
            let ifindex = match &self.interface {
                Some(name) => {
                    let mut links = handle.link().get().match_name(name.clone()).execute();
                    match links.try_next().await {
                        Ok(Some(link)) => Some(link.header.index),
                        Ok(None) => None,
                        Err(e) => return Err(err(&format!("interface {name}"), &e)),
                    }
                    .ok_or_else(|| {
                        ProgramError::Neighbours(format!(
                            "interface {name} does not exist in this network namespace"
                        ))
                    })
                    .map(Some)?
                }
                None => None,
            };
            let mut table = HashMap::new();
            let mut entries = handle.neighbours().get().execute();
            while let Some(n) = entries
                .try_next()
                .await
                .map_err(|e| err("neighbour dump", &e))?
            {
                if ifindex.is_some_and(|i| i != n.header.ifindex) {
                    continue;
                }
                if !matches!(
                    n.header.state,
                    NeighbourState::Reachable
                        | NeighbourState::Stale
                        | NeighbourState::Delay
                        | NeighbourState::Probe
                        | NeighbourState::Permanent
                ) {
                    continue;
                }
                let mut ip = None;
                let mut mac = None;
                for a in &n.attributes {
                    match a {
                        NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                            ip = Some(IpAddr::V4(*v4));
                        }
                        NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                            ip = Some(IpAddr::V6(*v6));
                        }
                        NeighbourAttribute::LinkLayerAddress(l) => {
                            mac = <[u8; 6]>::try_from(l.as_slice()).ok();
                        }
                        _ => {}
                    }
                }
                if let (Some(ip), Some(mac)) = (ip, mac) {
                    if mac != [0; 6] {
                        table.insert(ip, mac);
                    }
                }
            }
            Ok(table)
        }
        .await;
        conn.abort();
        result
    }
}
