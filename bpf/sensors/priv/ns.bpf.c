/* SPDX-License-Identifier: GPL-2.0 */
/*
 * unshare(2) and setns(2): the CLONE_* flags / (fd, nstype) asked for, the
 * result, and every namespace id before and after the call.
 */
#include "priv.h"

PRIV_NS_ENTER(unshare, 1)

SEC("tp/syscalls/sys_exit_unshare")
int priv_unshare_exit(struct se_sys_exit_ctx *ctx)
{
	struct se_inflight in;
	struct se_heap *heap;
	struct se_ns *ev = priv__ns_exit(ctx, &in, &heap, SE_NS_UNSHARE);
	if (!ev)
		return 0;
	ev->flags = in.args[0];
	ev->fd = -1;
	se_event__emit(SE_SENSOR_PRIV, heap, sizeof(struct se_ns));
	return 0;
}

PRIV_NS_ENTER(setns, 2)

SEC("tp/syscalls/sys_exit_setns")
int priv_setns_exit(struct se_sys_exit_ctx *ctx)
{
	struct se_inflight in;
	struct se_heap *heap;
	struct se_ns *ev = priv__ns_exit(ctx, &in, &heap, SE_NS_SETNS);
	if (!ev)
		return 0;
	ev->fd = (__s32)in.args[0];
	ev->nstype = (__u32)in.args[1];
	se_event__emit(SE_SENSOR_PRIV, heap, sizeof(struct se_ns));
	return 0;
}

SE_LICENSE;
