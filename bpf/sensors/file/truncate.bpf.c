/* SPDX-License-Identifier: GPL-2.0 */
/* Truncation: truncate, ftruncate (length in size). */
#include "file.h"

/* truncate(path, length) */
static __always_inline void truncate_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_TRUNCATE;
	a->path = (const char *)args[0];
	a->size = args[1];
	a->flags = SE_FILE_FOLLOW;
}

/* ftruncate(fd, length) */
static __always_inline void ftruncate_decode(struct file_args *a, const __u64 *args)
{
	a->op = SE_FILE_TRUNCATE;
	a->fd = args[0];
	a->size = args[1];
}

SE_FILE_SYSCALL(truncate, 2, truncate_decode)
SE_FILE_SYSCALL(ftruncate, 2, ftruncate_decode)

SE_LICENSE;
