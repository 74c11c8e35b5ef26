/* SPDX-License-Identifier: GPL-2.0 */
/* Permission changes: chmod, fchmod, fchmodat, fchmodat2. */
#include "file.h"

/* chmod(path, mode) */
static __always_inline void chmod_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_CHMOD;
	a->path = (const char *)args[0];
	a->mode = args[1];
	a->flags = SE_FILE_FOLLOW;
}

/* fchmod(fd, mode) */
static __always_inline void fchmod_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_CHMOD;
	a->fd = args[0];
	a->mode = args[1];
}

/* fchmodat(dirfd, path, mode): the syscall has no flags, it always follows */
static __always_inline void fchmodat_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_CHMOD;
	a->dirfd = args[0];
	a->path = (const char *)args[1];
	a->mode = args[2];
	a->flags = SE_FILE_FOLLOW;
}

/* fchmodat2(dirfd, path, mode, flags) */
static __always_inline void fchmodat2_decode(struct file_args *a, const __u64 *args)
{
	fchmodat_decode(a, args);
	a->open_flags = args[3];
	a->flags = (a->open_flags & SE_AT_SYMLINK_NOFOLLOW) ? 0 : SE_FILE_FOLLOW;
}

SE_FILE_SYSCALL(chmod, 2, chmod_decode)
SE_FILE_SYSCALL(fchmod, 2, fchmod_decode)
SE_FILE_SYSCALL(fchmodat, 3, fchmodat_decode)
SE_FILE_SYSCALL(fchmodat2, 4, fchmodat2_decode)

SE_LICENSE;
