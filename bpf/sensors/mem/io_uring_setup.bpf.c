/* SPDX-License-Identifier: GPL-2.0 */
/*
 * io_uring_setup(2) that fails (for example refused by the
 * kernel.io_uring_disabled sysctl): the io_uring_create tracepoint only
 * fires for rings that were created, so a refused attempt is reported here,
 * as SE_IO_URING_SETUP with ret < 0 and ring_ctx 0.
 */
#include "mem.h"

SEC("tp/syscalls/sys_enter_io_uring_setup")
int mem_io_uring_setup_enter(struct se_sys_enter_ctx *ctx)
{
	if (se_skip(SE_SENSOR_MEM))
		return 0;
	struct se_inflight v = {};
	v.args[0] = ctx->args[0];
	v.args[1] = ctx->args[1];
	mem__save(&v, ctx->id, MEM_INFLIGHT_MARK);
	return 0;
}

SEC("tp/syscalls/sys_exit_io_uring_setup")
int mem_io_uring_setup_exit(struct se_sys_exit_ctx *ctx)
{
	struct se_inflight in;
	if (mem__take(&in, ctx->id, MEM_INFLIGHT_MARK))
		return 0;
	if (ctx->ret >= 0)
		return 0;   /* reported by io_uring_create */
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_io_uring *ev = se_event__init(heap, SE_EV_IO_URING, sizeof(struct se_io_uring));
	if (!ev)
		return 0;
	__u32 flags = 0;
	/* struct io_uring_params { __u32 sq_entries, cq_entries, flags; ... } */
	bpf_probe_read_user(&flags, sizeof(flags), (void *)(in.args[1] + 8));
	ev->op = SE_IO_URING_SETUP;
	ev->ret = ctx->ret;
	ev->ring_fd = -1;
	ev->entries = in.args[0];
	ev->setup_flags = flags;
	se_event__emit(SE_SENSOR_MEM, heap, sizeof(struct se_io_uring));
	return 0;
}

SE_LICENSE;
