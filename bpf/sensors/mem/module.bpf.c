/* SPDX-License-Identifier: GPL-2.0 */
/*
 * init_module, finit_module, delete_module on kernels built with
 * CONFIG_MODULES (their syscall tracepoints exist): the attempt with its
 * arguments and result. Without module support these tracepoints are
 * missing; the loader then attaches module_fallback.bpf.c instead.
 */
#include "mem.h"

/* delete_module has 2 arguments: reading a third would make attach fail (EACCES) */
static __always_inline int module_enter(struct se_sys_enter_ctx *ctx, __u32 op)
{
	if (se_skip(SE_SENSOR_MEM))
		return 0;
	struct se_inflight v = {};
	v.args[0] = ctx->args[0];
	v.args[1] = ctx->args[1];
	if (op != SE_MODULE_DELETE)
		v.args[2] = ctx->args[2];
	v.aux64[0] = op;
	mem__save(&v, ctx->id, MEM_INFLIGHT_MARK);
	return 0;
}

static __always_inline int module_exit(struct se_sys_exit_ctx *ctx, __u32 op)
{
	struct se_inflight in;
	if (mem__take(&in, ctx->id, MEM_INFLIGHT_MARK))
		return 0;
	mem__module_emit(&in, op, ctx->ret, 0);
	return 0;
}

SEC("tp/syscalls/sys_enter_init_module")
int mem_init_module_enter(struct se_sys_enter_ctx *ctx) { return module_enter(ctx, SE_MODULE_INIT); }
SEC("tp/syscalls/sys_exit_init_module")
int mem_init_module_exit(struct se_sys_exit_ctx *ctx) { return module_exit(ctx, SE_MODULE_INIT); }

SEC("tp/syscalls/sys_enter_finit_module")
int mem_finit_module_enter(struct se_sys_enter_ctx *ctx) { return module_enter(ctx, SE_MODULE_FINIT); }
SEC("tp/syscalls/sys_exit_finit_module")
int mem_finit_module_exit(struct se_sys_exit_ctx *ctx) { return module_exit(ctx, SE_MODULE_FINIT); }

SEC("tp/syscalls/sys_enter_delete_module")
int mem_delete_module_enter(struct se_sys_enter_ctx *ctx) { return module_enter(ctx, SE_MODULE_DELETE); }
SEC("tp/syscalls/sys_exit_delete_module")
int mem_delete_module_exit(struct se_sys_exit_ctx *ctx) { return module_exit(ctx, SE_MODULE_DELETE); }

SE_LICENSE;
