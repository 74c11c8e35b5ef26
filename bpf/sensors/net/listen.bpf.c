/* SPDX-License-Identifier: GPL-2.0 */
/*
 * listen(): backlog and the local address of the socket (inet address and
 * port, or the AF_UNIX name). The TCP owner is recorded by tcp_state.bpf.c.
 */
#include "net.h"

SEC("tp/syscalls/sys_enter_listen")
int net_listen_enter(struct se_sys_enter_ctx *ctx)
{
	if (se_skip(SE_SENSOR_NET))
		return 0;
	__u64 args[2] = { ctx->args[0], ctx->args[1] };
	se_net__save(ctx->id, SE_NET_IN_OTHER, args, 2, NULL, 0);
	return 0;
}

SEC("tp/syscalls/sys_exit_listen")
int net_listen_exit(struct se_sys_exit_ctx *ctx)
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
	ev->op = SE_NET_LISTEN;
	ev->ret = ctx->ret;
	ev->fd = in.args[0];
	ev->backlog = in.args[1];
	struct sock *sk = se_net__fd_sock(ev->fd);
	if (sk) {
		se_net__sock_info(ev, sk);
		if (ev->family == SE_AF_UNIX)
			se_net__sock_unix(heap, &pos, ev, sk);
		else
			se_net__sock_local(ev, sk);
	}
	se_event__emit(SE_SENSOR_NET, heap, pos);
	return 0;
}

SE_LICENSE;
