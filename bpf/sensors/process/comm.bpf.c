/* SPDX-License-Identifier: GPL-2.0 */
/*
 * comm changes: prctl(PR_SET_NAME), writes to /proc/self/comm.
 * The rename every exec does to the new image's name is not reported: the
 * exec event already carries it.
 */
#include "lib/common.h"

struct task_rename_ctx {
	__u64 common;
	int pid;
	char oldcomm[16];
	char newcomm[16];
};

SEC("tp/task/task_rename")
int process_comm(struct task_rename_ctx *ctx)
{
	if (se_skip(SE_SENSOR_PROCESS))
		return 0;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct se_inflight *in = bpf_map_lookup_elem(&se_inflight_map, &tid);
	if (in && in->aux == SE_INFLIGHT_EXEC)
		return 0;
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_comm *ev = se_event__init(heap, SE_EV_COMM, sizeof(struct se_comm));
	if (!ev)
		return 0;
	bpf_probe_read_kernel(ev->old_comm, sizeof(ev->old_comm), ctx->oldcomm);
	bpf_probe_read_kernel(ev->new_comm, sizeof(ev->new_comm), ctx->newcomm);
	se_event__emit(SE_SENSOR_PROCESS, heap, sizeof(struct se_comm));
	return 0;
}

SE_LICENSE;
