/* SPDX-License-Identifier: GPL-2.0 */
/* Renames: rename, renameat, renameat2 (RENAME_* flags in open_flags). */
#include "file.h"

/* rename(old, new) */
static __always_inline void rename_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_RENAME;
	a->path = (const char *)args[0];
	a->path2 = (const char *)args[1];
	a->path2_is_path = 1;
}

/* renameat(olddirfd, old, newdirfd, new) */
static __always_inline void renameat_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_RENAME;
	a->dirfd = args[0];
	a->path = (const char *)args[1];
	a->dirfd2 = args[2];
	a->path2 = (const char *)args[3];
	a->path2_is_path = 1;
}

/* renameat2(olddirfd, old, newdirfd, new, flags) */
static __always_inline void renameat2_decode(struct file_args *a, const __u64 *args)
{
	renameat_decode(a, args);
	a->open_flags = args[4];
}

SE_FILE_SYSCALL(rename, 2, rename_decode)
SE_FILE_SYSCALL(renameat, 4, renameat_decode)
SE_FILE_SYSCALL(renameat2, 5, renameat2_decode)

SE_LICENSE;
