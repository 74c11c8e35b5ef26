/* SPDX-License-Identifier: GPL-2.0 */
/*
 * bind(): the local address asked for, in saddr/sport (or unix_path). When
 * port 0 was asked for and the bind succeeded, sport is the port the kernel
 * assigned (read back from the socket).
 */
#include "net.h"

SEC("tp/syscalls/sys_enter_bind")
int net_bind_enter(struct se_sys_enter_ctx *ctx)
{
	if (se_skip(SE_SENSOR_NET))
		return 0;
	const void *uaddr = (const void *)ctx->args[1];
	__u32 addrlen = ctx->args[2];
	__u64 args[3] = { ctx->args[0], ctx->args[1], ctx->args[2] };
	se_net__save(ctx->id, SE_NET_IN_OTHER, args, 3, uaddr, addrlen);
	return 0;
}

SEC("tp/syscalls/sys_exit_bind")
int net_bind_exit(struct se_sys_exit_ctx *ctx)
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

	ev->op = SE_NET_BIND;
	ev->ret = ctx->ret;
	ev->fd = in.args[0];
	struct sock *sk = se_net__fd_sock(ev->fd);
	if (sk)
		se_net__sock_info(ev, sk);
	__u16 family = se_net__addr_copy(ev, in.aux64, addrlen, 0);
	if (family)
		ev->family = family;
	if (sk && ctx->ret == 0 && ev->sport == 0 &&
	    (family == SE_AF_INET || family == SE_AF_INET6))
		ev->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (family == SE_AF_UNIX && addrlen > 2)
		se_net__append_unix(heap, &pos, ev, (const char *)in.args[1] + 2, addrlen - 2, 1);
	se_event__emit(SE_SENSOR_NET, heap, pos);
	return 0;
}

SE_LICENSE;
