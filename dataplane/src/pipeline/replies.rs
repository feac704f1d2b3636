//! The packets that come back: a backend's reply on a nat listener (translated back to the
//! VIP) and ICMP errors about a VIP flow (sent on to that flow's backend). Out of the burst
//! loop's way; the per-packet rules of [`super`] (no panic, no allocation) hold here too.

use super::*;

impl Pipeline {
    /// A backend's reply on a nat listener: source back to VIP:port, on to the client.
    pub(super) fn nat_reply(
        &mut self,
        snap: &Snapshot,
        pkt: &mut PacketBuf<'_>,
        p: &Parsed,
        li: u32,
    ) -> Verdict {
        let Some(l) = snap.listeners.get(li as usize) else {
            return Verdict::Drop(DropReason::NoListener);
        };
        let Some(dst_mac) = self.cfg.client_gateway_mac else {
            return Verdict::Drop(DropReason::NoNextHop);
        };
        let Some(&our_mac) = pkt.data().first_chunk::<6>() else {
            return Verdict::Drop(DropReason::Malformed);
        };
        let src_mac = self.cfg.client_side_mac.unwrap_or(our_mac);
        let data = pkt.data_mut();
        let rewritten = rewrite::dec_ttl(data, p)
            .and_then(|()| rewrite::nat(data, p, false, &l.vip_addr, l.port))
            .and_then(|()| rewrite::set_macs(data, &dst_mac, &src_mac));
        if let Err(r) = rewritten {
            return Verdict::Drop(r);
        }
        self.counters.nat_replies += 1;
        Verdict::ToClient
    }

    /// An ICMP "fragmentation needed" / "packet too big" about a VIP flow: the quoted
    /// packet went VIP:port -> client (a backend's reply), so the owning flow is
    /// client -> VIP:port; send the error to that flow's backend.
    pub(super) fn icmp_error(
        &mut self,
        snap: &Snapshot,
        pkt: &mut PacketBuf<'_>,
        p: Parsed,
        now: u32,
    ) -> Verdict {
        let p = &p;
        let Some(inner) = parse::icmp_inner(pkt.data(), p) else {
            return self.not_ours(DropReason::IcmpNotForVip);
        };
        if inner.src != p.dst {
            return self.not_ours(DropReason::IcmpNotForVip);
        }
        let Some(&li) = snap
            .listener_map
            .get(&key_of(p.v6, &inner.src, inner.sport, inner.proto))
        else {
            return self.not_ours(DropReason::IcmpNotForVip);
        };
        let Some(l) = snap.listeners.get(li as usize) else {
            return Verdict::Drop(DropReason::IcmpNotForVip);
        };
        let h = self.hash5(
            p.v6,
            &inner.dst,
            &inner.src,
            inner.dport,
            inner.sport,
            inner.proto,
        );
        let key = FlowKey {
            client: inner.dst,
            listener: l.slot,
            port: inner.dport,
        };
        let handle = match self.flows.lookup(h, &key, now) {
            Some(hit) if Self::usable_backend(snap, l, hit.backend).is_some() => hit.backend,
            _ => Self::maglev(
                &self.hasher,
                snap,
                l,
                (inner.dst, inner.src, inner.proto, p.v6),
                h,
                false,
            ),
        };
        let Some(b) = snap.backend(handle) else {
            return Verdict::Drop(DropReason::NoBackend);
        };
        let v = self.send_to_backend(snap, pkt, p, l, b, h, Some(&inner));
        if v == Verdict::ToBackend {
            self.counters.icmp_to_backend += 1;
        }
        v
    }
}
