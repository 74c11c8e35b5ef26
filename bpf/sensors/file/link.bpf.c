/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Hard links: link, linkat. path is the existing file, path2 the new name.
 * link() never follows a final symlink; linkat() only with AT_SYMLINK_FOLLOW.
 */
#include "file.h"

/* link(old, new) */
static __always_inline void link_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_LINK;
	a->path = (const char *)args[0];
	a->path2 = (const char *)args[1];
	a->path2_is_path = 1;
}

/* linkat(olddirfd, old, newdirfd, new, flags) */
static __always_inline void linkat_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_LINK;
	a->dirfd = args[0];
	a->path = (const char *)args[1];
	a->dirfd2 = args[2];
	a->path2 = (const char *)args[3];
	a->open_flags = args[4];
	a->path2_is_path = 1;
	a->flags = (a->open_flags & SE_AT_SYMLINK_FOLLOW) ? SE_FILE_FOLLOW : 0;
}

SE_FILE_SYSCALL(link, 2, link_decode)
SE_FILE_SYSCALL(linkat, 5, linkat_decode)

SE_LICENSE;
