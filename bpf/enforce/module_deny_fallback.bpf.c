// SPDX-License-Identifier: GPL-2.0
/*
 * Kernel tamper deny for kernels without the module syscall tracepoints
 * (CONFIG_MODULES off, like the development machine): raw_tp/sys_enter
 * filtered by syscall number. Attached only while a policy denies module
 * loads and the tracepoints are missing: it runs on every syscall.
 */
#include "enforce/tamper.h"

const volatile __u32 se_nr_init_module = 175;     /* x86_64; set by the loader */
const volatile __u32 se_nr_finit_module = 313;

SEC("raw_tp/sys_enter")
int enforce_module_fallback(struct bpf_raw_tracepoint_args *ctx)
{
	long nr = (long)ctx->args[1];
	if (nr != se_nr_init_module && nr != se_nr_finit_module)
		return 0;
	return se_tamper__check(SE_ENF_MODULE, nr);
}

SE_LICENSE;
