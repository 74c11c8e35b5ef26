/* SPDX-License-Identifier: GPL-2.0 */
/*
 * unshare(2) and setns(2): the CLONE_* flags / (fd, nstype) asked for, the
 * result, and every namespace id before and after the call.
 */
#include "priv.h"

SEC("tp/syscalls/sys_enter_unshare")
int priv_unshare_enter(struct se_sys_enter_ctx *ctx)
{
	if (se_skip(SE_SENSOR_PRIV))
		return 0;
	priv__ns_save(ctx, 1);
	return 0;
}

SEC("tp/syscalls/sys_exit_unshare")
int priv_unshare_exit(struct se_sys_exit_ctx *ctx)
{
	struct se_inflight in;
	if (priv__take(&in, ctx->id))
		return 0;
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_ns *ev = priv__ns_event(heap, &in, SE_NS_UNSHARE, ctx->ret);
	if (!ev)
		return 0;
	ev->flags = in.args[0];
	ev->fd = -1;
	se_event__emit(SE_SENSOR_PRIV, heap, sizeof(struct se_ns));
	return 0;
}

SEC("tp/syscalls/sys_enter_setns")
int priv_setns_enter(struct se_sys_enter_ctx *ctx)
{
	if (se_skip(SE_SENSOR_PRIV))
		return 0;
	priv__ns_save(ctx, 2);
	return 0;
}

SEC("tp/syscalls/sys_exit_setns")
int priv_setns_exit(struct se_sys_exit_ctx *ctx)
{
	struct se_inflight in;
	if (priv__take(&in, ctx->id))
		return 0;
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_ns *ev = priv__ns_event(heap, &in, SE_NS_SETNS, ctx->ret);
	if (!ev)
		return 0;
	ev->fd = (__s32)in.args[0];
	ev->nstype = (__u32)in.args[1];
	se_event__emit(SE_SENSOR_PRIV, heap, sizeof(struct se_ns));
	return 0;
}

SE_LICENSE;
