// SPDX-License-Identifier: GPL-2.0
/*
 * Connect deny, IPv4: cgroup/connect4 on the cgroup v2 root, so it runs for
 * every process on the host (hybrid hosts included: scope is decided by map
 * lookups, never by where the program is attached). Returning 0 fails the
 * connect() with EPERM; the process keeps running. See net.h for the maps.
 */
#include "enforce/net.h"

SEC("cgroup/connect4")
int enforce_connect4(struct bpf_sock_addr *ctx)
{
	struct se_enf_state *st = se_enf__state();
	if (!st)
		return 1;
	__u64 now = bpf_ktime_get_boot_ns();
	__u32 ip = ctx->user_ip4;              /* network order, as the trie stores it */
	__u8 *addr = (__u8 *)&ip;
	__u16 port = bpf_ntohs((__u16)ctx->user_port);

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

SE_LICENSE;
