/* SPDX-License-Identifier: GPL-2.0 */
/*
 * setuid, setreuid, setresuid, setfsuid and their gid twins: the ids asked
 * for, every id before (read at entry) and after (read at exit), the
 * capability sets before and after (a uid change can drop them), the result.
 */
#include "priv.h"

/*
 * Read only the arguments the syscall has: a tracepoint program that reads
 * past the end of its tracepoint's record is refused at attach (EACCES).
 */
static __always_inline int setid_enter(struct se_sys_enter_ctx *ctx, int nargs)
{
	if (se_skip(SE_SENSOR_PRIV))
		return 0;
	struct se_inflight v = {};
	struct se_ids ids;
	struct priv_caps caps;

	v.args[0] = ctx->args[0];
	if (nargs > 1)
		v.args[1] = ctx->args[1];
	if (nargs > 2)
		v.args[2] = ctx->args[2];
	priv__caps(&caps);
	v.args[3] = caps.effective;
	v.args[4] = caps.permitted;
	v.args[5] = caps.inheritable;
	priv__ids(&ids);
	priv__ids_pack(&ids, v.aux64);
	priv__save(&v, ctx->id);
	return 0;
}

static __always_inline int setid_exit(struct se_sys_exit_ctx *ctx, __u32 op, int nargs)
{
	struct se_inflight in;
	if (priv__take(&in, ctx->id))
		return 0;
	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_cred *ev = se_event__init(heap, SE_EV_CRED, sizeof(struct se_cred));
	if (!ev)
		return 0;
	struct priv_caps caps;

	ev->op = op;
	ev->ret = ctx->ret;
	/* unused argument slots stay 0; the op says how many there are */
	ev->args[0] = in.args[0];
	if (nargs > 1)
		ev->args[1] = in.args[1];
	if (nargs > 2)
		ev->args[2] = in.args[2];
	priv__ids_unpack(in.aux64, &ev->old_ids);
	priv__ids(&ev->new_ids);
	ev->old_cap_effective = in.args[3];
	ev->old_cap_permitted = in.args[4];
	ev->old_cap_inheritable = in.args[5];
	priv__caps(&caps);
	ev->new_cap_effective = caps.effective;
	ev->new_cap_permitted = caps.permitted;
	ev->new_cap_inheritable = caps.inheritable;
	se_event__emit(SE_SENSOR_PRIV, heap, sizeof(struct se_cred));
	return 0;
}

#define SETID(name, op, nargs)							\
SEC("tp/syscalls/sys_enter_" #name)						\
int priv_##name##_enter(struct se_sys_enter_ctx *ctx)				\
{										\
	return setid_enter(ctx, nargs);						\
}										\
SEC("tp/syscalls/sys_exit_" #name)						\
int priv_##name##_exit(struct se_sys_exit_ctx *ctx)				\
{										\
	return setid_exit(ctx, op, nargs);					\
}

SETID(setuid, SE_CRED_SETUID, 1)
SETID(setreuid, SE_CRED_SETREUID, 2)
SETID(setresuid, SE_CRED_SETRESUID, 3)
SETID(setfsuid, SE_CRED_SETFSUID, 1)
SETID(setgid, SE_CRED_SETGID, 1)
SETID(setregid, SE_CRED_SETREGID, 2)
SETID(setresgid, SE_CRED_SETRESGID, 3)
SETID(setfsgid, SE_CRED_SETFSGID, 1)

SE_LICENSE;
