/* SPDX-License-Identifier: GPL-2.0 */
/* Process exit: reported once, when the last thread of the process exits. */
#include "lib/common.h"

SEC("tp_btf/sched_process_exit")
int BPF_PROG(process_exit, struct task_struct *p)
{
	if (se_skip(SE_SENSOR_PROCESS))
		return 0;
	/* signal->live reaches 0 before this tracepoint in the last thread */
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0;
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_exit *ev = se_event__init(heap, SE_EV_EXIT, sizeof(struct se_exit));
	if (!ev)
		return 0;
	__s32 code = BPF_CORE_READ(p, exit_code);
	__u32 group_code = BPF_CORE_READ(p, signal, group_exit_code);
	if (BPF_CORE_READ(p, signal, flags) & 0x00000004 /* SIGNAL_GROUP_EXIT */)
		code = group_code;
	ev->exit_code = (code >> 8) & 0xff;
	ev->exit_signal = code & 0x7f;
	ev->core_dumped = (code & 0x80) ? 1 : 0;
	ev->is_thread = 0;
	se_event__emit(SE_SENSOR_PROCESS, heap, sizeof(struct se_exit));
	return 0;
}

SE_LICENSE;
