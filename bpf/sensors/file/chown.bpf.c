/* SPDX-License-Identifier: GPL-2.0 */
/* Ownership changes: chown, fchown, lchown, fchownat. */
#include "file.h"

/* chown(path, uid, gid) */
static __always_inline void chown_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_CHOWN;
	a->path = (const char *)args[0];
	a->uid = args[1];
	a->gid = args[2];
	a->flags = SE_FILE_FOLLOW;
}

/* lchown(path, uid, gid): the link itself */
static __always_inline void lchown_decode(struct file_args *a, const __u64 *args)
{
	chown_decode(a, args);
	a->flags = 0;
}

/* fchown(fd, uid, gid) */
static __always_inline void fchown_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_CHOWN;
	a->fd = args[0];
	a->uid = args[1];
	a->gid = args[2];
}

/* fchownat(dirfd, path, uid, gid, flags) */
static __always_inline void fchownat_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_CHOWN;
	a->dirfd = args[0];
	a->path = (const char *)args[1];
	a->uid = args[2];
	a->gid = args[3];
	a->open_flags = args[4];
	a->flags = (a->open_flags & SE_AT_SYMLINK_NOFOLLOW) ? 0 : SE_FILE_FOLLOW;
}

SE_FILE_SYSCALL(chown, 3, chown_decode)
SE_FILE_SYSCALL(lchown, 3, lchown_decode)
SE_FILE_SYSCALL(fchown, 3, fchown_decode)
SE_FILE_SYSCALL(fchownat, 5, fchownat_decode)

SE_LICENSE;
