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
	return se_enf_net__check6(ctx);
}

SE_LICENSE;
