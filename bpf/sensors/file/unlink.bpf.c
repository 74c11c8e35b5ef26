/* SPDX-License-Identifier: GPL-2.0 */
/* File removal: unlink, unlinkat (AT_REMOVEDIR reports RMDIR), rmdir. */
#include "file.h"

/* unlink(path) */
static __always_inline void unlink_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_UNLINK;
	a->path = (const char *)args[0];
}

/* unlinkat(dirfd, path, flags) */
static __always_inline void unlinkat_decode(struct file_args *a, const __u64 *args)
{
	a->dirfd = args[0];
	a->path = (const char *)args[1];
	a->open_flags = args[2];
	a->op = (a->open_flags & SE_AT_REMOVEDIR) ? SE_FILE_RMDIR : SE_FILE_UNLINK;
}

/* rmdir(path) */
static __always_inline void rmdir_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_RMDIR;
	a->path = (const char *)args[0];
}

SE_FILE_SYSCALL(unlink, 1, unlink_decode)
SE_FILE_SYSCALL(unlinkat, 3, unlinkat_decode)
SE_FILE_SYSCALL(rmdir, 1, rmdir_decode)

SE_LICENSE;
