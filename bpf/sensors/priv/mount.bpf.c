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

SEC("tp/syscalls/sys_enter_mount")
int priv_mount_enter(struct se_sys_enter_ctx *ctx)
{
	if (se_skip(SE_SENSOR_PRIV))
		return 0;
	priv__ns_save(ctx, 4);
	return 0;
}

SEC("tp/syscalls/sys_exit_mount")
int priv_mount_exit(struct se_sys_exit_ctx *ctx)
{
	struct se_inflight in;
	if (priv__take(&in, ctx->id))
		return 0;
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_ns *ev = priv__ns_event(heap, &in, SE_NS_MOUNT, ctx->ret);
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
SEC("tp/syscalls/sys_enter_umount")
int priv_umount_enter(struct se_sys_enter_ctx *ctx)
{
	if (se_skip(SE_SENSOR_PRIV))
		return 0;
	priv__ns_save(ctx, 2);
	return 0;
}

SEC("tp/syscalls/sys_exit_umount")
int priv_umount_exit(struct se_sys_exit_ctx *ctx)
{
	struct se_inflight in;
	if (priv__take(&in, ctx->id))
		return 0;
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_ns *ev = priv__ns_event(heap, &in, SE_NS_UMOUNT, ctx->ret);
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
SEC("tp/syscalls/sys_enter_open_tree")
int priv_open_tree_enter(struct se_sys_enter_ctx *ctx)
{
	if (se_skip(SE_SENSOR_PRIV))
		return 0;
	priv__ns_save(ctx, 3);
	return 0;
}

SEC("tp/syscalls/sys_exit_open_tree")
int priv_open_tree_exit(struct se_sys_exit_ctx *ctx)
{
	struct se_inflight in;
	if (priv__take(&in, ctx->id))
		return 0;
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_ns *ev = priv__ns_event(heap, &in, SE_NS_OPEN_TREE, ctx->ret);
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
SEC("tp/syscalls/sys_enter_move_mount")
int priv_move_mount_enter(struct se_sys_enter_ctx *ctx)
{
	if (se_skip(SE_SENSOR_PRIV))
		return 0;
	priv__ns_save(ctx, 5);
	return 0;
}

SEC("tp/syscalls/sys_exit_move_mount")
int priv_move_mount_exit(struct se_sys_exit_ctx *ctx)
{
	struct se_inflight in;
	if (priv__take(&in, ctx->id))
		return 0;
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_ns *ev = priv__ns_event(heap, &in, SE_NS_MOVE_MOUNT, ctx->ret);
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
