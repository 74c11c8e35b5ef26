// SPDX-License-Identifier: GPL-2.0
/*
 * Connect deny for datagrams, IPv6: cgroup/sendmsg6 on the cgroup v2 root.
 * An unconnected UDP socket names the destination with every sendto() and
 * never calls connect(), so the same decision as connect6 is taken here
 * (returning 0 fails the send with EPERM). Connected sockets were checked at
 * connect and do not come through here.
 */
#include "enforce/net.h"

SEC("cgroup/sendmsg6")
int enforce_sendmsg6(struct bpf_sock_addr *ctx)
{
	return se_enf_net__check6(ctx);
}

SE_LICENSE;
