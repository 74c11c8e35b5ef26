/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared by the memory / injection / kernel-extension sensor programs.
 */
#ifndef SE_MEM_H
#define SE_MEM_H

#include "lib/common.h"

/* se_inflight.aux markers: whose saved entry this is */
#define MEM_INFLIGHT_MARK  0x4d454d31u /* "MEM1": classic tracepoint enter/exit pairs */
#define MEM_FALLBACK_MARK  0x4d454d46u /* "MEMF": raw_tp/sys_enter fallback */

#define MEM_PROT_WRITE     0x2
#define MEM_PROT_EXEC      0x4
#define MEM_MAP_ANONYMOUS  0x20

static __always_inline void mem__save(struct se_inflight *v, long nr, __u32 mark)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	v->nr = nr;
	v->aux = mark;
	v->ts_ns = bpf_ktime_get_boot_ns();
	bpf_map_update_elem(&se_inflight_map, &tid, v, BPF_ANY);
}

/*
 * Take the saved enter half of the current syscall: only an entry this sensor
 * saved (mark) for this syscall number (nr, or any when nr < 0) counts.
 */
static __always_inline int mem__take(struct se_inflight *out, long nr, __u32 mark)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct se_inflight *v = bpf_map_lookup_elem(&se_inflight_map, &tid);
	if (!v || v->aux != mark || (nr >= 0 && v->nr != (__u32)nr))
		return -1;
	__builtin_memcpy(out, v, sizeof(*out));
	bpf_map_delete_elem(&se_inflight_map, &tid);
	return 0;
}

/* Path of f appended at pos: returns pos | len << 16, 0 when nothing was written. */
static __always_inline __u32 mem__file_path(struct se_heap *heap, struct file *f, __u32 pos)
{
	struct se_str field = {};
	__u32 p = pos;

	if (!f)
		return 0;
	se_path__append(heap, &p, &field, __builtin_preserve_access_index(&f->f_path));
	if (!field.len)
		return 0;
	return field.off | ((__u32)field.len << 16);
}

/*
 * One module syscall, from either the syscall tracepoints or the raw_tp
 * fallback. in->args are the syscall's arguments.
 */
static __always_inline void mem__module_emit(const struct se_inflight *in, __u32 op, long ret, __u32 via_raw_tp)
{
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return;
	struct se_module *ev = se_event__init(heap, SE_EV_MODULE, sizeof(struct se_module));
	if (!ev)
		return;
	__u32 pos = sizeof(struct se_module);

	ev->op = op;
	ev->ret = ret;
	ev->syscall_nr = in->nr;
	ev->via_raw_tp = via_raw_tp;
	ev->fd = -1;
	if (op == SE_MODULE_INIT) {
		/* init_module(image, len, params) */
		ev->len = in->args[1];
	} else if (op == SE_MODULE_FINIT) {
		/* finit_module(fd, params, flags): the path of the module file */
		ev->fd = (__s32)in->args[0];
		ev->mod_flags = (__u32)in->args[2];
		__u32 str = mem__file_path(heap, se_fd__file(ev->fd), pos);
		ev->name.off = str & 0xffff;
		ev->name.len = str >> 16;
		if (ev->name.len)
			pos = ev->name.off + ev->name.len + 1;
	} else if (op == SE_MODULE_DELETE) {
		/* delete_module(name, flags) */
		ev->mod_flags = (__u32)in->args[1];
		se_event__append_str(heap, &pos, &ev->name, (void *)in->args[0], SE_NAME_MAX, 1);
	}
	se_event__emit(SE_SENSOR_MEM, heap, pos);
}

#endif /* SE_MEM_H */
