// SPDX-License-Identifier: GPL-2.0
/* Kernel tamper deny: bpf(BPF_PROG_LOAD) by a non-allowed executable (tamper.h). */
#include "enforce/tamper.h"

#define SE_BPF_PROG_LOAD 5

SEC("tp/syscalls/sys_enter_bpf")
int enforce_bpf_load(struct se_sys_enter_ctx *ctx)
{
	if (ctx->args[0] != SE_BPF_PROG_LOAD)
		return 0;
	return se_tamper__check(SE_ENF_BPF, ctx->args[0]);
}

SE_LICENSE;
