/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Timestamp changes: utimensat (a NULL path acts on dirfd itself), utime,
 * utimes, futimesat. The times themselves are not reported.
 */
#include "file.h"

/* utimensat(dirfd, path, times, flags) */
static __always_inline void utimensat_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_UTIMES;
	a->dirfd = args[0];
	a->path = (const char *)args[1];
	a->open_flags = args[3];
	a->flags = (a->open_flags & SE_AT_SYMLINK_NOFOLLOW) ? 0 : SE_FILE_FOLLOW;
}

/* utime(path, times) and utimes(path, times) */
static __always_inline void utime_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_UTIMES;
	a->path = (const char *)args[0];
	a->flags = SE_FILE_FOLLOW;
}

/* futimesat(dirfd, path, times) */
static __always_inline void futimesat_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_UTIMES;
	a->dirfd = args[0];
	a->path = (const char *)args[1];
	a->flags = SE_FILE_FOLLOW;
}

SE_FILE_SYSCALL(utimensat, 4, utimensat_decode)
SE_FILE_SYSCALL(utime, 2, utime_decode)
SE_FILE_SYSCALL(utimes, 2, utime_decode)
SE_FILE_SYSCALL(futimesat, 3, futimesat_decode)

SE_LICENSE;
