/* SPDX-License-Identifier: GPL-2.0 */
/*
 * connect(): the destination as given (AF_INET, AF_INET6, AF_UNIX incl.
 * abstract names), the source the kernel chose, and the result (-EINPROGRESS
 * for a non-blocking connect still in progress). The sockaddr is copied at
 * enter, before the kernel reads it, so a racing thread cannot rewrite what
 * is reported; an AF_UNIX path longer than that copy is read at exit.
 * The TCP outcome is reported by tcp_state.bpf.c (SE_NET_CONNECT_DONE).
 */
#include "net.h"

SEC("tp/syscalls/sys_enter_connect")
int net_connect_enter(struct se_sys_enter_ctx *ctx)
{
	if (se_skip(SE_SENSOR_NET))
		return 0;
	const void *uaddr = (const void *)ctx->args[1];
	__u32 addrlen = ctx->args[2];
	__u16 family = 0;
	if (!uaddr || addrlen < 2 || bpf_probe_read_user(&family, 2, uaddr))
		return 0;
	if (family != SE_AF_INET && family != SE_AF_INET6 && family != SE_AF_UNIX)
		return 0;   /* AF_UNSPEC (disconnect) and others: not reported */
	__u64 args[3] = { ctx->args[0], ctx->args[1], ctx->args[2] };
	se_net__save(ctx->id, SE_NET_IN_CONNECT, args, 3, uaddr, addrlen);
	return 0;
}

SEC("tp/syscalls/sys_exit_connect")
int net_connect_exit(struct se_sys_exit_ctx *ctx)
{
	struct se_inflight in;
	if (se_net__take(ctx->id, &in))
		return 0;
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_net *ev = se_event__init(heap, SE_EV_NET, sizeof(struct se_net));
	if (!ev)
		return 0;
	__u32 pos = sizeof(struct se_net);
	__u32 addrlen = in.args[2];

	ev->op = SE_NET_CONNECT;
	ev->ret = ctx->ret;
	ev->fd = in.args[0];
	__u16 family = se_net__addr_copy(ev, in.aux64, addrlen, 1);
	struct sock *sk = se_net__fd_sock(ev->fd);
	if (sk) {
		se_net__sock_info(ev, sk);
		if (family == SE_AF_INET || family == SE_AF_INET6)
			se_net__sock_local(ev, sk);
	}
	ev->family = family;   /* what was asked for (an AF_INET6 socket may connect AF_INET) */
	if (family == SE_AF_UNIX && addrlen > 2)
		se_net__append_unix(heap, &pos, ev, (const char *)in.args[1] + 2, addrlen - 2, 1);
	se_event__emit(SE_SENSOR_NET, heap, pos);
	return 0;
}

SE_LICENSE;
