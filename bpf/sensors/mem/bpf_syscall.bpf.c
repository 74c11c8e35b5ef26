/* SPDX-License-Identifier: GPL-2.0 */
/*
 * bpf(2) BPF_PROG_LOAD by any process but the agent (se_skip): program type,
 * instruction count, name, expected attach type, result (the prog fd).
 * Every other command only with se_cfg.bpf_all_cmds (maps lookups are
 * frequent in tools like bpftool and the agent's peers).
 */
#include "mem.h"

#define MEM_BPF_PROG_LOAD 5

/* the BPF_PROG_LOAD part of union bpf_attr (UAPI: fixed layout) */
struct mem_bpf_prog_load {
	__u32 prog_type;
	__u32 insn_cnt;
	__u64 insns;
	__u64 license;
	__u32 log_level;
	__u32 log_size;
	__u64 log_buf;
	__u32 kern_version;
	__u32 prog_flags;
	char  prog_name[16];
	__u32 prog_ifindex;
	__u32 expected_attach_type;
};

SEC("tp/syscalls/sys_enter_bpf")
int mem_bpf_enter(struct se_sys_enter_ctx *ctx)
{
	__u32 cmd = ctx->args[0];
	if (cmd != MEM_BPF_PROG_LOAD && !se_cfg.bpf_all_cmds)
		return 0;
	if (se_skip(SE_SENSOR_MEM))
		return 0;
	struct se_inflight v = {};
	v.args[0] = cmd;
	v.args[1] = ctx->args[1];
	v.args[2] = ctx->args[2];
	mem__save(&v, ctx->id, MEM_INFLIGHT_MARK);
	return 0;
}

SEC("tp/syscalls/sys_exit_bpf")
int mem_bpf_exit(struct se_sys_exit_ctx *ctx)
{
	struct se_inflight in;
	if (mem__take(&in, ctx->id, MEM_INFLIGHT_MARK))
		return 0;
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_bpf *ev = se_event__init(heap, SE_EV_BPF, sizeof(struct se_bpf));
	if (!ev)
		return 0;
	ev->cmd = in.args[0];
	ev->ret = ctx->ret;
	if (ev->cmd == MEM_BPF_PROG_LOAD) {
		struct mem_bpf_prog_load a = {};
		__u32 size = in.args[2];
		/* the kernel treats bytes beyond `size` as zero: do the same */
		if (size > sizeof(a))
			size = sizeof(a);
		if (size > 0 && bpf_probe_read_user(&a, size & 0x7f, (void *)in.args[1]) == 0) {
			ev->prog_type = a.prog_type;
			ev->insn_cnt = a.insn_cnt;
			ev->attach_type = a.expected_attach_type;
			__builtin_memcpy(ev->prog_name, a.prog_name, sizeof(ev->prog_name));
		}
	}
	se_event__emit(SE_SENSOR_MEM, heap, sizeof(struct se_bpf));
	return 0;
}

SE_LICENSE;
