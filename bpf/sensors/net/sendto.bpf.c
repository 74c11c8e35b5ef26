/* SPDX-License-Identifier: GPL-2.0 */
/*
 * sendto()/sendmsg() with an explicit destination on an unconnected
 * datagram socket (AF_INET/AF_INET6 SOCK_DGRAM: UDP, ICMP "ping" sockets):
 * the traffic that never shows as a connection. Calls without a destination
 * are dropped at enter, calls on stream or connected sockets at exit.
 * bytes is what the kernel accepted (ret) or, on failure, the length asked
 * for (sendto) / 0 (sendmsg). sendmmsg is not covered.
 */
#include "net.h"

SEC("tp/syscalls/sys_enter_sendto")
int net_sendto_enter(struct se_sys_enter_ctx *ctx)
{
	const void *uaddr = (const void *)ctx->args[4];
	__u32 addrlen = ctx->args[5];
	if (!uaddr || addrlen < 2)
		return 0;
	if (se_skip(SE_SENSOR_NET))
		return 0;
	__u64 args[6] = { ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3],
			  ctx->args[4], ctx->args[5] };
	se_net__save(ctx->id, SE_NET_IN_OTHER, args, 6, uaddr, addrlen);
	return 0;
}

SEC("tp/syscalls/sys_enter_sendmsg")
int net_sendmsg_enter(struct se_sys_enter_ctx *ctx)
{
	struct user_msghdr msg = {};
	if (bpf_probe_read_user(&msg, sizeof(msg), (void *)ctx->args[1]))
		return 0;
	if (!msg.msg_name || msg.msg_namelen < 2)
		return 0;
	if (se_skip(SE_SENSOR_NET))
		return 0;
	/* same layout as sendto: fd, -, len (unknown), flags, addr, addrlen */
	__u64 args[6] = { ctx->args[0], 0, 0, ctx->args[2], (__u64)msg.msg_name,
			  (__u32)msg.msg_namelen };
	se_net__save(ctx->id, SE_NET_IN_OTHER, args, 6, msg.msg_name, msg.msg_namelen);
	return 0;
}

static __always_inline int send_exit(struct se_sys_exit_ctx *ctx)
{
	struct se_inflight in;
	if (se_net__take(ctx->id, &in))
		return 0;
	struct sock *sk = se_net__fd_sock(in.args[0]);
	if (!sk)
		return 0;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != SE_AF_INET && family != SE_AF_INET6)
		return 0;
	if (BPF_CORE_READ(sk, sk_type) != SOCK_DGRAM)
		return 0;
	if (BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_ESTABLISHED)
		return 0;   /* connected datagram socket: the connect was reported */
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_net *ev = se_event__init(heap, SE_EV_NET, sizeof(struct se_net));
	if (!ev)
		return 0;
	ev->op = SE_NET_SENDTO;
	ev->ret = ctx->ret;
	ev->fd = in.args[0];
	ev->flags = in.args[3];
	ev->bytes = ctx->ret >= 0 ? (__u64)ctx->ret : in.args[2];
	se_net__sock_info(ev, sk);
	se_net__sock_local(ev, sk);
	se_net__addr_copy(ev, in.aux64, in.args[5], 1);
	se_event__emit(SE_SENSOR_NET, heap, sizeof(struct se_net));
	return 0;
}

SEC("tp/syscalls/sys_exit_sendto")
int net_sendto_exit(struct se_sys_exit_ctx *ctx)
{
	return send_exit(ctx);
}

SEC("tp/syscalls/sys_exit_sendmsg")
int net_sendmsg_exit(struct se_sys_exit_ctx *ctx)
{
	return send_exit(ctx);
}

SE_LICENSE;
