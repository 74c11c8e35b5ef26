/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Fallback for syscalls whose syscalls/sys_enter_* tracepoint does not exist
 * on this kernel (module syscalls without CONFIG_MODULES): raw_tp/sys_enter
 * and raw_tp/sys_exit, which see every syscall on the host.
 *
 * The loader attaches both programs only when a watched tracepoint is
 * missing, and fills se_fallback_syscalls with
 *   key   = syscall number of the running architecture,
 *   value = SE_FALLBACK_VALUE(SE_EV_MODULE, enum se_module_op).
 * Cost: the enter program's first work is one (inlined) array lookup by
 * syscall number; the exit program's is one read of se_fallback_pending, and
 * only while a watched syscall is in flight does it look up the thread id in
 * se_inflight_map, acting only on entries carrying MEM_FALLBACK_MARK.
 * The event is emitted at exit, with the result (-ENOSYS without modules).
 */
#include "mem.h"

/* x86_64 numbers, used only when the loader left the op out of the value */
#define MEM_NR_INIT_MODULE_X86   175
#define MEM_NR_DELETE_MODULE_X86 176
#define MEM_NR_FINIT_MODULE_X86  313

SEC("raw_tp/sys_enter")
int BPF_PROG(mem_syscall_fallback, struct pt_regs *regs, long id)
{
	__u32 nr = id;
	__u32 *val = bpf_map_lookup_elem(&se_fallback_syscalls, &nr);
	if (!val || !*val)
		return 0;
	__u32 type = *val & 0xffff, op = *val >> 16;
	if (type != SE_EV_MODULE || se_skip(SE_SENSOR_MEM))
		return 0;
#if defined(__TARGET_ARCH_x86)
	if (op == 0) {
		if (nr == MEM_NR_INIT_MODULE_X86)
			op = SE_MODULE_INIT;
		else if (nr == MEM_NR_FINIT_MODULE_X86)
			op = SE_MODULE_FINIT;
		else if (nr == MEM_NR_DELETE_MODULE_X86)
			op = SE_MODULE_DELETE;
	}
#endif
	if (op < SE_MODULE_INIT || op > SE_MODULE_DELETE)
		return 0;
	struct se_inflight v = {};
	v.args[0] = PT_REGS_PARM1_CORE_SYSCALL(regs);
	v.args[1] = PT_REGS_PARM2_CORE_SYSCALL(regs);
	v.args[2] = PT_REGS_PARM3_CORE_SYSCALL(regs);
	v.aux64[0] = op;
	/* the thread's own start time: an entry left by a dead thread whose tid was reused is ignored */
	v.aux64[1] = BPF_CORE_READ((struct task_struct *)bpf_get_current_task(), start_time);
	mem__save(&v, nr, MEM_FALLBACK_MARK);
	__u32 zero = 0;
	__s64 *pending = bpf_map_lookup_elem(&se_fallback_pending, &zero);
	if (pending)
		__sync_fetch_and_add(pending, 1);
	return 0;
}

SEC("raw_tp/sys_exit")
int BPF_PROG(mem_syscall_fallback_exit, struct pt_regs *regs, long ret)
{
	struct se_inflight in;
	__u32 zero = 0;
	__s64 *pending = bpf_map_lookup_elem(&se_fallback_pending, &zero);
	if (!pending || *pending <= 0)
		return 0;   /* the common case: no watched syscall in flight anywhere */
	if (mem__take(&in, -1, MEM_FALLBACK_MARK))
		return 0;
	__sync_fetch_and_add(pending, -1);
	if (in.aux64[1] != BPF_CORE_READ((struct task_struct *)bpf_get_current_task(), start_time))
		return 0;
	/* one call per op: the verifier then checks each with a constant op */
	switch (in.aux64[0]) {
	case SE_MODULE_INIT:   mem__module_emit(&in, SE_MODULE_INIT, ret, 1); break;
	case SE_MODULE_FINIT:  mem__module_emit(&in, SE_MODULE_FINIT, ret, 1); break;
	case SE_MODULE_DELETE: mem__module_emit(&in, SE_MODULE_DELETE, ret, 1); break;
	}
	return 0;
}

SE_LICENSE;
