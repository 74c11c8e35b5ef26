/* SPDX-License-Identifier: GPL-2.0 */
/*
 * accept()/accept4(): the new connection, read from the new socket: peer
 * address in daddr/dport, local address in saddr/sport (AF_UNIX: the
 * listener's name in unix_path). fd is the listening socket, ret the new fd.
 * For TCP the caller becomes the owner of the new socket, so its later state
 * changes carry this process.
 */
#include "net.h"

static __always_inline int accept_enter(struct se_sys_enter_ctx *ctx, __u32 flags)
{
	if (se_skip(SE_SENSOR_NET))
		return 0;
	__u64 args[4] = { ctx->args[0], ctx->args[1], ctx->args[2], flags };
	se_net__save(ctx->id, SE_NET_IN_OTHER, args, 4, NULL, 0);
	return 0;
}

static __always_inline int accept_exit(struct se_sys_exit_ctx *ctx)
{
	struct se_inflight in;
	if (se_net__take(ctx->id, &in))
		return 0;
	if (ctx->ret == -SE_EAGAIN)
		return 0;   /* non-blocking accept loop found the queue empty: not an event */
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_net *ev = se_event__init(heap, SE_EV_NET, sizeof(struct se_net));
	if (!ev)
		return 0;
	__u32 pos = sizeof(struct se_net);
	ev->op = SE_NET_ACCEPT;
	ev->ret = ctx->ret;
	ev->fd = in.args[0];
	ev->flags = in.args[3];
	struct sock *sk = NULL;
	if (ctx->ret >= 0)
		sk = se_net__fd_sock(ctx->ret);
	if (!sk)
		sk = se_net__fd_sock(ev->fd);   /* failed: describe the listener */
	if (sk) {
		se_net__sock_info(ev, sk);
		if (ev->family == SE_AF_UNIX) {
			se_net__sock_unix(heap, &pos, ev, sk);
		} else {
			se_net__sock_local(ev, sk);
			if (ctx->ret >= 0)
				se_net__sock_remote(ev, sk);
		}
		if (ctx->ret >= 0 && ev->protocol == IPPROTO_TCP &&
		    (ev->family == SE_AF_INET || ev->family == SE_AF_INET6))
			se_net__owner_set(sk, ev->cookie, ctx->ret);
	}
	se_event__emit(SE_SENSOR_NET, heap, pos);
	return 0;
}

SEC("tp/syscalls/sys_enter_accept")
int net_accept_enter(struct se_sys_enter_ctx *ctx)
{
	return accept_enter(ctx, 0);
}

SEC("tp/syscalls/sys_enter_accept4")
int net_accept4_enter(struct se_sys_enter_ctx *ctx)
{
	return accept_enter(ctx, ctx->args[3]);
}

SEC("tp/syscalls/sys_exit_accept")
int net_accept_exit(struct se_sys_exit_ctx *ctx)
{
	return accept_exit(ctx);
}

SEC("tp/syscalls/sys_exit_accept4")
int net_accept4_exit(struct se_sys_exit_ctx *ctx)
{
	return accept_exit(ctx);
}

SE_LICENSE;
