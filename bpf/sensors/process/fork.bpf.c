/* SPDX-License-Identifier: GPL-2.0 */
/* fork/clone of a new process (new threads are not reported). */
#include "lib/common.h"

SEC("tp_btf/sched_process_fork")
int BPF_PROG(process_fork, struct task_struct *parent, struct task_struct *child)
{
	if (se_skip(SE_SENSOR_PROCESS))
		return 0;
	__u32 child_pid = BPF_CORE_READ(child, tgid);
	__u32 child_tid = BPF_CORE_READ(child, pid);
	if (child_pid != child_tid)
		return 0;   /* a thread */
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_fork *ev = se_event__init(heap, SE_EV_FORK, sizeof(struct se_fork));
	if (!ev)
		return 0;
	ev->child_pid = child_pid;
	ev->child_tid = child_tid;
	ev->child_start_ns = se_task__start_ns(child);
	ev->is_thread = 0;
	se_event__emit(SE_SENSOR_PROCESS, heap, sizeof(struct se_fork));
	return 0;
}

SE_LICENSE;
