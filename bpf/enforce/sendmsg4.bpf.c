// SPDX-License-Identifier: GPL-2.0
/*
 * Connect deny for datagrams, IPv4: cgroup/sendmsg4 on the cgroup v2 root.
 * An unconnected UDP socket names the destination with every sendto() and
 * never calls connect(), so the same decision as connect4 is taken here
 * (returning 0 fails the send with EPERM). Connected sockets were checked at
 * connect and do not come through here.
 */
#include "enforce/net.h"

SEC("cgroup/sendmsg4")
int enforce_sendmsg4(struct bpf_sock_addr *ctx)
{
	return se_enf_net__check4(ctx);
}

SE_LICENSE;
