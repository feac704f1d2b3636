#!/usr/bin/python3
"""Independent check of a replay's output with scapy (not fiberlb's own parser).

Usage: check_capture.py OUT.pcap

For every packet: IPv4 header checksums, TCP/UDP/ICMP checksums (after reassembling
fragments), outer and inner headers of IPIP / IP6IP6 / GUE, and the rewrite each mode must
have done for examples/services.yaml. Prints a JSON summary of what it saw; exits 1 with the
list of problems if any packet is wrong.
"""
import json
import sys
from collections import Counter, defaultdict

from scapy.all import IP, TCP, UDP, ICMP, Ether, IPv6, rdpcap, raw, defragment  # noqa: E402
from scapy.layers.inet import IPerror, TCPerror

LB_MAC = "02:00:00:00:00:01"
CLIENT_GW = "02:00:00:00:00:fe"
BACKEND_GW = "02:00:00:00:00:fd"
WEB = {"10.10.1.1": "02:00:00:00:01:01", "10.10.1.2": "02:00:00:00:01:02"}

problems = []
seen = Counter()
game_backend = defaultdict(set)


def bad(i, msg):
    problems.append(f"packet {i}: {msg}")


def checksum_ok(layer_cls, pkt):
    """Rebuild `pkt` with the layer's checksum recomputed by scapy and compare."""
    if layer_cls not in pkt:
        return True
    got = pkt[layer_cls].chksum
    clone = pkt.copy()
    del clone[layer_cls].chksum
    want = clone.__class__(raw(clone))[layer_cls].chksum
    return got == want


def check_l3l4(i, ip, what):
    """IPv4/IPv6 packet `ip` (a scapy layer, detached): its checksums."""
    pkt = ip.__class__(raw(ip))
    if IP in pkt and pkt[IP].flags.MF == 0 and pkt[IP].frag == 0 or IPv6 in pkt:
        for cls in (IP, TCP, UDP, ICMP):
            if cls is UDP and UDP in pkt and pkt[UDP].chksum == 0 and IP in pkt:
                continue
            if not checksum_ok(cls, pkt):
                bad(i, f"{what}: bad {cls.__name__} checksum")
    elif IP in pkt and not checksum_ok(IP, pkt):
        bad(i, f"{what}: bad IP header checksum (fragment)")
    return pkt


def main(path):
    pkts = rdpcap(path)
    frags = []
    for i, p in enumerate(pkts):
        if Ether not in p:
            bad(i, "not Ethernet")
            continue
        if p[Ether].src != LB_MAC:
            bad(i, f"source MAC {p[Ether].src}, expected the LB's {LB_MAC}")
        if IP in p:
            ip = p[IP]
            if ip.flags.MF or ip.frag:
                frags.append(p)
                check_l3l4(i, ip, "fragment")
                if ip.dst != "10.10.0.53" or p[Ether].dst != "02:00:00:00:02:01":
                    bad(i, "fragment not sent to the dns backend by dsr")
                seen["fragments"] += 1
                continue
            inner = check_l3l4(i, ip, "outer")
            if ip.proto == 4:  # IPIP: not used by the example
                bad(i, "unexpected IPIP")
            elif UDP in ip and ip[UDP].dport == 6080:
                # GUE variant 1: the inner IPv4 packet right after the UDP header.
                if ip.src != "10.10.0.1" or ip.dst not in WEB or p[Ether].dst != BACKEND_GW:
                    bad(i, f"GUE outer {ip.src}->{ip.dst} via {p[Ether].dst}")
                if ip[UDP].chksum != 0:
                    bad(i, "GUE over IPv4 should carry no UDP checksum")
                inner = check_l3l4(i, IP(raw(ip[UDP].payload)), "GUE inner")
                if inner.dst != "10.10.0.100" or TCP not in inner or inner[TCP].dport != 443 or inner.ttl != 63:
                    bad(i, "GUE inner is not the client's packet to VIP:443 with TTL 63")
                if ip[UDP].sport < 0x8000:
                    bad(i, "GUE source port should come from the flow hash (>= 32768)")
                seen["web_tls"] += 1
            elif ICMP in ip:
                e = ip[ICMP]
                if ip.dst not in WEB or IPerror not in e or e[IPerror].src != ip.dst or e[TCPerror].sport != 8080:
                    bad(i, "ICMP error not rewritten for the nat backend")
                if not checksum_ok(IPerror, IP(raw(ip))):
                    bad(i, "quoted IP header checksum wrong")
                seen["icmp"] += 1
            elif TCP in ip and ip.dst in WEB:
                if ip[TCP].dport != 8080 or p[Ether].dst != WEB[ip.dst] or ip.ttl != 63:
                    bad(i, "web nat rewrite wrong")
                seen["web_http"] += 1
            elif TCP in ip and ip.src == "10.10.0.100":
                if ip[TCP].sport != 80 or p[Ether].dst != CLIENT_GW:
                    bad(i, "nat reply not rewritten to VIP:80 towards the client gateway")
                seen["nat_replies"] += 1
            elif ip.dst == "10.10.0.53":
                if p[Ether].dst != "02:00:00:00:02:01" or ip.ttl != 63:
                    bad(i, "dns dsr: wrong MAC or TTL")
                seen["dns_udp" if UDP in ip else "dns_tcp"] += 1
            elif UDP in ip and ip.dst.startswith("10.10.3."):
                if ip[UDP].dport != 27015:
                    bad(i, "game nat: wrong port")
                game_backend[ip.src].add(ip.dst)
                seen["game"] += 1
            else:
                bad(i, f"unexpected IPv4 packet {ip.summary()}")
        elif IPv6 in p:
            ip6 = p[IPv6]
            inner = check_l3l4(i, ip6, "IPv6")
            if ip6.nh == 41:
                if ip6.src != "fd00:10::1" or ip6.dst not in ("fd00:20::1", "fd00:20::2"):
                    bad(i, f"IP6IP6 outer {ip6.src}->{ip6.dst}")
                inner = check_l3l4(i, IPv6(raw(ip6.payload)), "IP6IP6 inner")
                if inner.dst != "fd00:10::100" or inner.hlim != 63 or inner[TCP].dport != 443:
                    bad(i, "IP6IP6 inner wrong")
                seen["api_v6"] += 1
            elif TCP in ip6 and ip6[TCP].dport == 9443:
                if ip6.dst != "fd00:20::1" or ip6.hlim != 63:
                    bad(i, "NAT66 rewrite wrong")
                seen["api_v6_nat"] += 1
            else:
                bad(i, f"unexpected IPv6 packet {ip6.summary()}")
        else:
            bad(i, "neither IPv4 nor IPv6 (junk must be dropped)")
    # Reassemble the fragments and check the UDP checksum the first fragment carries.
    if frags:
        whole = [x for x in defragment(frags) if IP in x and x[IP].flags.MF == 0 and x[IP].frag == 0]
        if len(whole) != 1 or not checksum_ok(UDP, IP(raw(whole[0][IP]))):
            bad(-1, "reassembled datagram has a bad UDP checksum")
    for client, backends in game_backend.items():
        if len(backends) != 1:
            bad(-1, f"game client {client} reached {sorted(backends)}: source-IP affinity broken")
    print(json.dumps({"packets": len(pkts), "seen": seen, "problems": problems}, indent=1))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
