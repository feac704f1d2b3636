#!/usr/bin/python3
"""Writes the seed corpus of the `pipeline` fuzz target to seeds/pipeline/ (run from fuzz/).

Each seed is the target's input format: [config byte][time step byte] then frames as
[len: u16 big-endian][frame]. Config bits: 0 host path, 1 gateway MACs, 2-3 headroom
(256, 0, 24, 44), 4-5 MTU (1500, 9000, 1280, 96), 6 side MACs, 7 alternate snapshot on
every other burst. The addresses are those of fuzz_targets/pipeline.rs's services: VIP A
10.10.0.100 / fd00::100 (every mode), VIP B .101 / ::101 (dsr tcp 80+443, nat udp 5353),
VIP C .102 / ::102 (tunnel GUE tcp 1000, IPIP udp 1000); nat backends 10.10.1.x:8080 /
fd00:1::x:8080 and 10.10.6.x:5353 / fd00:6::x:5353.

Needs scapy (Debian's python3-scapy: /usr/bin/python3).
"""
import os
import struct

from scapy.all import (
    ARP,
    ICMP,
    IP,
    TCP,
    UDP,
    Dot1AD,
    Dot1Q,
    Ether,
    ICMPv6EchoRequest,
    ICMPv6PacketTooBig,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    Raw,
    fragment,
    fragment6,
)

LB = "02:00:00:00:00:01"
PEER = "02:00:00:00:00:02"
VIP4 = {"A": "10.10.0.100", "B": "10.10.0.101", "C": "10.10.0.102"}
VIP6 = {"A": "fd00::100", "B": "fd00::101", "C": "fd00::102"}
NAT4, NAT6 = "10.10.1.1", "fd00:1::1"
NATB4, NATB6 = "10.10.6.1", "fd00:6::1"
LOCAL4 = "192.0.2.200"

# config bits
HOST = 0x01
GW = 0x02
SIDE = 0x40
ALT = 0x80


def headroom(i):
    return i << 2


def mtu(i):
    return i << 4


def c4(n):
    return f"192.0.2.{n}"


def c6(n):
    return f"2001:db8::{n:x}"


def eth(pkt, vlan=None, qinq=False):
    e = Ether(src=PEER, dst=LB)
    if qinq:
        return bytes(e / Dot1AD(vlan=100) / Dot1Q(vlan=vlan or 7) / pkt)
    if vlan is not None:
        return bytes(e / Dot1Q(vlan=vlan) / pkt)
    return bytes(e / pkt)


def ip(v6, src, dst, **kw):
    return IPv6(src=src, dst=dst, **kw) if v6 else IP(src=src, dst=dst, **kw)


def vip(v6, which="A"):
    return (VIP6 if v6 else VIP4)[which]


def client(v6, n):
    return c6(n) if v6 else c4(n)


def tcp(v6, n, port, flags="S", sport=None, which="A", payload=b"", **kw):
    return eth(
        ip(v6, client(v6, n), vip(v6, which))
        / TCP(sport=sport or 40000 + n, dport=port, flags=flags)
        / Raw(payload),
        **kw,
    )


def udp(v6, n, port, sport=None, which="A", payload=b"q" * 12, **kw):
    return eth(
        ip(v6, client(v6, n), vip(v6, which)) / UDP(sport=sport or 40000 + n, dport=port) / Raw(payload),
        **kw,
    )


def nat_reply(v6, n, proto="tcp", backend=None, bport=8080, cport=None, dst=None):
    src = backend or (NAT6 if v6 else NAT4)
    l4 = TCP(sport=bport, dport=cport or 40000 + n, flags="SA") if proto == "tcp" else UDP(
        sport=bport, dport=cport or 40000 + n
    ) / Raw(b"r" * 20)
    return eth(ip(v6, src, dst or client(v6, n)) / l4)


def icmp_about(v6, n, port, proto="tcp", which="A", quote=None):
    """ICMP frag-needed / packet-too-big from a router about the reply VIP:port -> client."""
    l4 = TCP(sport=port, dport=40000 + n, flags="SA") if proto == "tcp" else UDP(
        sport=port, dport=40000 + n
    ) / Raw(b"x" * 16)
    inner = bytes(ip(v6, vip(v6, which), client(v6, n)) / l4)
    if quote:
        inner = inner[:quote]
    if v6:
        return eth(IPv6(src="2001:db8:ffff::1", dst=vip(v6, which)) / ICMPv6PacketTooBig(mtu=1280) / Raw(inner))
    return eth(IP(src="198.51.100.1", dst=vip(v6, which)) / ICMP(type=3, code=4, nexthopmtu=1400) / Raw(inner))


def frags4(pkt_ip, size=24, **kw):
    return [eth(f, **kw) for f in fragment(pkt_ip, fragsize=size)]


def frags6(pkt_ip, size=1280 - 200):
    return [bytes(Ether(src=PEER, dst=LB) / f) for f in fragment6(pkt_ip, size)]


def seed(cfg, step, frames):
    out = bytes([cfg, step])
    for f in frames:
        out += struct.pack(">H", len(f)) + f
    return out


def seeds():
    s = {}
    big = b"P" * 200
    # nat: connection and replies, both families, tcp and udp, several clients.
    s["nat_v4"] = seed(GW, 1, [tcp(False, 1, 80), nat_reply(False, 1), tcp(False, 1, 80, "A", payload=b"GET /"),
                               udp(False, 2, 53), nat_reply(False, 2, "udp"), tcp(False, 1, 80, "FA")])
    s["nat_v6"] = seed(GW, 1, [tcp(True, 3, 80), nat_reply(True, 3), udp(True, 4, 53), nat_reply(True, 4, "udp")])
    s["nat_many_clients"] = seed(GW | ALT, 20, [tcp(v6, n, 80) for n in range(1, 12) for v6 in (False, True)])
    s["nat_vip_b_udp"] = seed(GW, 3, [udp(False, 5, 5353, which="B"), nat_reply(False, 5, "udp", NATB4, 5353),
                                      udp(True, 5, 5353, which="B"), nat_reply(True, 5, "udp", NATB6, 5353)])
    s["nat_reply_local"] = seed(GW | HOST, 0, [nat_reply(False, 6, dst=LOCAL4), nat_reply(False, 6),
                                               nat_reply(True, 6, dst="fd00::1")])
    # dsr, the empty pool, VIP B's dsr pair.
    s["dsr"] = seed(GW | SIDE, 2, [tcp(False, 7, 81), udp(False, 7, 81), tcp(True, 7, 81), udp(True, 7, 81),
                                   tcp(False, 8, 90), tcp(True, 8, 90), tcp(False, 9, 443, which="B"),
                                   tcp(True, 9, 80, which="B")])
    # tunnels: IPIP tcp/82 udp/85, GUE udp/83 tcp/84, VIP C; many clients reach both
    # backend families (IPIP, IP6IP6, 4in6, 6in4).
    tun = []
    for n in range(10, 16):
        for v6 in (False, True):
            tun += [tcp(v6, n, 82), udp(v6, n, 85), udp(v6, n, 83), tcp(v6, n, 84)]
    s["tunnel_all"] = seed(GW, 5, tun[:64])
    s["tunnel_vip_c"] = seed(GW, 5, [tcp(v6, n, 1000, which="C") for n in range(20, 26) for v6 in (False, True)]
                             + [udp(v6, n, 1000, which="C", payload=big) for n in range(20, 24) for v6 in (False, True)])
    s["tunnel_small_mtu_headroom"] = seed(GW | headroom(2) | mtu(3), 0,
                                          [tcp(False, 30, 82), udp(True, 31, 83, payload=big), tcp(True, 32, 84),
                                           udp(False, 33, 85)])
    s["tunnel_no_headroom"] = seed(GW | headroom(1) | mtu(2), 0, [tcp(False, 34, 82), udp(True, 35, 83)])
    # ICMP errors about VIP flows (nat, dsr, tunnel), full and short quotes.
    s["icmp_errors"] = seed(GW, 1, [tcp(False, 40, 80), icmp_about(False, 40, 80), icmp_about(True, 41, 53, "udp"),
                                    icmp_about(False, 42, 81, "udp"), icmp_about(True, 43, 82),
                                    icmp_about(False, 44, 83, "udp", quote=28), icmp_about(True, 45, 80, quote=44),
                                    icmp_about(False, 46, 5353, "udp", which="B")])
    s["icmp_not_ours"] = seed(GW | HOST, 0, [
        eth(IP(src=c4(47), dst=vip(False)) / ICMP(type=8) / Raw(b"ping")),
        eth(IPv6(src=c6(47), dst=vip(True)) / ICMPv6EchoRequest() / Raw(b"ping")),
        icmp_about(False, 47, 22),
    ])
    # fragments: VIP B (one pool per protocol: the fragment map), VIP C (tunnel), VIP A
    # (ambiguous), IPv4 and IPv6.
    f = []
    f += frags4(IP(src=c4(50), dst=vip(False, "B"), id=7) / UDP(sport=40050, dport=5353) / Raw(big))
    f += frags4(IP(src=c4(51), dst=vip(False, "B"), id=8) / TCP(sport=40051, dport=80) / Raw(big))
    f += frags4(IP(src=c4(52), dst=vip(False, "C"), id=9) / UDP(sport=40052, dport=1000) / Raw(big), size=64)
    f += frags4(IP(src=c4(53), dst=vip(False, "A"), id=10) / UDP(sport=40053, dport=53) / Raw(big), size=64)
    s["fragments_v4"] = seed(GW, 1, f[:64])
    f = []
    f += frags6(IPv6(src=c6(54), dst=vip(True, "B")) / IPv6ExtHdrFragment(id=11) / UDP(sport=40054, dport=5353) / Raw(big * 8))
    f += frags6(IPv6(src=c6(55), dst=vip(True, "C")) / IPv6ExtHdrFragment(id=12) / TCP(sport=40055, dport=1000) / Raw(big * 8))
    f += frags6(IPv6(src=c6(56), dst=vip(True, "A")) / IPv6ExtHdrFragment(id=13) / TCP(sport=40056, dport=80) / Raw(big * 8))
    s["fragments_v6"] = seed(GW, 1, f)
    # VLAN and QinQ.
    s["vlan"] = seed(GW, 1, [tcp(False, 60, 80, vlan=7), udp(True, 61, 83, vlan=8), tcp(False, 62, 82, qinq=True),
                             tcp(True, 63, 81, qinq=True), eth(ip(False, NAT4, c4(60)) / TCP(sport=8080, dport=40060, flags="SA"), vlan=7)])
    # IPv6 extension headers on the way to each mode.
    ext = lambda n, port, l4: eth(IPv6(src=c6(n), dst=vip(True)) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
                                  / IPv6ExtHdrRouting() / l4)
    s["ipv6_ext"] = seed(GW, 1, [ext(70, 80, TCP(sport=40070, dport=80, flags="S")),
                                 ext(71, 82, TCP(sport=40071, dport=82, flags="S")),
                                 ext(72, 83, UDP(sport=40072, dport=83) / Raw(b"q")),
                                 ext(73, 81, UDP(sport=40073, dport=81) / Raw(b"q")),
                                 eth(IPv6(src=NAT6, dst=c6(74)) / IPv6ExtHdrDestOpt() / TCP(sport=8080, dport=40074, flags="SA"))])
    # TTL 1, IPv4 options, junk, the host's traffic (with and without the host path).
    host = [
        eth(IP(src=c4(80), dst=vip(False), ttl=1) / TCP(sport=40080, dport=80, flags="S")),
        eth(IPv6(src=c6(80), dst=vip(True), hlim=1) / UDP(sport=40080, dport=83)),
        eth(IP(src=c4(81), dst=vip(False), options=b"\x01\x01\x01\x00") / TCP(sport=40081, dport=82, flags="S")),
        bytes(Ether(src=PEER, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=c4(82), pdst="10.10.0.1")),
        eth(IP(src=c4(83), dst="10.10.0.1") / TCP(sport=40083, dport=22, flags="S")),
        eth(IP(src=c4(84), dst=vip(False)) / TCP(sport=40084, dport=22, flags="S")),
        eth(IP(src="10.10.0.2", dst="224.0.0.5", proto=89) / Raw(b"\0" * 24)),
        eth(IP(src=c4(85), dst=vip(False)) / TCP(sport=40085, dport=80, flags="S"))[:40],
    ]
    s["host_and_junk_off"] = seed(GW, 0, host)
    s["host_and_junk_on"] = seed(GW | HOST, 0, host)
    # No gateways: backends without a MAC need one (NoNextHop), nat replies too.
    s["no_gateways"] = seed(0, 1, [tcp(False, n, 80) for n in range(90, 96)] + [nat_reply(False, 90), tcp(True, 96, 82)])
    # Flows across the two snapshots: the same clients again after time passes.
    again = [tcp(False, n, 80, "A") for n in range(100, 110)] + [udp(True, n, 53) for n in range(100, 106)]
    s["alternate_snapshot"] = seed(GW | ALT, 30, again + again + [tcp(False, 100, 80, "R"), tcp(False, 100, 80, "S")])
    return s


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipeline")
    os.makedirs(out, exist_ok=True)
    for name, data in seeds().items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"{len(seeds())} seeds in {out}")


if __name__ == "__main__":
    main()
