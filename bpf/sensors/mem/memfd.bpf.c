/* SPDX-License-Identifier: GPL-2.0 */
/*
 * memfd_create(2): the name as given, MFD_* flags and the fd returned. A
 * memfd is how fileless payloads are staged before fexecve.
 */
#include "mem.h"

SEC("tp/syscalls/sys_enter_memfd_create")
int mem_memfd_create_enter(struct se_sys_enter_ctx *ctx)
{
	if (se_skip(SE_SENSOR_MEM))
		return 0;
	struct se_inflight v = {};
	v.args[0] = ctx->args[0];
	v.args[1] = ctx->args[1];
	mem__save(&v, ctx->id, MEM_INFLIGHT_MARK);
	return 0;
}

SEC("tp/syscalls/sys_exit_memfd_create")
int mem_memfd_create_exit(struct se_sys_exit_ctx *ctx)
{
	struct se_inflight in;
	if (mem__take(&in, ctx->id, MEM_INFLIGHT_MARK))
		return 0;
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_memfd *ev = se_event__init(heap, SE_EV_MEMFD, sizeof(struct se_memfd));
	if (!ev)
		return 0;
	__u32 pos = sizeof(struct se_memfd);
	ev->mfd_flags = in.args[1];
	ev->ret = ctx->ret;
	se_event__append_str(heap, &pos, &ev->name, (void *)in.args[0], SE_NAME_MAX, 1);
	se_event__emit(SE_SENSOR_MEM, heap, pos);
	return 0;
}

SE_LICENSE;
