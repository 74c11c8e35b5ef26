/* SPDX-License-Identifier: GPL-2.0 */
/*
 * socket() of raw sockets (SOCK_RAW, any family) and packet sockets
 * (AF_PACKET, any type): what sniffers, spoofers and covert channels need.
 * Ordinary stream/datagram sockets are filtered at enter (too common).
 */
#include "net.h"

SEC("tp/syscalls/sys_enter_socket")
int net_socket_enter(struct se_sys_enter_ctx *ctx)
{
	__u32 family = ctx->args[0];
	__u32 type = ctx->args[1];
	if ((type & SE_SOCK_TYPE_MASK) != SOCK_RAW && family != SE_AF_PACKET)
		return 0;
	if (se_skip(SE_SENSOR_NET))
		return 0;
	__u64 args[3] = { ctx->args[0], ctx->args[1], ctx->args[2] };
	se_net__save(ctx->id, SE_NET_IN_OTHER, args, 3, NULL, 0);
	return 0;
}

SEC("tp/syscalls/sys_exit_socket")
int net_socket_exit(struct se_sys_exit_ctx *ctx)
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
	ev->op = SE_NET_SOCKET;
	ev->ret = ctx->ret;
	ev->fd = ctx->ret;
	ev->family = in.args[0];
	ev->sock_type = in.args[1] & SE_SOCK_TYPE_MASK;
	ev->flags = in.args[1] & ~SE_SOCK_TYPE_MASK;   /* SOCK_NONBLOCK | SOCK_CLOEXEC */
	ev->protocol = in.args[2];
	if (ctx->ret >= 0) {
		struct sock *sk = se_net__fd_sock(ctx->ret);
		if (sk)
			ev->cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	}
	se_event__emit(SE_SENSOR_NET, heap, sizeof(struct se_net));
	return 0;
}

SE_LICENSE;
