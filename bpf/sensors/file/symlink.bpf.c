/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Symbolic links: symlink, symlinkat. path is the link created (relative to
 * dirfd / cwd, so it gets a base); path2 is the link's content as given,
 * which is not a path relative to anything at this point (no base2).
 */
#include "file.h"

/* symlink(target, linkpath) */
static __always_inline void symlink_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_SYMLINK;
	a->path2 = (const char *)args[0];
	a->path = (const char *)args[1];
}

/* symlinkat(target, newdirfd, linkpath) */
static __always_inline void symlinkat_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_SYMLINK;
	a->path2 = (const char *)args[0];
	a->dirfd = args[1];
	a->path = (const char *)args[2];
}

SE_FILE_SYSCALL(symlink, 2, symlink_decode)
SE_FILE_SYSCALL(symlinkat, 3, symlinkat_decode)

SE_LICENSE;
