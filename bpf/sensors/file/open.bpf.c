/* SPDX-License-Identifier: GPL-2.0 */
/*
 * File opens: open, creat, openat, openat2. A successful open reports the
 * absolute host path of the file actually opened (from the new fd) with its
 * device and inode; repeats by the same process are suppressed in-kernel
 * within se_cfg.dedup_window_ns (see file.h).
 */
#include "file.h"

static __always_inline __u32 open_follow(__u32 oflags)
{
	/* O_NOFOLLOW, or O_CREAT|O_EXCL, never follow a final symlink */
	if ((oflags & SE_O_NOFOLLOW) || ((oflags & SE_O_CREAT) && (oflags & SE_O_EXCL)))
		return 0;
	return SE_FILE_FOLLOW;
}

/* open(path, flags, mode) */
static __always_inline void open_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_OPEN;
	a->path = (const char *)args[0];
	a->open_flags = args[1];
	a->mode = args[2];
	a->flags = open_follow(a->open_flags);
}

/* creat(path, mode) == open(path, O_CREAT|O_WRONLY|O_TRUNC, mode) */
static __always_inline void creat_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_OPEN;
	a->path = (const char *)args[0];
	a->open_flags = SE_O_CREAT | SE_O_WRONLY | SE_O_TRUNC;
	a->mode = args[1];
	a->flags = SE_FILE_FOLLOW;
}

/* openat(dirfd, path, flags, mode) */
static __always_inline void openat_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_OPEN;
	a->dirfd = args[0];
	a->path = (const char *)args[1];
	a->open_flags = args[2];
	a->mode = args[3];
	a->flags = open_follow(a->open_flags);
}

/* openat2(dirfd, path, struct open_how *how, size) */
static __always_inline void openat2_decode(struct file_args *a, const __u64 *args)
{
	struct open_how how = {};

	a->op = SE_FILE_OPEN;
	a->dirfd = args[0];
	a->path = (const char *)args[1];
	if (args[3] >= sizeof(how))
		bpf_probe_read_user(&how, sizeof(how), (const void *)args[2]);
	else if (args[3] >= 16)
		bpf_probe_read_user(&how, 16, (const void *)args[2]);
	a->open_flags = how.flags;
	a->mode = how.mode;
	a->resolve = how.resolve;
	a->flags = open_follow(a->open_flags);
}

SE_FILE_SYSCALL(open, 3, open_decode)
SE_FILE_SYSCALL(creat, 2, creat_decode)
SE_FILE_SYSCALL(openat, 4, openat_decode)
SE_FILE_SYSCALL(openat2, 4, openat2_decode)

SE_LICENSE;
