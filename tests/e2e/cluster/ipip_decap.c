// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
// IPIP decapsulation for the cluster test's tunnel-mode backends (tests/e2e/cluster.sh). This
// machine's kernel is built without CONFIG_NET_IPIP, so a backend cannot decapsulate with an
// ipip device; this XDP program, attached to the backend's interface, strips the outer IPv4
// header of IPIP packets (protocol 4, no options) and hands the inner packet — addressed to
// the VIP the backend holds on lo — to the kernel. Everything else passes untouched.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int ipip_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ethhdr copy;
	struct iphdr *outer, *inner;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	outer = (void *)(eth + 1);
	if ((void *)(outer + 1) > end || outer->protocol != IPPROTO_IPIP || outer->ihl != 5)
		return XDP_PASS;
	inner = outer + 1;
	if ((void *)(inner + 1) > end || inner->version != 4)
		return XDP_PASS;
	__builtin_memcpy(&copy, eth, sizeof(copy));
	if (bpf_xdp_adjust_head(ctx, (int)sizeof(struct iphdr)))
		return XDP_DROP;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	__builtin_memcpy(eth, &copy, sizeof(copy));
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
