/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Access to another process's memory or registers: ptrace(2) requests that
 * attach or write (PTRACE_TRACEME, ATTACH, SEIZE, POKE*, SET*REGS*), and
 * process_vm_readv / process_vm_writev. Read-only ptrace requests (PEEK*,
 * GET*, CONT, SYSCALL ...) are not reported: a debugger or strace issues
 * thousands per second, and the attach before them is reported.
 *
 * The target (comm, start time) is looked up at entry with the
 * bpf_task_from_pid kfunc (6.2+), which takes host pids: only done when the
 * caller lives in the initial pid namespace, else target_start_ns stays 0.
 */
#include "mem.h"

extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym __weak;
extern void bpf_task_release(struct task_struct *p) __ksym __weak;

#define PTRACE_TRACEME    0
#define PTRACE_POKETEXT   4
#define PTRACE_POKEDATA   5
#define PTRACE_POKEUSR    6
#define PTRACE_SETREGS    13
#define PTRACE_SETFPREGS  15
#define PTRACE_ATTACH     16
#define PTRACE_SETFPXREGS 19
#define PTRACE_SETREGSET  0x4205
#define PTRACE_SEIZE      0x4206

static __always_inline bool ptrace_reported(__u64 req)
{
	switch (req) {
	case PTRACE_TRACEME: case PTRACE_POKETEXT: case PTRACE_POKEDATA: case PTRACE_POKEUSR:
	case PTRACE_SETREGS: case PTRACE_SETFPREGS: case PTRACE_ATTACH: case PTRACE_SETFPXREGS:
	case PTRACE_SETREGSET: case PTRACE_SEIZE:
		return true;
	}
	return false;
}

/* comm in aux64[0..1], start_ns in aux64[2] */
static __always_inline void target_info(struct se_inflight *v, struct task_struct *t)
{
	bpf_probe_read_kernel_str(&v->aux64[0], SE_COMM_LEN, t->comm);
	v->aux64[2] = se_task__start_ns(t);
}

static __always_inline void target_lookup(struct se_inflight *v, __u32 pid, __u64 req, bool is_ptrace)
{
	struct task_struct *cur = (struct task_struct *)bpf_get_current_task();
	if (is_ptrace && req == PTRACE_TRACEME) {
		/* the tracer-to-be is the parent */
		target_info(v, BPF_CORE_READ(cur, real_parent));
		v->args[1] = BPF_CORE_READ(cur, real_parent, tgid);
		return;
	}
	if (!bpf_task_from_pid || BPF_CORE_READ(cur, thread_pid, level) != 0)
		return;
	struct task_struct *t = bpf_task_from_pid(pid);
	if (!t)
		return;
	bpf_probe_read_kernel_str(&v->aux64[0], SE_COMM_LEN, t->comm);
	v->aux64[2] = BPF_CORE_READ(t, group_leader, start_boottime);
	bpf_task_release(t);
}

static __always_inline int access_enter(struct se_sys_enter_ctx *ctx, __u32 op)
{
	__u64 req = 0, addr = 0;
	__u32 pid;

	if (op == SE_PTRACE) {
		req = ctx->args[0];
		if (!ptrace_reported(req))
			return 0;
		pid = ctx->args[1];
		addr = ctx->args[2];
	} else {
		/* process_vm_*(pid, lvec, liovcnt, rvec, riovcnt, flags): first remote address */
		pid = ctx->args[0];
		if (ctx->args[4] > 0)
			bpf_probe_read_user(&addr, sizeof(addr), (void *)ctx->args[3]);
	}
	if (se_skip(SE_SENSOR_MEM))
		return 0;
	struct se_inflight v = {};
	v.args[0] = req;
	v.args[1] = pid;
	v.args[2] = addr;
	v.args[3] = op;
	target_lookup(&v, pid, req, op == SE_PTRACE);
	mem__save(&v, ctx->id, MEM_INFLIGHT_MARK);
	return 0;
}

static __always_inline int access_exit(struct se_sys_exit_ctx *ctx)
{
	struct se_inflight in;
	if (mem__take(&in, ctx->id, MEM_INFLIGHT_MARK))
		return 0;
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_ptrace *ev = se_event__init(heap, SE_EV_PTRACE, sizeof(struct se_ptrace));
	if (!ev)
		return 0;
	ev->op = in.args[3];
	ev->ret = ctx->ret;
	ev->ret32 = ctx->ret;
	ev->request = in.args[0];
	ev->target_pid = in.args[1];
	ev->addr = in.args[2];
	ev->target_start_ns = in.aux64[2];
	__builtin_memcpy(ev->target_comm, &in.aux64[0], SE_COMM_LEN);
	se_event__emit(SE_SENSOR_MEM, heap, sizeof(struct se_ptrace));
	return 0;
}

SEC("tp/syscalls/sys_enter_ptrace")
int mem_ptrace_enter(struct se_sys_enter_ctx *ctx) { return access_enter(ctx, SE_PTRACE); }
SEC("tp/syscalls/sys_exit_ptrace")
int mem_ptrace_exit(struct se_sys_exit_ctx *ctx) { return access_exit(ctx); }

SEC("tp/syscalls/sys_enter_process_vm_readv")
int mem_process_vm_readv_enter(struct se_sys_enter_ctx *ctx) { return access_enter(ctx, SE_PROCESS_VM_READV); }
SEC("tp/syscalls/sys_exit_process_vm_readv")
int mem_process_vm_readv_exit(struct se_sys_exit_ctx *ctx) { return access_exit(ctx); }

SEC("tp/syscalls/sys_enter_process_vm_writev")
int mem_process_vm_writev_enter(struct se_sys_enter_ctx *ctx) { return access_enter(ctx, SE_PROCESS_VM_WRITEV); }
SEC("tp/syscalls/sys_exit_process_vm_writev")
int mem_process_vm_writev_exit(struct se_sys_exit_ctx *ctx) { return access_exit(ctx); }

SE_LICENSE;
