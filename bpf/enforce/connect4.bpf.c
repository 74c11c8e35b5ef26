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
	return se_enf_net__check4(ctx);
}

SE_LICENSE;
