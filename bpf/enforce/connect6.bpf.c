// SPDX-License-Identifier: GPL-2.0
/*
 * Connect deny, IPv6: cgroup/connect6 on the cgroup v2 root (see
 * connect4.bpf.c). An IPv4-mapped destination (::ffff:a.b.c.d) on a
 * dual-stack socket becomes an IPv4 connection without passing connect4, so
 * it is looked up in the IPv4 trie here and reported as AF_INET.
 */
#include "enforce/net.h"

SEC("cgroup/connect6")
int enforce_connect6(struct bpf_sock_addr *ctx)
{
	struct se_enf_state *st = se_enf__state();
	if (!st)
		return 1;
	__u64 now = bpf_ktime_get_boot_ns();
	__u32 ip6[4];
	ip6[0] = ctx->user_ip6[0];
	ip6[1] = ctx->user_ip6[1];
	ip6[2] = ctx->user_ip6[2];
	ip6[3] = ctx->user_ip6[3];
	__u16 port = bpf_ntohs((__u16)ctx->user_port);

	if (ip6[0] == 0 && ip6[1] == 0 && ip6[2] == bpf_htonl(0x0000ffff)) {
		__u8 *addr = (__u8 *)&ip6[3];
		struct se_enf_match_val *block = se_enf_net__lookup4(&se_enf_conn4, SE_ENF_BLOCK_GEN, addr, now);
		struct se_enf_match_val *m = NULL;
		if (!block) {
			if (!st->active_gen)
				return 1;
			m = se_enf_net__lookup4(&se_enf_conn4, st->active_gen, addr, now);
			if (!m)
				return 1;
		}
		return se_enf_net__connect(ctx, st, SE_ENF_AF_INET, addr, port, block, m);
	}

	__u8 *addr = (__u8 *)ip6;
	struct se_enf_match_val *block = se_enf_net__lookup6(&se_enf_conn6, SE_ENF_BLOCK_GEN, addr, now);
	struct se_enf_match_val *m = NULL;
	if (!block) {
		if (!st->active_gen)
			return 1;
		m = se_enf_net__lookup6(&se_enf_conn6, st->active_gen, addr, now);
		if (!m)
			return 1;
	}
	return se_enf_net__connect(ctx, st, SE_ENF_AF_INET6, addr, port, block, m);
}

SE_LICENSE;
