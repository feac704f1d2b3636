// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
//
// fiberlb's XDP program: redirect fiberlb's traffic to the AF_XDP sockets, pass the rest.
//
// Redirected (to xsks_map[rx_queue_index]):
//   - TCP/UDP to a configured VIP (addr, dst port, proto); port 0 in `vips` means any port;
//   - TCP/UDP FROM a NAT backend (src addr, src port, proto) in `nat_return` (replies to un-NAT);
//   - ICMPv4 dest-unreachable / ICMPv6 packet-too-big whose embedded packet came from a VIP
//     (inner source matches `vips`) or went to a NAT backend (inner destination in `nat_return`);
//   - non-first fragments (IPv4 and IPv6) whose destination address is a VIP (`vip_addrs`).
// Everything else (ARP, SSH, BGP, health-check replies, ping) goes to the kernel: XDP_PASS.
//
// The host's own addresses (`local_addrs`) are checked after the VIP listeners and before
// `nat_return`: the host talks to the nat backends itself (health checks), and their replies to
// it come from a backend's address:port too. A nat return flow never goes to the host's own
// address (nat keeps the client's address as the source), so this takes nothing from fiberlb.
//
// The key layouts are mirrored in dataplane/src/nic/afxdp/program.rs; keep them in step.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define FAMILY_V4 4
#define FAMILY_V6 6

#define VLAN_HLEN 4
#define IPV6_EXT_MAX 6 // extension headers skipped at most (bounded for the verifier)

#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH 51
#define NEXTHDR_DEST 60
#define NEXTHDR_ICMPV6 58

#define ICMP_DEST_UNREACH 3
#define ICMPV6_PKT_TOOBIG 2

// Counter indices (also in program.rs).
#define CNT_REDIRECTED 0
#define CNT_PASSED 1
#define CNT_PARSE_ERROR 2
#define CNT_NO_SOCKET 3
#define CNT_MAX 4

// (address, port, protocol, family). IPv4 is stored v4-mapped (::ffff:a.b.c.d). 20 bytes, no
// padding.
struct flow_key {
	__u8 addr[16];
	__be16 port;
	__u8 proto;
	__u8 family;
};

struct addr_key {
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct flow_key);
	__type(value, __u32);
} vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, __u32);
} nat_return SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct addr_key);
	__type(value, __u32);
} vip_addrs SEC(".maps");

// The host's own addresses (all of them: Linux accepts any of its addresses on any interface),
// filled by the loader and refreshed about once a second.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct addr_key);
	__type(value, __u32);
} local_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += 1;
}

static __always_inline void set_v4(__u8 *addr, __be32 a)
{
	__builtin_memset(addr, 0, 10);
	addr[10] = 0xff;
	addr[11] = 0xff;
	__builtin_memcpy(addr + 12, &a, 4);
}

// A VIP listener for (addr, port, proto)? Port 0 in the map is a wildcard.
static __always_inline int is_vip(struct flow_key *k)
{
	if (bpf_map_lookup_elem(&vips, k))
		return 1;
	__be16 port = k->port;
	k->port = 0;
	int hit = bpf_map_lookup_elem(&vips, k) != 0;
	k->port = port;
	return hit;
}

static __always_inline int is_nat_backend(struct flow_key *k)
{
	return bpf_map_lookup_elem(&nat_return, k) != 0;
}

static __always_inline int is_vip_addr(const __u8 *addr)
{
	struct addr_key k;
	__builtin_memcpy(k.addr, addr, 16);
	return bpf_map_lookup_elem(&vip_addrs, &k) != 0;
}

static __always_inline int is_local_addr(const __u8 *addr)
{
	struct addr_key k;
	__builtin_memcpy(k.addr, addr, 16);
	return bpf_map_lookup_elem(&local_addrs, &k) != 0;
}

// Ports of a TCP/UDP header at `l4` (source first, then destination). 0 if truncated.
static __always_inline int l4_ports(void *l4, void *end, __be16 *sport, __be16 *dport)
{
	__be16 *p = l4;
	if ((void *)(p + 2) > end)
		return 0;
	*sport = p[0];
	*dport = p[1];
	return 1;
}

// Matches a packet (outer) of `proto` between src/dst addresses with the given ports.
static __always_inline int match_flow(const __u8 *src, const __u8 *dst, __u8 family, __u8 proto,
				      __be16 sport, __be16 dport)
{
	struct flow_key k;
	__builtin_memset(&k, 0, sizeof(k));
	k.family = family;
	k.proto = proto;
	__builtin_memcpy(k.addr, dst, 16);
	k.port = dport;
	if (is_vip(&k))
		return 1;
	if (is_local_addr(dst)) // the host's own traffic, even from a nat backend's address:port
		return 0;
	__builtin_memcpy(k.addr, src, 16);
	k.port = sport;
	return is_nat_backend(&k);
}

// Matches the packet embedded in an ICMP error: it was sent BY a VIP (inner source) or TO a
// NAT backend (inner destination) — unless the error is for the host itself (`outer_dst` is
// local): then the inner packet was the host's own, e.g. a health check.
static __always_inline int match_inner(const __u8 *outer_dst, const __u8 *src, const __u8 *dst,
				       __u8 family, __u8 proto, __be16 sport, __be16 dport)
{
	struct flow_key k;
	__builtin_memset(&k, 0, sizeof(k));
	k.family = family;
	k.proto = proto;
	__builtin_memcpy(k.addr, src, 16);
	k.port = sport;
	if (is_vip(&k))
		return 1;
	if (is_local_addr(outer_dst))
		return 0;
	__builtin_memcpy(k.addr, dst, 16);
	k.port = dport;
	return is_nat_backend(&k);
}

// Returns 1 to redirect, 0 to pass, -1 on a parse error (passed too).
static __always_inline int classify_v4(void *l3, void *end)
{
	struct iphdr *ip = l3;
	if ((void *)(ip + 1) > end)
		return -1;
	__u32 ihl = ip->ihl * 4;
	if (ihl < sizeof(*ip))
		return -1;
	__u8 src[16], dst[16];
	set_v4(src, ip->saddr);
	set_v4(dst, ip->daddr);

	// Non-first fragment: no L4 header, decide on the destination address alone.
	if (ip->frag_off & bpf_htons(0x1fff))
		return is_vip_addr(dst);

	void *l4 = l3 + ihl;
	__be16 sport, dport;
	if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) {
		if (!l4_ports(l4, end, &sport, &dport))
			return -1;
		return match_flow(src, dst, FAMILY_V4, ip->protocol, sport, dport);
	}
	if (ip->protocol != IPPROTO_ICMP)
		return 0;

	// ICMP: type, code, checksum, 4 bytes; then the inner IPv4 header.
	__u8 *icmp = l4;
	if ((void *)(icmp + 8) > end)
		return -1;
	if (icmp[0] != ICMP_DEST_UNREACH)
		return 0;
	struct iphdr *in = (void *)(icmp + 8);
	if ((void *)(in + 1) > end)
		return -1;
	__u32 in_ihl = in->ihl * 4;
	if (in_ihl < sizeof(*in))
		return -1;
	if (in->protocol != IPPROTO_TCP && in->protocol != IPPROTO_UDP)
		return 0;
	if (!l4_ports((void *)in + in_ihl, end, &sport, &dport))
		return -1;
	__u8 in_src[16], in_dst[16];
	set_v4(in_src, in->saddr);
	set_v4(in_dst, in->daddr);
	return match_inner(dst, in_src, in_dst, FAMILY_V4, in->protocol, sport, dport);
}

// Skips IPv6 extension headers (a bounded number of them). Returns the offset of the upper-layer
// header from `l3`, its protocol in *proto, and *frag = 1 for a non-first fragment; -1 on error.
static __always_inline int skip_v6_ext(void *l3, void *end, __u8 nexthdr, __u8 *proto, int *frag)
{
	__u32 off = sizeof(struct ipv6hdr);
#pragma unroll
	for (int i = 0; i < IPV6_EXT_MAX; i++) {
		__u8 *h = l3 + off;
		if (nexthdr != NEXTHDR_HOP && nexthdr != NEXTHDR_ROUTING &&
		    nexthdr != NEXTHDR_DEST && nexthdr != NEXTHDR_FRAGMENT &&
		    nexthdr != NEXTHDR_AUTH) {
			*proto = nexthdr;
			return off;
		}
		if ((void *)(h + 8) > end)
			return -1;
		__u32 len;
		if (nexthdr == NEXTHDR_FRAGMENT) {
			// Fragment offset in the upper 13 bits of bytes 2..3.
			if ((((__u16)h[2] << 8) | h[3]) & 0xfff8)
				*frag = 1;
			len = 8;
		} else if (nexthdr == NEXTHDR_AUTH) {
			len = ((__u32)h[1] + 2) * 4;
		} else {
			len = ((__u32)h[1] + 1) * 8;
		}
		nexthdr = h[0];
		off += len;
		if (off > 1024) // keeps the offset bounded for the verifier; no real chain is longer
			return -1;
		if (*frag) {
			*proto = nexthdr;
			return off;
		}
	}
	return -1;
}

static __always_inline int classify_v6(void *l3, void *end)
{
	struct ipv6hdr *ip = l3;
	if ((void *)(ip + 1) > end)
		return -1;
	__u8 proto = 0;
	int frag = 0;
	int off = skip_v6_ext(l3, end, ip->nexthdr, &proto, &frag);
	if (off < 0)
		return -1;
	if (frag)
		return is_vip_addr(ip->daddr.in6_u.u6_addr8);

	void *l4 = l3 + (off & 0x7ff);
	__be16 sport, dport;
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
		if (!l4_ports(l4, end, &sport, &dport))
			return -1;
		return match_flow(ip->saddr.in6_u.u6_addr8, ip->daddr.in6_u.u6_addr8, FAMILY_V6,
				  proto, sport, dport);
	}
	if (proto != NEXTHDR_ICMPV6)
		return 0;

	// ICMPv6: type, code, checksum, 4 bytes (MTU for packet-too-big); then the inner IPv6
	// header. The inner packet's extension headers are not skipped: the inner header must be
	// followed directly by TCP/UDP to match.
	__u8 *icmp = l4;
	if ((void *)(icmp + 8) > end)
		return -1;
	if (icmp[0] != ICMPV6_PKT_TOOBIG)
		return 0;
	struct ipv6hdr *in = (void *)(icmp + 8);
	if ((void *)(in + 1) > end)
		return -1;
	if (in->nexthdr != IPPROTO_TCP && in->nexthdr != IPPROTO_UDP)
		return 0;
	if (!l4_ports((void *)(in + 1), end, &sport, &dport))
		return -1;
	return match_inner(ip->daddr.in6_u.u6_addr8, in->saddr.in6_u.u6_addr8,
			   in->daddr.in6_u.u6_addr8, FAMILY_V6, in->nexthdr, sport, dport);
}

SEC("xdp")
int fiberlb_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end) {
		count(CNT_PARSE_ERROR);
		count(CNT_PASSED);
		return XDP_PASS;
	}
	__be16 ethertype = eth->h_proto;
	void *l3 = eth + 1;
	if (ethertype == bpf_htons(ETH_P_8021Q) || ethertype == bpf_htons(ETH_P_8021AD)) {
		__be16 *tag = l3;
		if ((void *)(tag + 2) > end) {
			count(CNT_PARSE_ERROR);
			count(CNT_PASSED);
			return XDP_PASS;
		}
		ethertype = tag[1];
		l3 += VLAN_HLEN;
	}

	int verdict;
	if (ethertype == bpf_htons(ETH_P_IP))
		verdict = classify_v4(l3, end);
	else if (ethertype == bpf_htons(ETH_P_IPV6))
		verdict = classify_v6(l3, end);
	else
		verdict = 0;

	if (verdict > 0) {
		int act = bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
		if (act == XDP_REDIRECT) {
			count(CNT_REDIRECTED);
			return act;
		}
		count(CNT_NO_SOCKET);
	} else if (verdict < 0) {
		count(CNT_PARSE_ERROR);
	}
	count(CNT_PASSED);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
