/* SPDX-License-Identifier: GPL-2.0 */
/*
 * execve/execveat entry: remember the caller's credentials so the exec event
 * can report what a setuid/setgid exec changed.
 */
#include "lib/common.h"

static __always_inline int exec_enter(struct se_sys_enter_ctx *ctx)
{
	if (se_skip(SE_SENSOR_PROCESS))
		return 0;
	struct se_inflight v = {};
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	const struct cred *cred = BPF_CORE_READ(task, real_cred);

	v.nr = ctx->id;
	v.aux = SE_INFLIGHT_EXEC;
	v.ts_ns = bpf_ktime_get_boot_ns();
	v.args[0] = ctx->args[0];
	v.args[1] = ctx->args[1];
	v.aux64[0] = BPF_CORE_READ(cred, uid.val);
	v.aux64[1] = BPF_CORE_READ(cred, euid.val);
	v.aux64[2] = BPF_CORE_READ(cred, gid.val);
	v.aux64[3] = BPF_CORE_READ(cred, egid.val);
	bpf_map_update_elem(&se_inflight_map, &tid, &v, BPF_ANY);
	return 0;
}

SEC("tp/syscalls/sys_enter_execve")
int process_exec_enter(struct se_sys_enter_ctx *ctx)
{
	return exec_enter(ctx);
}

SEC("tp/syscalls/sys_enter_execveat")
int process_execveat_enter(struct se_sys_enter_ctx *ctx)
{
	return exec_enter(ctx);
}

SE_LICENSE;
