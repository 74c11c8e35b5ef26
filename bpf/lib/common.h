/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by every sensor, layered as in Falco's modern_bpf:
 *   se_task__*   read the current task (CO-RE)
 *   se_event__*  build an event in the per-CPU heap and emit it
 *   se_path__*   turn struct path / fd / user strings into event strings
 *   se_inflight__* save syscall arguments at enter, take them at exit
 */
#ifndef SE_COMMON_H
#define SE_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "shared/events.h"
#include "maps.h"

#define SE_MASK (SE_EVENT_MAX - 1)
#define SE_AT_FDCWD (-100)

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((void *)(ptr) - __builtin_offsetof(type, member)))
#endif

/* ---- counters and filters ---------------------------------------------- */

static __always_inline void se_stat__inc(__u32 sensor, __u32 stat)
{
	__u32 key = sensor * SE_STAT_MAX + stat;
	__u64 *v = bpf_map_lookup_elem(&se_stats, &key);
	if (v)
		*v += 1;     /* per-CPU: no atomics needed */
}

static __always_inline bool se_sensor__on(__u32 sensor)
{
	return (se_cfg.sensor_enabled >> sensor) & 1;
}

/* true when this event must not be produced: sensor off, or the agent itself */
static __always_inline bool se_skip(__u32 sensor)
{
	if (!se_sensor__on(sensor))
		return true;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	return se_cfg.agent_tgid && tgid == se_cfg.agent_tgid;
}

/* ---- task --------------------------------------------------------------- */

static __always_inline __u64 se_task__start_ns(struct task_struct *task)
{
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);
	return BPF_CORE_READ(leader, start_boottime);
}

static __always_inline void se_task__fill(struct se_proc *p, struct task_struct *task)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct task_struct *parent = BPF_CORE_READ(task, real_parent);
	const struct cred *cred = BPF_CORE_READ(task, real_cred);

	p->pid = pid_tgid >> 32;
	p->tid = (__u32)pid_tgid;
	p->ppid = BPF_CORE_READ(parent, tgid);
	p->uid = BPF_CORE_READ(cred, uid.val);
	p->euid = BPF_CORE_READ(cred, euid.val);
	p->gid = BPF_CORE_READ(cred, gid.val);
	p->egid = BPF_CORE_READ(cred, egid.val);
	if (bpf_core_field_exists(task->loginuid)) {
		p->loginuid = BPF_CORE_READ(task, loginuid.val);
		p->sessionid = BPF_CORE_READ(task, sessionid);
	} else {
		p->loginuid = (__u32)-1;
		p->sessionid = (__u32)-1;
	}
	struct nsproxy *ns = BPF_CORE_READ(task, nsproxy);
	p->mnt_ns = BPF_CORE_READ(ns, mnt_ns, ns.inum);
	p->net_ns = BPF_CORE_READ(ns, net_ns, ns.inum);
	/* the task's own pid namespace: the one its struct pid was allocated in */
	struct pid *tpid = BPF_CORE_READ(task, thread_pid);
	__u32 level = BPF_CORE_READ(tpid, level);
	p->pid_ns = BPF_CORE_READ(tpid, numbers[level].ns, ns.inum);
	struct pid *lpid = BPF_CORE_READ(task, group_leader, thread_pid);
	p->ns_pid = BPF_CORE_READ(lpid, numbers[level].nr);
	p->cgroup_id = bpf_get_current_cgroup_id();
	p->start_ns = se_task__start_ns(task);
	p->parent_start_ns = se_task__start_ns(parent);
	bpf_get_current_comm(p->comm, sizeof(p->comm));
}

/*
 * The calling task, read through its BTF pointer: plain loads the verifier
 * turns into fault-safe loads, no helper call per field. About half the cost
 * of se_task__fill's probe reads, and it runs for every event.
 */
static __always_inline void se_task__fill_current(struct se_proc *p)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct task_struct *parent = task->real_parent;
	struct task_struct *leader = task->group_leader;
	const struct cred *cred = task->real_cred;
	struct nsproxy *ns = task->nsproxy;

	p->pid = task->tgid;
	p->tid = task->pid;
	p->ppid = parent->tgid;
	p->uid = cred->uid.val;
	p->euid = cred->euid.val;
	p->gid = cred->gid.val;
	p->egid = cred->egid.val;
	if (bpf_core_field_exists(task->loginuid)) {
		p->loginuid = task->loginuid.val;
		p->sessionid = task->sessionid;
	} else {
		p->loginuid = (__u32)-1;
		p->sessionid = (__u32)-1;
	}
	if (ns) {
		p->mnt_ns = ns->mnt_ns->ns.inum;
		p->net_ns = ns->net_ns->ns.inum;
	}
	/* variable array index: not a direct load, read it the safe way */
	struct pid *tpid = task->thread_pid;
	__u32 level = tpid->level;
	p->pid_ns = BPF_CORE_READ(tpid, numbers[level].ns, ns.inum);
	p->ns_pid = BPF_CORE_READ(leader, thread_pid, numbers[level].nr);
	p->cgroup_id = bpf_get_current_cgroup_id();
	p->start_ns = leader->start_boottime;
	p->parent_start_ns = parent->group_leader->start_boottime;
	bpf_get_current_comm(p->comm, sizeof(p->comm));
}

/* ---- events ----------------------------------------------------------------- */

static __always_inline struct se_heap *se_heap__get(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&se_heap_map, &zero);
}

/*
 * Start an event of `fixed` bytes at the beginning of the heap buffer: zeroes
 * the fixed part, fills the header and the calling task. Returns the event or
 * NULL. Variable data is appended from offset `fixed` on.
 */
static __always_inline void *se_event__init(struct se_heap *heap, __u16 type, __u32 fixed)
{
	if (fixed > 1024)
		return NULL;
	/* zero the fixed part: the heap keeps the previous event's bytes */
	for (__u32 i = 0; i < 1024 / 8; i++) {
		if (i * 8 >= fixed)
			break;
		((__u64 *)heap->buf)[i] = 0;
	}
	struct se_hdr *hdr = (struct se_hdr *)heap->buf;
	hdr->type = type;
	hdr->size = fixed;
	hdr->cpu = bpf_get_smp_processor_id();
	hdr->ts_ns = bpf_ktime_get_boot_ns();
	se_task__fill_current((struct se_proc *)(heap->buf + sizeof(struct se_hdr)));
	return heap->buf;
}

/*
 * Send the event (size = position after the last appended byte) to the
 * sensor's ring. No wakeup: user space drains the rings on a short timer,
 * which costs far less per event than a wakeup (shared/KERNEL.md).
 */
static __always_inline long se_event__emit(__u32 sensor, struct se_heap *heap, __u32 size)
{
	long err;
	size = (size + 7) & ~7u;
	if (size > SE_EVENT_MAX)
		size = SE_EVENT_MAX;
	if (size < sizeof(struct se_hdr))
		return -1;
	((struct se_hdr *)heap->buf)->size = size;
	switch (sensor) {
	case SE_SENSOR_PROCESS: err = bpf_ringbuf_output(&se_ring_process, heap->buf, size, BPF_RB_NO_WAKEUP); break;
	case SE_SENSOR_FILE:    err = bpf_ringbuf_output(&se_ring_file, heap->buf, size, BPF_RB_NO_WAKEUP); break;
	case SE_SENSOR_NET:     err = bpf_ringbuf_output(&se_ring_net, heap->buf, size, BPF_RB_NO_WAKEUP); break;
	case SE_SENSOR_PRIV:    err = bpf_ringbuf_output(&se_ring_priv, heap->buf, size, BPF_RB_NO_WAKEUP); break;
	default:                err = bpf_ringbuf_output(&se_ring_mem, heap->buf, size, BPF_RB_NO_WAKEUP); break;
	}
	se_stat__inc(sensor, err ? SE_STAT_DROPPED : SE_STAT_EMITTED);
	return err;
}

/*
 * Append a string to the event at *pos and describe it in *field.
 * user != 0 reads user memory. max is the largest number of bytes taken
 * (NUL included); returns 1 when the string was truncated.
 */
static __always_inline int se_event__append_str(struct se_heap *heap, __u32 *pos,
						struct se_str *field, const void *src,
						__u32 max, int user)
{
	__u32 p = *pos;
	long n;
	field->off = 0;
	field->len = 0;
	if (!src || p >= SE_EVENT_MAX - 1)
		return 1;
	if (max > SE_PATH_MAX)
		max = SE_PATH_MAX;
	if (user)
		n = bpf_probe_read_user_str(&heap->buf[p & SE_MASK], max, src);
	else
		n = bpf_probe_read_kernel_str(&heap->buf[p & SE_MASK], max, src);
	if (n <= 0)
		return 0;
	field->off = p;
	field->len = n - 1;
	*pos = p + n;
	return (__u32)n >= max;
}

/* Append raw bytes (not NUL-terminated strings), e.g. argv. */
static __always_inline int se_event__append_bytes_user(struct se_heap *heap, __u32 *pos,
						       struct se_str *field, const void *src,
						       __u32 len)
{
	__u32 p = *pos;
	field->off = 0;
	field->len = 0;
	if (!src || p >= SE_EVENT_MAX - 1)
		return 0;
	if (len > SE_ARGV_MAX)
		len = SE_ARGV_MAX;
	if (len == 0)
		return 0;
	if (bpf_probe_read_user(&heap->buf[p & SE_MASK], len & (SE_ARGV_MAX - 1 | SE_ARGV_MAX), src))
		return -1;
	field->off = p;
	field->len = len;
	*pos = p + len;
	return 0;
}

/* ---- paths ------------------------------------------------------------------ */

/*
 * Path walk, in two bpf_loop callbacks so the verifier checks each step once
 * instead of unrolling every iteration. The walk state is in heap->walk
 * (map memory, see maps.h).
 */
static long se_walk__up(__u32 i, void *unused)
{
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 1;
	struct se_walk *w = &heap->walk;
	struct dentry *dentry = (struct dentry *)w->dentry;
	struct mount *mnt = (struct mount *)w->mnt;
	struct dentry *mnt_root = BPF_CORE_READ(mnt, mnt.mnt_root);
	struct dentry *parent = BPF_CORE_READ(dentry, d_parent);
	if (dentry == mnt_root) {
		struct mount *mparent = BPF_CORE_READ(mnt, mnt_parent);
		if (mparent == mnt || !mparent) {
			w->trunc = 0;
			return 1;
		}
		w->dentry = (__u64)BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = (__u64)mparent;
		return 0;
	}
	if (dentry == parent || !parent) {
		/*
		 * root of a filesystem not mounted anywhere (memfd, pipe, anon
		 * inode): its own name ("memfd:x") is the only useful component
		 */
		if (w->n == 0) {
			heap->names[0] = (__u64)BPF_CORE_READ(dentry, d_name.name);
			w->n = 1;
		}
		w->trunc = 0;
		return 1;
	}
	__u32 n = w->n;
	if (n >= SE_PATH_DEPTH)
		return 1;
	heap->names[n & (SE_PATH_DEPTH - 1)] = (__u64)BPF_CORE_READ(dentry, d_name.name);
	w->n = n + 1;
	w->dentry = (__u64)parent;
	return 0;
}

static long se_walk__emit(__u32 i, void *unused)
{
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 1;
	struct se_walk *w = &heap->walk;
	__u32 n = w->n;
	if (i >= n)
		return 1;
	__u32 p = w->pos;
	if (p - w->start >= SE_PATH_MAX - SE_NAME_MAX || p >= SE_EVENT_MAX - SE_NAME_MAX) {
		w->trunc = 1;
		return 1;
	}
	heap->buf[p & SE_MASK] = '/';
	p++;
	const char *name = (const char *)heap->names[(n - 1 - i) & (SE_PATH_DEPTH - 1)];
	long len = bpf_probe_read_kernel_str(&heap->buf[p & SE_MASK], SE_NAME_MAX, name);
	if (len > 1)
		p += len - 1;
	w->pos = p;
	return 0;
}

/*
 * Append the absolute host path of `path` by walking dentries up to the root,
 * crossing mount points. Returns 1 when truncated (too deep or too long).
 */
static __always_inline int se_path__append(struct se_heap *heap, __u32 *pos,
					   struct se_str *field, const struct path *path)
{
	struct se_walk *w = &heap->walk;
	struct vfsmount *vfsmnt = BPF_CORE_READ(path, mnt);
	struct dentry *dentry = BPF_CORE_READ(path, dentry);
	__u32 start = *pos;

	field->off = 0;
	field->len = 0;
	if (!dentry)
		return 0;
	if (start >= SE_EVENT_MAX - SE_NAME_MAX - 2)
		return 1;
	w->dentry = (__u64)dentry;
	w->mnt = (__u64)container_of(vfsmnt, struct mount, mnt);
	w->n = 0;
	w->trunc = 1;
	w->pos = start;
	w->start = start;
	bpf_loop(SE_PATH_DEPTH + 16, se_walk__up, NULL, 0);
	if (w->n == 0) {
		heap->buf[start & SE_MASK] = '/';
		w->pos = start + 1;
	} else {
		bpf_loop(SE_PATH_DEPTH, se_walk__emit, NULL, 0);
	}
	__u32 end = w->pos;
	if (end < start || end >= SE_EVENT_MAX)
		return 1;
	heap->buf[end & SE_MASK] = 0;
	field->off = start;
	field->len = end - start;
	*pos = end + 1;
	return w->trunc;
}

/* The struct file behind fd of the current task, or NULL. */
static __always_inline struct file *se_fd__file(int fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct files_struct *files = BPF_CORE_READ(task, files);
	struct fdtable *fdt = BPF_CORE_READ(files, fdt);
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;

	if (fd < 0 || (unsigned int)fd >= max || !fds)
		return NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

/* Append the path of the current task's working directory. */
static __always_inline int se_path__append_cwd(struct se_heap *heap, __u32 *pos, struct se_str *field)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fs_struct *fs = BPF_CORE_READ(task, fs);
	return se_path__append(heap, pos, field, __builtin_preserve_access_index(&fs->pwd));
}

/* Append the path of fd (or of the cwd for AT_FDCWD): the base of a relative path. */
static __always_inline int se_path__append_dirfd(struct se_heap *heap, __u32 *pos,
						 struct se_str *field, int dirfd)
{
	if (dirfd == SE_AT_FDCWD)
		return se_path__append_cwd(heap, pos, field);
	struct file *f = se_fd__file(dirfd);
	if (!f) {
		field->off = 0;
		field->len = 0;
		return 0;
	}
	return se_path__append(heap, pos, field, __builtin_preserve_access_index(&f->f_path));
}

/* ---- syscall enter/exit pairing ------------------------------------------- */

static __always_inline void se_inflight__save(__u32 nr, const __u64 *args, int nargs)
{
	struct se_inflight v = {};
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	for (int i = 0; i < 6; i++)
		if (i < nargs)
			v.args[i] = args[i];
	v.nr = nr;
	v.ts_ns = bpf_ktime_get_boot_ns();
	bpf_map_update_elem(&se_inflight_map, &tid, &v, BPF_ANY);
}

/* Returns a copy of the saved arguments in *out; 0 on success. */
static __always_inline int se_inflight__take(struct se_inflight *out)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct se_inflight *v = bpf_map_lookup_elem(&se_inflight_map, &tid);
	if (!v)
		return -1;
	__builtin_memcpy(out, v, sizeof(*out));
	bpf_map_delete_elem(&se_inflight_map, &tid);
	return 0;
}

/* classic syscall tracepoint contexts */
struct se_sys_enter_ctx {
	unsigned long long unused;
	long id;
	unsigned long args[6];
};

struct se_sys_exit_ctx {
	unsigned long long unused;
	long id;
	long ret;
};

#define SE_LICENSE char LICENSE[] SEC("license") __weak = "Dual BSD/GPL"

#endif /* SE_COMMON_H */
