/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Datagram sends (tp_btf/sock_send_length, a trusted struct sock, in the
 * sender's context before the syscall returns): assign the socket cookie of
 * inet datagram sockets that have none yet, so the SE_NET_SENDTO event read
 * at sys_exit carries the cookie user space sees with SO_COOKIE.
 * Returns at once for stream sockets and sockets that already have a cookie.
 */
#include "net.h"

SEC("tp_btf/sock_send_length")
int BPF_PROG(net_send_cookie, struct sock *sk, int ret, int flags)
{
	if (!sk || sk->sk_type != SOCK_DGRAM || sk->__sk_common.skc_cookie.counter)
		return 0;
	if (!se_sensor__on(SE_SENSOR_NET))
		return 0;
	__u16 family = sk->__sk_common.skc_family;
	if (family == SE_AF_INET || family == SE_AF_INET6)
		bpf_get_socket_cookie(sk);
	return 0;
}

SE_LICENSE;
