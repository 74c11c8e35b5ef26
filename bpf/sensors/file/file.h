/* SPDX-License-Identifier: GPL-2.0 */
/*
 * File sensor: helpers shared by every bpf/sensors/file/ program.
 *
 * Every watched syscall has one program on its classic exit tracepoint,
 * tp/syscalls/sys_exit_X. It reads the syscall's arguments from the saved
 * user registers (file__args), decodes them with a per-syscall decoder into
 * struct file_args and builds one struct se_file with the result. No enter
 * program and no se_inflight entry: on an open+close loop that pairing cost
 * about 1 us per open here (enter tracepoint + LRU update/lookup/delete),
 * more than everything else. User strings are read at exit: the kernel has
 * faulted them in by then, so a read does not fail on a not-yet-present page.
 *
 * Cost on the hot path (a successful open): the exit looks the new fd up and
 * checks the dedup window on (tgid, dev, ino, flags) before any string is
 * read or any dentry walked, first in a per-CPU direct-mapped cache
 * (se_dedup_cache), then in se_dedup_map. A suppressed repeat costs one
 * probe read (the fd slot), a few direct BTF loads, one array lookup and a
 * clock read: ~230-330 ns of program time per open on the 2-vCPU dev VM
 * (bpf_stats), against ~1.5 us for an enter/exit pair with se_inflight.
 * A failed open reads the raw path and, when it is relative, walks the base
 * directory; nothing else. Failed opens are never deduplicated.
 * Known limit of the dedup key: an exec keeps the tgid, so the new image's
 * first open of a file the old image opened less than a window ago is
 * suppressed. The key includes the inode's i_generation, so a file deleted
 * and created again within the window (which may get the same inode number)
 * is reported again on filesystems that set it (ext4, xfs, btrfs, tmpfs).
 *
 * Filters (se_cfg.include / exclude) are applied to the absolute path:
 *   - `resolved` (from the file itself) when known: opens, f* calls;
 *   - otherwise the raw path when it is absolute, or base + "/" + raw.
 * An unresolved path can name a place other than its text (symlinks, ".."):
 * a raw path with a ".." component, or a relative one whose base is unknown,
 * is always reported, so ".." cannot be used to hide behind an exclude.
 * Symlinked directories in raw paths are not followed in the kernel.
 * Rename and link events are suppressed only when both paths are unwanted.
 * Prefixes match on path component boundaries: "/tmp" matches "/tmp" and
 * "/tmp/x", not "/tmpfoo"; a prefix ending in '/' matches as plain text.
 */
#ifndef SE_FILE_H
#define SE_FILE_H

#include "lib/common.h"

/* uapi values used here (macros, so not in vmlinux.h) */
#define SE_O_WRONLY             00000001
#define SE_O_RDWR               00000002
#define SE_O_CREAT              00000100
#define SE_O_EXCL               00000200
#define SE_O_TRUNC              00001000
#define SE_O_NOFOLLOW           00400000
#define SE_AT_SYMLINK_NOFOLLOW  0x100
#define SE_AT_REMOVEDIR         0x200
#define SE_AT_SYMLINK_FOLLOW    0x400
#define SE_AT_EMPTY_PATH        0x1000

/* Arguments of one file operation, decoded from the raw syscall arguments. */
struct file_args {
	const char *path;        /* raw first path (user memory), NULL if none */
	const char *path2;       /* raw second path */
	const char *xattr_name;
	__u64 size;
	__s32 dirfd;             /* base of path; AT_FDCWD for non-*at calls */
	__s32 dirfd2;            /* base of path2 */
	__s32 fd;                /* f* calls: the fd operated on, else -1 */
	__u32 op;                /* enum se_file_op */
	__u32 open_flags;
	__u32 mode;
	__u32 uid;
	__u32 gid;
	__u32 flags;             /* SE_FILE_FOLLOW */
	__u32 resolve;           /* openat2 RESOLVE_* */
	__u32 path2_is_path;     /* path2 names a file (rename/link), not symlink text */
	__u32 _pad;
};

/* ---- syscall arguments at exit --------------------------------------------- */

/*
 * The arguments of the syscall that is returning, from the user registers the
 * kernel saved at entry (file syscalls never change them; on arm64 the first
 * one comes from orig_x0). This replaces an enter program plus an
 * se_inflight map update/lookup/delete per call (about +1 us per open here).
 */
static __always_inline void file__args(__u64 *args, const int nargs)
{
	/* a trusted BTF pointer: x86 field loads are direct, not probe reads */
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());

	args[0] = PT_REGS_PARM1_SYSCALL(regs);
	if (nargs > 1)
		args[1] = PT_REGS_PARM2_SYSCALL(regs);
	if (nargs > 2)
		args[2] = PT_REGS_PARM3_SYSCALL(regs);
	if (nargs > 3)
		args[3] = PT_REGS_PARM4_SYSCALL(regs);
	if (nargs > 4)
		args[4] = PT_REGS_PARM5_SYSCALL(regs);
	/* no file syscall watched here needs a sixth argument */
}

/* kernel >= 6.2: a probe-read pointer as a read-only BTF pointer (direct loads) */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;
#ifndef bpf_ksym_exists
#define bpf_ksym_exists(sym) (!!(sym))
#endif

/*
 * (st_dev-encoded device, inode number) of an open file. With bpf_rdonly_cast
 * the three loads are direct instead of four probe reads (~30 ns each here).
 */
static __always_inline void file__dev_ino(struct file *f, __u32 *sdev, __u64 *ino)
{
	if (bpf_ksym_exists(bpf_rdonly_cast)) {
		struct file *tf = bpf_rdonly_cast(f, bpf_core_type_id_kernel(struct file));
		struct inode *inode = tf->f_inode;
		*ino = inode->i_ino;
		*sdev = inode->i_sb->s_dev;
	} else {
		struct inode *inode = BPF_CORE_READ(f, f_inode);
		*ino = BPF_CORE_READ(inode, i_ino);
		*sdev = BPF_CORE_READ(inode, i_sb, s_dev);
	}
}

/* i_generation of an open file's inode (0 when the filesystem does not set it) */
static __always_inline __u32 file__generation(struct file *f)
{
	if (bpf_ksym_exists(bpf_rdonly_cast)) {
		struct file *tf = bpf_rdonly_cast(f, bpf_core_type_id_kernel(struct file));
		return tf->f_inode->i_generation;
	}
	return BPF_CORE_READ(f, f_inode, i_generation);
}

/*
 * se_fd__file() with direct BTF loads for the task -> files -> fdtable chain:
 * the hot path of every open, where each probe read counts.
 */
static __always_inline struct file *file__fd_file(int fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = task->files->fdt;
	struct file *f = NULL;

	if (fd < 0 || (unsigned int)fd >= fdt->max_fds)
		return NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fdt->fd[fd]);
	return f;
}

/* ---- dedup of repeated opens ------------------------------------------- */

/*
 * The map value is the time of the last reported (or filtered) open; its low
 * bit remembers a filter verdict, so repeats of a filtered open are counted
 * as filtered without walking the path again.
 */
static __always_inline __u32 file__dedup_slot(struct se_dedup_key *key)
{
	__u64 h = key->ino * 0x9E3779B97F4A7C15ULL ^ key->tgid ^ ((__u64)key->flags << 7) ^ key->dev;
	return (h >> 24) & (SE_DEDUP_CACHE_SLOTS - 1);
}

static __always_inline int file__dedup_check(__u64 v, __u64 now)
{
	if (now - (v & ~1ULL) >= se_cfg.dedup_window_ns)
		return 0;
	se_stat__inc(SE_SENSOR_FILE, (v & 1) ? SE_STAT_FILTERED : SE_STAT_DEDUPED);
	return 1;
}

static __always_inline int file__dedup_hit(struct se_dedup_key *key, __u64 now)
{
	__u32 slot = file__dedup_slot(key);
	struct se_dedup_slot *c = bpf_map_lookup_elem(&se_dedup_cache, &slot);
	if (c && c->key.tgid == key->tgid && c->key.flags == key->flags && c->key.ino == key->ino &&
	    c->key.dev == key->dev && c->key.gen == key->gen)
		return file__dedup_check(c->ts, now);
	__u64 *last = bpf_map_lookup_elem(&se_dedup_map, key);
	if (!last)
		return 0;
	return file__dedup_check(*last, now);
}

/* remember a reported (or, with the low bit, filtered) open */
static __always_inline void file__dedup_store(struct se_dedup_key *key, __u64 v)
{
	__u32 slot = file__dedup_slot(key);
	struct se_dedup_slot *c = bpf_map_lookup_elem(&se_dedup_cache, &slot);
	if (c) {
		c->key = *key;
		c->ts = v;
	}
	bpf_map_update_elem(&se_dedup_map, key, &v, BPF_ANY);
}

/* ---- prefix filters ------------------------------------------------------ */

/*
 * One absolute path as seg1, or seg1 + "/" + seg2 (base + raw). Kept in
 * se_scratch_map (see struct file_scratch) like the path walk state, so the
 * verifier does not split the caller's state on every callback outcome.
 */
struct file_fpath {
	__u32 off1, len1;
	__u32 off2, len2;
	__u32 two;
	__u32 exclude;           /* 0: match include[], 1: match exclude[] */
	__u32 matched;
	__u32 dotdot;
	__u32 cur;               /* prefix being compared */
	__u32 plen;              /* bytes of it matched, SE_PREFIX_MISMATCH on a difference */
};
#define SE_PREFIX_MISMATCH 0xffffffffu

struct file_fpath_ctx {
	struct se_heap *heap;
	struct file_fpath *fp;
};

static __always_inline char file__fpath_char(struct file_fpath_ctx *c, __u32 i)
{
	struct file_fpath *p = c->fp;
	__u32 off, len1 = p->len1;

	if (i < len1) {
		off = p->off1 + i;
	} else if (!p->two) {
		return 0;
	} else if (i == len1) {
		return '/';
	} else if (i - len1 - 1 < p->len2) {
		off = p->off2 + (i - len1 - 1);
	} else {
		return 0;
	}
	return c->heap->buf[off & SE_MASK];
}

/* one byte of the current prefix against the path; state in fp->cur / fp->plen */
static long file__prefix_char(__u32 i, void *data)
{
	struct file_fpath_ctx *c = data;
	struct file_fpath *p = c->fp;
	__u32 idx = p->cur & (SE_PREFIX_MAX - 1);
	const volatile char *pre = p->exclude ? se_cfg.exclude[idx] : se_cfg.include[idx];

	if (i >= SE_PREFIX_LEN)
		return 1;
	char ch = pre[i];
	if (!ch)
		return 1;
	if (file__fpath_char(c, i) != ch) {
		p->plen = SE_PREFIX_MISMATCH;
		return 1;
	}
	p->plen = i + 1;
	return 0;
}

static long file__prefix_one(__u32 idx, void *data)
{
	struct file_fpath_ctx *c = data;
	struct file_fpath *p = c->fp;

	p->cur = idx;
	p->plen = 0;
	bpf_loop(SE_PREFIX_LEN, file__prefix_char, c, 0);
	__u32 plen = p->plen;
	if (plen == 0 || plen > SE_PREFIX_LEN)
		return 0;   /* empty prefix (matches nothing) or a mismatch */
	const volatile char *pre = p->exclude ? se_cfg.exclude[idx & (SE_PREFIX_MAX - 1)]
					      : se_cfg.include[idx & (SE_PREFIX_MAX - 1)];
	char next = file__fpath_char(c, plen);
	/* on a component boundary: the prefix ends in '/', or the path ends or continues with '/' */
	if (pre[(plen - 1) & (SE_PREFIX_LEN - 1)] == '/' || next == 0 || next == '/') {
		p->matched = 1;
		return 1;
	}
	return 0;
}

static __always_inline int file__prefix_match(struct file_fpath_ctx *c, __u32 exclude)
{
	__u32 n = exclude ? se_cfg.n_exclude : se_cfg.n_include;
	if (n > SE_PREFIX_MAX)
		n = SE_PREFIX_MAX;
	c->fp->exclude = exclude;
	c->fp->matched = 0;
	if (n)
		bpf_loop(n, file__prefix_one, c, 0);
	return c->fp->matched;
}

/* a ".." component in seg2 (the raw path) */
static long file__dotdot_one(__u32 i, void *data)
{
	struct file_fpath_ctx *c = data;
	char *buf = c->heap->buf;
	__u32 o = c->fp->off2, len = c->fp->len2;

	if (i + 1 >= len)
		return 1;
	if (buf[(o + i) & SE_MASK] != '.' || buf[(o + i + 1) & SE_MASK] != '.')
		return 0;
	if (i > 0 && buf[(o + i - 1) & SE_MASK] != '/')
		return 0;
	if (i + 2 < len && buf[(o + i + 2) & SE_MASK] != '/')
		return 0;
	c->fp->dotdot = 1;
	return 1;
}

/*
 * Is this path wanted by the filters? `resolved` paths come from dentries;
 * raw ones (base + raw) may hide their target behind "..".
 */
static __noinline int file__path_wanted(struct se_heap *heap, struct se_str *resolved,
					struct se_str *raw, struct se_str *base)
{
	__u32 zero = 0;
	struct file_fpath_ctx c = { .heap = heap };
	struct file_fpath *p;

	if (!heap)
		return 1;
	c.fp = bpf_map_lookup_elem(&se_scratch_map, &zero);
	if (!c.fp)
		return 1;
	p = (struct file_fpath *)((char *)c.fp + 64);
	c.fp = p;
	p->two = 0;
	p->dotdot = 0;
	if (resolved->len) {
		p->off1 = resolved->off;
		p->len1 = resolved->len;
	} else {
		if (!raw->len)
			return 1;
		p->off2 = raw->off;
		p->len2 = raw->len;
		bpf_loop(SE_PATH_MAX, file__dotdot_one, &c, 0);
		if (p->dotdot)
			return 1;
		if (heap->buf[raw->off & SE_MASK] == '/') {
			p->off1 = raw->off;
			p->len1 = raw->len;
		} else {
			if (!base->len)
				return 1;    /* relative to an unknown directory */
			p->off1 = base->off;
			p->len1 = base->len == 1 ? 0 : base->len;  /* base "/": no double slash */
			p->two = 1;
		}
	}
	if (se_cfg.n_include && !file__prefix_match(&c, 0))
		return 0;
	return !file__prefix_match(&c, 1);
}

/* ---- paths --------------------------------------------------------------- */

/*
 * The same walk as se_path__append() (absolute host path, crossing mount
 * points, same truncation), with each loop body a bpf_loop() callback and the
 * loop state in se_scratch_map: the verifier checks each body once instead of
 * unrolling it in every program (an exit walks up to three paths).
 */
struct file_walk {
	__u64 dentry;            /* struct dentry * */
	__u64 mnt;               /* struct mount * */
	__u32 n;                 /* names collected in heap->names, leaf first */
	__u32 done;              /* reached the root */
	__u32 p;
	__u32 start;
	__u32 trunc;
	__u32 _pad;
};

struct file_walk_ctx {
	struct se_heap *heap;
	struct file_walk *w;
};

static long file__walk_up(__u32 i, void *data)
{
	struct file_walk_ctx *c = data;
	struct file_walk *w = c->w;
	struct dentry *d = (struct dentry *)w->dentry;
	struct mount *mnt = (struct mount *)w->mnt;
	struct dentry *mnt_root = BPF_CORE_READ(mnt, mnt.mnt_root);
	struct dentry *parent = BPF_CORE_READ(d, d_parent);
	__u32 n = w->n;

	if (d == mnt_root) {
		struct mount *mparent = BPF_CORE_READ(mnt, mnt_parent);
		if (mparent == mnt || !mparent) {
			w->done = 1;
			return 1;
		}
		w->dentry = (__u64)BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = (__u64)mparent;
		return 0;
	}
	if (d == parent) {
		/* root of a filesystem not mounted here (pipe, anon, detached) */
		w->done = 1;
		return 1;
	}
	if (n >= SE_PATH_DEPTH)
		return 1;
	c->heap->names[n & (SE_PATH_DEPTH - 1)] = (__u64)BPF_CORE_READ(d, d_name.name);
	w->n = n + 1;
	w->dentry = (__u64)parent;
	return 0;
}

static long file__walk_copy(__u32 i, void *data)
{
	struct file_walk_ctx *c = data;
	struct file_walk *w = c->w;
	__u32 p = w->p, n = w->n;

	if (i >= n)
		return 1;
	if (p - w->start >= SE_PATH_MAX - SE_NAME_MAX || p >= SE_EVENT_MAX - SE_NAME_MAX) {
		w->trunc = 1;
		return 1;
	}
	c->heap->buf[p & SE_MASK] = '/';
	p++;
	const char *name = (const char *)c->heap->names[(n - 1 - i) & (SE_PATH_DEPTH - 1)];
	long len = bpf_probe_read_kernel_str(&c->heap->buf[p & SE_MASK], SE_NAME_MAX, name);
	if (len > 1)
		p += len - 1;
	w->p = p;
	return 0;
}

/* Append the absolute host path of `path`; returns 1 when truncated. */
static __always_inline int file__path_append(struct se_heap *heap, __u32 *pos,
					     struct se_str *field, const struct path *path)
{
	struct vfsmount *vfsmnt = BPF_CORE_READ(path, mnt);
	struct dentry *dentry = BPF_CORE_READ(path, dentry);
	__u32 zero = 0, p = *pos, end;
	struct file_walk_ctx c = { .heap = heap };

	field->off = 0;
	field->len = 0;
	if (!dentry)
		return 0;
	if (p >= SE_EVENT_MAX - SE_NAME_MAX)
		return 1;
	c.w = bpf_map_lookup_elem(&se_scratch_map, &zero);
	if (!c.w)
		return 0;
	c.w->dentry = (__u64)dentry;
	c.w->mnt = (__u64)container_of(vfsmnt, struct mount, mnt);
	c.w->n = 0;
	c.w->done = 0;
	c.w->trunc = 0;
	bpf_loop(SE_PATH_DEPTH + 16, file__walk_up, &c, 0);
	if (c.w->n == 0) {
		heap->buf[p & SE_MASK] = '/';
		heap->buf[(p + 1) & SE_MASK] = 0;
		field->off = p;
		field->len = 1;
		*pos = p + 2;
		return !c.w->done;
	}
	c.w->p = p;
	c.w->start = p;
	bpf_loop(SE_PATH_DEPTH, file__walk_copy, &c, 0);
	end = c.w->p;
	/* the callback kept end below SE_EVENT_MAX; say so to the verifier */
	if (end < p || end >= SE_EVENT_MAX)
		return 1;
	heap->buf[end & SE_MASK] = 0;
	field->off = p;
	field->len = end - p;
	*pos = end + 1;
	return c.w->trunc || !c.w->done;
}

/* Append the directory a relative path is taken from: cwd for AT_FDCWD, else dirfd. */
static __always_inline int file__path_append_dirfd(struct se_heap *heap, __u32 *pos,
						   struct se_str *field, int dirfd)
{
	field->off = 0;
	field->len = 0;
	if (dirfd == SE_AT_FDCWD) {
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		struct fs_struct *fs = BPF_CORE_READ(task, fs);
		return file__path_append(heap, pos, field, __builtin_preserve_access_index(&fs->pwd));
	}
	struct file *f = se_fd__file(dirfd);
	if (!f)
		return 0;
	return file__path_append(heap, pos, field, __builtin_preserve_access_index(&f->f_path));
}

/* ---- building the event ------------------------------------------------- */

static __always_inline __u32 file__encode_dev(dev_t sdev)
{
	/* new_encode_dev(): what stat() reports as st_dev */
	return ((sdev >> 20) << 8) | (sdev & 0xff) | ((sdev & 0xfff00) << 12);
}

static __always_inline __u32 file__room(__u32 pos)
{
	if (pos >= SE_EVENT_MAX)
		return 0;
	return SE_EVENT_MAX - pos < SE_PATH_MAX ? SE_EVENT_MAX - pos : SE_PATH_MAX;
}

static __always_inline int file__user_str(struct se_heap *heap, __u32 *pos, struct se_str *field,
					  const char *src, __u32 max)
{
	__u32 room = file__room(*pos);
	if (!src)
		return 0;
	if (max > room)
		max = room;
	if (max < 2)
		return 1;
	return se_event__append_str(heap, pos, field, src, max, 1);
}

static __always_inline int file__is_relative(struct se_heap *heap, struct se_str *s)
{
	return s->len && heap->buf[s->off & SE_MASK] != '/';
}

/*
 * Build and emit the event for a finished syscall. For a successful open the
 * dedup window is checked first, from the new fd's inode.
 */
static __always_inline int file__exit(struct se_sys_exit_ctx *ctx, struct file_args *a)
{
	long ret = ctx->ret;
	struct se_dedup_key key = {};
	struct file *f = NULL;
	__u64 now = 0;
	int dedup = 0;

	if (a->op == SE_FILE_OPEN) {
		if (ret >= 0)
			f = file__fd_file(ret);
		if (f && se_cfg.dedup_window_ns) {
			key.tgid = bpf_get_current_pid_tgid() >> 32;
			key.flags = a->open_flags;
			file__dev_ino(f, &key.dev, &key.ino);
			key.gen = file__generation(f);
			now = bpf_ktime_get_boot_ns();
			if (file__dedup_hit(&key, now))
				return 0;
			dedup = 1;
		}
	} else if (a->fd >= 0) {
		f = se_fd__file(a->fd);
	}

	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_file *ev = se_event__init(heap, SE_EV_FILE, sizeof(struct se_file));
	if (!ev)
		return 0;
	__u32 pos = sizeof(struct se_file);
	__u32 flags = a->flags;

	ev->op = a->op;
	ev->ret = ret;
	ev->syscall_nr = ctx->id;
	ev->dirfd = a->fd >= 0 ? a->fd : a->dirfd;
	ev->dirfd2 = a->dirfd2;
	ev->open_flags = a->open_flags;
	ev->mode = a->mode;
	ev->uid = a->uid;
	ev->gid = a->gid;
	ev->size = a->size;
	ev->resolve = a->resolve;

	if (file__user_str(heap, &pos, &ev->path, a->path, SE_PATH_MAX))
		flags |= SE_FILE_PATH_TRUNC;
	if (file__user_str(heap, &pos, &ev->path2, a->path2, SE_PATH_MAX))
		flags |= SE_FILE_PATH_TRUNC;

	/* no path, or an empty one with AT_EMPTY_PATH: the call acts on dirfd itself */
	if (!f && a->fd < 0 && a->dirfd >= 0 && !ev->path.len &&
	    (!a->path || (a->open_flags & SE_AT_EMPTY_PATH)))
		f = se_fd__file(a->dirfd);
	if (f) {
		struct inode *inode = BPF_CORE_READ(f, f_inode);
		ev->dev = file__encode_dev(BPF_CORE_READ(inode, i_sb, s_dev));
		ev->ino = BPF_CORE_READ(inode, i_ino);
		if (file__path_append(heap, &pos, &ev->resolved, __builtin_preserve_access_index(&f->f_path)))
			flags |= SE_FILE_PATH_TRUNC;
		flags |= SE_FILE_RESOLVED_BY_FD;
	}
	if (file__is_relative(heap, &ev->path) &&
	    file__path_append_dirfd(heap, &pos, &ev->base, a->dirfd))
		flags |= SE_FILE_PATH_TRUNC;
	if (a->path2_is_path && file__is_relative(heap, &ev->path2) &&
	    file__path_append_dirfd(heap, &pos, &ev->base2, a->dirfd2))
		flags |= SE_FILE_PATH_TRUNC;
	if (a->xattr_name)
		file__user_str(heap, &pos, &ev->xattr_name, a->xattr_name, SE_NAME_MAX);
	ev->flags = flags;

	int filtered = 0;
	if (se_cfg.n_include || se_cfg.n_exclude) {
		int wanted = file__path_wanted(heap, &ev->resolved, &ev->path, &ev->base);
		if (!wanted && a->path2_is_path) {
			struct se_str none = {};
			wanted = file__path_wanted(heap, &none, &ev->path2, &ev->base2);
		}
		filtered = !wanted;
	}
	if (dedup) {
		file__dedup_store(&key, (now & ~1ULL) | (filtered ? 1 : 0));
	}
	if (filtered) {
		se_stat__inc(SE_SENSOR_FILE, SE_STAT_FILTERED);
		return 0;
	}
	se_event__emit(SE_SENSOR_FILE, heap, pos);
	return 0;
}

/*
 * The program for syscall `sys` taking `nargs` arguments, which
 * `decode(struct file_args *, const __u64 *args)` turns into file_args.
 */
#define SE_FILE_SYSCALL(sys, nargs, decode)                                   \
SEC("tp/syscalls/sys_exit_" #sys)                                             \
int file_##sys##_exit(struct se_sys_exit_ctx *ctx)                            \
{                                                                             \
	__u64 args[6] = {};                                                   \
	struct file_args a = {                                                \
		.dirfd = SE_AT_FDCWD, .dirfd2 = SE_AT_FDCWD, .fd = -1,        \
	};                                                                    \
	if (se_skip(SE_SENSOR_FILE))                                          \
		return 0;                                                     \
	file__args(args, nargs);                                              \
	decode(&a, args);                                                     \
	return file__exit(ctx, &a);                                           \
}

#endif /* SE_FILE_H */
