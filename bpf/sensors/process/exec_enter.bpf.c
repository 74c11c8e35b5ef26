/* SPDX-License-Identifier: GPL-2.0 */
/*
 * execve/execveat entry and exit: remember the caller's credentials so the
 * exec event can report what a setuid/setgid exec changed, and forget them
 * when the exec fails.
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

/*
 * A failed execve returns: drop its entry, or the thread would look "in
 * exec" to the comm sensor until its next saved syscall. (A successful exec
 * never returns here with the entry: sched_process_exec took it.)
 */
static __always_inline int exec_exit(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct se_inflight *in = bpf_map_lookup_elem(&se_inflight_map, &tid);
	if (in && in->aux == SE_INFLIGHT_EXEC)
		bpf_map_delete_elem(&se_inflight_map, &tid);
	return 0;
}

SEC("tp/syscalls/sys_exit_execve")
int process_exec_exit(struct se_sys_exit_ctx *ctx)
{
	return exec_exit();
}

SEC("tp/syscalls/sys_exit_execveat")
int process_execveat_exit(struct se_sys_exit_ctx *ctx)
{
	return exec_exit();
}

SE_LICENSE;
