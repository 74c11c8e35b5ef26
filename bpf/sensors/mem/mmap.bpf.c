/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mmap(2) asking for memory that is writable and executable at once, or
 * (se_cfg.mem_anon_exec) executable anonymous memory. Filtered at entry on
 * the arguments alone: the dynamic loader's PROT_READ|PROT_EXEC file
 * mappings never leave the kernel. Reported at exit with the address.
 */
#include "mem.h"

SEC("tp/syscalls/sys_enter_mmap")
int mem_mmap_enter(struct se_sys_enter_ctx *ctx)
{
	__u32 prot = ctx->args[2];
	if (!(prot & MEM_PROT_EXEC))
		return 0;
	__u32 flags = ctx->args[3];
	bool wx = prot & MEM_PROT_WRITE;
	bool anon = flags & MEM_MAP_ANONYMOUS;
	if (!wx && !(anon && se_cfg.mem_anon_exec))
		return 0;
	if (se_skip(SE_SENSOR_MEM))
		return 0;
	struct se_inflight v = {};
	for (int i = 0; i < 6; i++)
		v.args[i] = ctx->args[i];
	v.aux64[0] = anon;
	mem__save(&v, ctx->id, MEM_INFLIGHT_MARK);
	return 0;
}

SEC("tp/syscalls/sys_exit_mmap")
int mem_mmap_exit(struct se_sys_exit_ctx *ctx)
{
	struct se_inflight in;
	if (mem__take(&in, ctx->id, MEM_INFLIGHT_MARK))
		return 0;
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_mem *ev = se_event__init(heap, SE_EV_MEM, sizeof(struct se_mem));
	if (!ev)
		return 0;
	ev->op = SE_MEM_MMAP;
	ev->addr = in.args[0];
	ev->len = in.args[1];
	ev->prot = in.args[2];
	ev->mmap_flags = in.args[3];
	ev->fd = (__s32)in.args[4];
	ev->anon = in.aux64[0];
	ev->ret = ctx->ret;
	se_event__emit(SE_SENSOR_MEM, heap, sizeof(struct se_mem));
	return 0;
}

SE_LICENSE;
