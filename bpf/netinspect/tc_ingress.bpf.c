// SPDX-License-Identifier: GPL-2.0
/*
 * ni_tc_ingress: clsact ingress of an inspected interface. Counts and parses
 * every packet (ni.h), keeps the flow table (local side = the destination)
 * when se_ni_cfg.flows and copies DNS messages (UDP / TCP port 53) into
 * se_ni_ring when se_ni_cfg.dns. Always TC_ACT_OK.
 */
#include "netinspect/ni.h"

SEC("tc")
int ni_tc_ingress(struct __sk_buff *skb)
{
	return se_ni__tc(skb, SE_NI_HOOK_TC_IN, SE_NI_DIR_IN);
}

SE_NI_LICENSE;
