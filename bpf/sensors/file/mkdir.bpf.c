/* SPDX-License-Identifier: GPL-2.0 */
/* Directory creation: mkdir, mkdirat. */
#include "file.h"

/* mkdir(path, mode) */
static __always_inline void mkdir_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_MKDIR;
	a->path = (const char *)args[0];
	a->mode = args[1];
}

/* mkdirat(dirfd, path, mode) */
static __always_inline void mkdirat_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_MKDIR;
	a->dirfd = args[0];
	a->path = (const char *)args[1];
	a->mode = args[2];
}

SE_FILE_SYSCALL(mkdir, 2, mkdir_decode)
SE_FILE_SYSCALL(mkdirat, 3, mkdirat_decode)

SE_LICENSE;
