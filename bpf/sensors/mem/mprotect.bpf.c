/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mprotect(2) making memory writable and executable at once, or
 * (se_cfg.mem_anon_exec) making memory that no file backs executable: the
 * classic shellcode "RW -> RX/RWX" step. The mapping at addr is looked up
 * with bpf_find_vma (kernel 5.17+); only the first VMA of the range is
 * examined. On older kernels only the W+X half works.
 */
#include "mem.h"

struct vma_info {
	__u64 vm_flags;
	__u32 found;
	__u32 anon;
};

static long vma_cb(struct task_struct *task, struct vm_area_struct *vma, struct vma_info *info)
{
	info->found = 1;
	info->anon = BPF_CORE_READ(vma, vm_file) == NULL;
	info->vm_flags = BPF_CORE_READ(vma, vm_flags);
	return 0;
}

SEC("tp/syscalls/sys_enter_mprotect")
int mem_mprotect_enter(struct se_sys_enter_ctx *ctx)
{
	__u32 prot = ctx->args[2];
	if (!(prot & MEM_PROT_EXEC))
		return 0;
	bool wx = prot & MEM_PROT_WRITE;
	if (!wx && !se_cfg.mem_anon_exec)
		return 0;
	if (se_skip(SE_SENSOR_MEM))
		return 0;
	struct vma_info info = {};
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_find_vma))
		bpf_find_vma(bpf_get_current_task_btf(), ctx->args[0], vma_cb, &info, 0);
	if (!wx && !(info.found && info.anon))
		return 0;
	struct se_inflight v = {};
	v.args[0] = ctx->args[0];
	v.args[1] = ctx->args[1];
	v.args[2] = ctx->args[2];
	v.aux64[0] = info.found && info.anon;
	v.aux64[1] = info.vm_flags;
	mem__save(&v, ctx->id, MEM_INFLIGHT_MARK);
	return 0;
}

SEC("tp/syscalls/sys_exit_mprotect")
int mem_mprotect_exit(struct se_sys_exit_ctx *ctx)
{
	struct se_inflight in;
	if (mem__take(&in, ctx->id, MEM_INFLIGHT_MARK))
		return 0;
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_mem *ev = se_event__init(heap, SE_EV_MEM, sizeof(struct se_mem));
	if (!ev)
		return 0;
	ev->op = SE_MEM_MPROTECT;
	ev->addr = in.args[0];
	ev->len = in.args[1];
	ev->prot = in.args[2];
	ev->fd = -1;
	ev->anon = in.aux64[0];
	ev->vma_flags = in.aux64[1];
	ev->ret = ctx->ret;
	se_event__emit(SE_SENSOR_MEM, heap, sizeof(struct se_mem));
	return 0;
}

SE_LICENSE;
