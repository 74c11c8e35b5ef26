// SPDX-License-Identifier: GPL-2.0
/*
 * The XDP entry program: the one XDP program of an interface (only one fits
 * here: libxdp's dispatcher needs trampolines this kernel refuses). It drops
 * packets whose IPv4/IPv6 source is denied (net.h: inbound tries, response
 * blocks), then hands every other packet to slot 0 of se_xdp_next, the
 * network inspector's, and passes it when that slot is empty.
 * Parsed: Ethernet, up to two VLAN tags (802.1Q / 802.1ad), IPv4, IPv6.
 */
#include "enforce/net.h"

struct se_enf_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

SEC("xdp")
int enforce_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		goto next;
	__u16 proto = eth->h_proto;
	void *l3 = eth + 1;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(SE_ENF_ETH_P_8021Q) && proto != bpf_htons(SE_ENF_ETH_P_8021AD))
			break;
		struct se_enf_vlan_hdr *vh = l3;
		if ((void *)(vh + 1) > end)
			goto next;
		proto = vh->proto;
		l3 = vh + 1;
	}

	int verdict = SE_ENF_XDP_PASS;
	if (proto == bpf_htons(SE_ENF_ETH_P_IP)) {
		struct iphdr *ip = l3;
		if ((void *)(ip + 1) > end)
			goto next;
		__u32 saddr = ip->saddr;
		verdict = se_enf_net__inbound(ctx, SE_ENF_AF_INET, (__u8 *)&saddr, ip->protocol);
	} else if (proto == bpf_htons(SE_ENF_ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		if ((void *)(ip6 + 1) > end)
			goto next;
		__u8 saddr[16];
		__builtin_memcpy(saddr, &ip6->saddr, 16);
		verdict = se_enf_net__inbound(ctx, SE_ENF_AF_INET6, saddr, ip6->nexthdr);
	}
	if (verdict == SE_ENF_XDP_DROP)
		return XDP_DROP;
next:
	bpf_tail_call(ctx, &se_xdp_next, 0);
	return XDP_PASS;
}

SE_LICENSE;
