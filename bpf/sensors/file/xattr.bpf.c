/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Extended attribute writes: setxattr, lsetxattr, fsetxattr, setxattrat.
 * xattr_name is the attribute, size the value length, open_flags the
 * XATTR_CREATE/XATTR_REPLACE flags (setxattrat: ORed with its AT_* flags,
 * which do not overlap them).
 */
#include "file.h"

/* setxattr(path, name, value, size, flags) */
static __always_inline void setxattr_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_SETXATTR;
	a->path = (const char *)args[0];
	a->xattr_name = (const char *)args[1];
	a->size = args[3];
	a->open_flags = args[4];
	a->flags = SE_FILE_FOLLOW;
}

/* lsetxattr(path, name, value, size, flags): the link itself */
static __always_inline void lsetxattr_decode(struct file_args *a, const __u64 *args)
{
	setxattr_decode(a, args);
	a->flags = 0;
}

/* fsetxattr(fd, name, value, size, flags) */
static __always_inline void fsetxattr_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_SETXATTR;
	a->fd = args[0];
	a->xattr_name = (const char *)args[1];
	a->size = args[3];
	a->open_flags = args[4];
}

/* setxattrat(dirfd, path, at_flags, name, struct xattr_args *uargs, usize) */
static __always_inline void setxattrat_decode(struct file_args *a, const __u64 *args)
{
	struct xattr_args xa = {};

	a->op = SE_FILE_SETXATTR;
	a->dirfd = args[0];
	a->path = (const char *)args[1];
	a->xattr_name = (const char *)args[3];
	bpf_probe_read_user(&xa, sizeof(xa), (const void *)args[4]);
	a->size = xa.size;
	a->open_flags = (__u32)args[2] | xa.flags;
	a->flags = (args[2] & SE_AT_SYMLINK_NOFOLLOW) ? 0 : SE_FILE_FOLLOW;
}

SE_FILE_SYSCALL(setxattr, 5, setxattr_decode)
SE_FILE_SYSCALL(lsetxattr, 5, lsetxattr_decode)
SE_FILE_SYSCALL(fsetxattr, 5, fsetxattr_decode)
SE_FILE_SYSCALL(setxattrat, 5, setxattrat_decode)

SE_LICENSE;
