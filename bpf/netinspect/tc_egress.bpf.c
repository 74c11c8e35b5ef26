// SPDX-License-Identifier: GPL-2.0
/*
 * ni_tc_egress: clsact egress of an inspected interface. As ni_tc_ingress,
 * with the local side = the source, and the socket cookie of the sending
 * socket (bpf_get_socket_cookie, 0 when the packet has none) stored in the
 * flow and in se_dns, so user space can name the process through the net
 * sensor's socket events. Always TC_ACT_OK.
 */
#include "netinspect/ni.h"

SEC("tc")
int ni_tc_egress(struct __sk_buff *skb)
{
	return se_ni__tc(skb, SE_NI_HOOK_TC_OUT, SE_NI_DIR_OUT);
}

SE_NI_LICENSE;
