// SPDX-License-Identifier: GPL-2.0
/* Kernel tamper deny: init_module (tamper.h); skipped where the tracepoint does not exist. */
#include "enforce/tamper.h"

SEC("tp/syscalls/sys_enter_init_module")
int enforce_init_module(struct se_sys_enter_ctx *ctx)
{
	return se_tamper__check(SE_ENF_MODULE, ctx->id);
}

SE_LICENSE;
