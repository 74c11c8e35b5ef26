/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mount(2) and umount2(2): source, target and filesystem type as given, the
 * flags, the result and the namespace ids around the call. The strings are
 * read at exit, when the kernel has just copied them (pages resident).
 *
 * The new mount API (util-linux >= 2.39 uses it for `mount --bind`):
 * open_tree(2) (source path, OPEN_TREE_* flags in `flags`, dirfd in `fd`,
 * ret = the tree's fd) and move_mount(2), which attaches any new mount
 * (source = from_path, or with MOVE_MOUNT_F_EMPTY_PATH the fd in `fd` that
 * open_tree or fsmount returned; target = to_path; MOVE_MOUNT_* in `flags`).
 * Relative to_path is relative to to_dfd, which is not reported.
 */
#include "priv.h"

PRIV_NS_ENTER(mount, 4)

SEC("tp/syscalls/sys_exit_mount")
int priv_mount_exit(struct se_sys_exit_ctx *ctx)
{
	struct se_inflight in;
	struct se_heap *heap;
	struct se_ns *ev = priv__ns_exit(ctx, &in, &heap, SE_NS_MOUNT);
	if (!ev)
		return 0;
	__u32 pos = sizeof(struct se_ns);

	ev->flags = in.args[3];
	ev->fd = -1;
	se_event__append_str(heap, &pos, &ev->source, (void *)in.args[0], SE_PATH_MAX, 1);
	se_event__append_str(heap, &pos, &ev->target, (void *)in.args[1], SE_PATH_MAX, 1);
	se_event__append_str(heap, &pos, &ev->fstype, (void *)in.args[2], SE_NAME_MAX, 1);
	se_event__emit(SE_SENSOR_PRIV, heap, pos);
	return 0;
}

/* the kernel names umount2(2) "umount" */
PRIV_NS_ENTER(umount, 2)

SEC("tp/syscalls/sys_exit_umount")
int priv_umount_exit(struct se_sys_exit_ctx *ctx)
{
	struct se_inflight in;
	struct se_heap *heap;
	struct se_ns *ev = priv__ns_exit(ctx, &in, &heap, SE_NS_UMOUNT);
	if (!ev)
		return 0;
	__u32 pos = sizeof(struct se_ns);

	ev->flags = (__u32)in.args[1];
	ev->fd = -1;
	se_event__append_str(heap, &pos, &ev->target, (void *)in.args[0], SE_PATH_MAX, 1);
	se_event__emit(SE_SENSOR_PRIV, heap, pos);
	return 0;
}

/* open_tree(dfd, path, flags) */
PRIV_NS_ENTER(open_tree, 3)

SEC("tp/syscalls/sys_exit_open_tree")
int priv_open_tree_exit(struct se_sys_exit_ctx *ctx)
{
	struct se_inflight in;
	struct se_heap *heap;
	struct se_ns *ev = priv__ns_exit(ctx, &in, &heap, SE_NS_OPEN_TREE);
	if (!ev)
		return 0;
	__u32 pos = sizeof(struct se_ns);

	ev->flags = (__u32)in.args[2];
	ev->fd = (__s32)in.args[0];
	se_event__append_str(heap, &pos, &ev->source, (void *)in.args[1], SE_PATH_MAX, 1);
	se_event__emit(SE_SENSOR_PRIV, heap, pos);
	return 0;
}

/* move_mount(from_dfd, from_path, to_dfd, to_path, flags) */
PRIV_NS_ENTER(move_mount, 5)

SEC("tp/syscalls/sys_exit_move_mount")
int priv_move_mount_exit(struct se_sys_exit_ctx *ctx)
{
	struct se_inflight in;
	struct se_heap *heap;
	struct se_ns *ev = priv__ns_exit(ctx, &in, &heap, SE_NS_MOVE_MOUNT);
	if (!ev)
		return 0;
	__u32 pos = sizeof(struct se_ns);

	ev->flags = (__u32)in.args[4];
	ev->fd = (__s32)in.args[0];
	se_event__append_str(heap, &pos, &ev->source, (void *)in.args[1], SE_PATH_MAX, 1);
	se_event__append_str(heap, &pos, &ev->target, (void *)in.args[3], SE_PATH_MAX, 1);
	se_event__emit(SE_SENSOR_PRIV, heap, pos);
	return 0;
}

SE_LICENSE;
