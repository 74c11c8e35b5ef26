/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Datagram sends (tp_btf/sock_send_length, a trusted struct sock, in the
 * sender's context before the syscall returns):
 *   - assign the socket cookie of inet datagram sockets that have none yet,
 *     so the SE_NET_SENDTO event read at sys_exit carries the cookie user
 *     space sees with SO_COOKIE;
 *   - on a connected UDP socket (connect() then send(): the glibc resolver,
 *     dig, most UDP clients), report the first successful send once per
 *     socket as SE_NET_DGRAM: UDP connect() itself cannot carry the cookie
 *     (none is assigned yet then), and packets seen later by the network
 *     inspector are tied to their process through this cookie.
 * Stream sockets return at once; unconnected ones that already have a cookie
 * too; a connected one already reported costs one LRU lookup.
 */
#include "net.h"

#define SE_TCP_ESTABLISHED 1   /* a connected UDP socket's sk_state */

SEC("tp_btf/sock_send_length")
int BPF_PROG(net_send_cookie, struct sock *sk, int ret, int flags)
{
	if (!sk || sk->sk_type != SOCK_DGRAM)
		return 0;
	__u16 family = sk->__sk_common.skc_family;
	if (family != SE_AF_INET && family != SE_AF_INET6)
		return 0;
	int connected = sk->__sk_common.skc_state == SE_TCP_ESTABLISHED;
	if (!connected && sk->__sk_common.skc_cookie.counter)
		return 0;
	if (!se_sensor__on(SE_SENSOR_NET))
		return 0;
	__u64 cookie = bpf_get_socket_cookie(sk);
	if (!connected || ret < 0 || bpf_map_lookup_elem(&se_dgram_seen, &cookie))
		return 0;
	__u8 one = 1;
	bpf_map_update_elem(&se_dgram_seen, &cookie, &one, BPF_ANY);
	if (se_skip(SE_SENSOR_NET))
		return 0;
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_net *ev = se_event__init(heap, SE_EV_NET, sizeof(struct se_net));
	if (!ev)
		return 0;
	ev->op = SE_NET_DGRAM;
	ev->ret = ret;
	ev->fd = -1;
	ev->flags = flags;
	ev->bytes = ret;
	se_net__sock_info(ev, sk);
	se_net__sock_local(ev, sk);
	se_net__sock_remote(ev, sk);
	se_event__emit(SE_SENSOR_NET, heap, sizeof(struct se_net));
	return 0;
}

SE_LICENSE;
