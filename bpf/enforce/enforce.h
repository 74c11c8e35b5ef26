/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Maps and helpers of the enforcement object (enforce.bpf.o), declared once.
 *
 * Every map here is pinned by the loader under the pin root
 * (/sys/fs/bpf/sentinel-edge/enforce/maps/<name>) together with the program
 * links, so enforcement keeps working while no agent runs and a restarted
 * agent adopts it. Policy maps are keyed by generation (see events.h).
 *
 * The sensor helpers of lib/common.h are reused for task fields and path
 * walks (their heap map); the sensor rings declared in maps.h are not
 * created for this object (the loader turns their autocreate off).
 */
#ifndef SE_ENFORCE_H
#define SE_ENFORCE_H

#include "lib/common.h"

/* keeps every enforcement wire type in the object's BTF (decoder and mirror tests read it) */
struct se_enf_wire {
	struct se_enforce enforce;
	struct se_enf_state state;
	struct se_enf_meta meta;
	struct se_enf_policy_key policy_key;
	struct se_enf_policy policy;
	struct se_enf_scope_key scope_key;
	struct se_enf_match_val match_val;
	struct se_enf_ident_key ident_key;
	struct se_enf_path_key path_key;
	struct se_enf_v4_key v4_key;
	struct se_enf_v6_key v6_key;
	enum se_event_type event_type;
	enum se_enf_kind kind;
	enum se_enf_action action;
	enum se_enf_match match;
	enum se_enf_scope_flags scope_flags;
};
struct se_enf_wire se_enf_wire_anchor __weak;

#define SE_SIGKILL 9
#define SE_PF_KTHREAD 0x00200000

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct se_enf_state);
} se_enf_state SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct se_enf_meta);
} se_enf_meta SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * SE_ENF_POLICY_MAX);
	__type(key, struct se_enf_policy_key);
	__type(value, struct se_enf_policy);
} se_enf_policies SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct se_enf_scope_key);
	__type(value, __u32);
} se_enf_scope SEC(".maps") __weak;

/* executables denied by identity (exec) or allowed by identity (kernel tamper) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct se_enf_ident_key);
	__type(value, struct se_enf_match_val);
} se_enf_exec_ident SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__type(key, struct se_enf_path_key);
	__type(value, struct se_enf_match_val);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} se_enf_exec_path SEC(".maps") __weak;

/* kernel tamper: executables allowed to load BPF programs / modules (value: policy idx list) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct se_enf_ident_key);
	__type(value, struct se_enf_match_val);
} se_enf_tamper_allow SEC(".maps") __weak;

/* kernel tamper policies of the active generation, per kind: key {gen, SE_ENF_BPF|SE_ENF_MODULE} */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, struct se_enf_policy_key);
	__type(value, struct se_enf_match_val);
} se_enf_tamper SEC(".maps") __weak;

/* executables never killed (safety list, not generation keyed): {0, dev, ino} */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct se_enf_ident_key);
	__type(value, __u32);
} se_enf_safe SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} se_enf_ring SEC(".maps") __weak;

/* counters, enum se_enf_stat; per CPU */
enum se_enf_stat {
	SE_ENF_STAT_HITS      = 0,   /* a policy matched */
	SE_ENF_STAT_KILLS     = 1,   /* SIGKILL sent */
	SE_ENF_STAT_KILL_FAIL = 2,   /* bpf_send_signal failed */
	SE_ENF_STAT_AUDITS    = 3,   /* matched in audit mode or disarmed */
	SE_ENF_STAT_DROPPED   = 4,   /* enforcement event lost: ring full */
	SE_ENF_STAT_SPARED    = 5,   /* matched but the task is protected (pid 1, kthread, agent, safe) */
	SE_ENF_STAT_DENIES    = 6,   /* connect EPERM */
	SE_ENF_STAT_DROPS     = 7,   /* packets dropped by XDP */
	SE_ENF_STAT_MAX       = 8,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SE_ENF_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} se_enf_stats SEC(".maps") __weak;

/* scratch for the prefix-trie key (larger than the stack allows) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct se_enf_path_key);
} se_enf_scratch SEC(".maps") __weak;

static __always_inline void se_enf__count(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&se_enf_stats, &stat);
	if (v)
		*v += 1;
}

static __always_inline struct se_enf_state *se_enf__state(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&se_enf_state, &zero);
}

static __always_inline __u32 se_enf__dev(struct inode *inode)
{
	dev_t sdev = BPF_CORE_READ(inode, i_sb, s_dev);
	return ((sdev >> 20) << 8) | (sdev & 0xff) | ((sdev & 0xfff00) << 12);
}

/* pid 1, kernel threads and the agent are never killed or denied */
static __always_inline bool se_enf__protected_task(struct task_struct *task,
						   const struct se_enf_state *st)
{
	__u32 tgid = BPF_CORE_READ(task, tgid);
	if (tgid <= 1)
		return true;
	if (BPF_CORE_READ(task, flags) & SE_PF_KTHREAD)
		return true;
	/* user space knows the start time in /proc clock ticks (10 ms): compare at that grain */
	return st->agent_tgid && tgid == st->agent_tgid &&
	       se_task__start_ns(task) / 10000000 == st->agent_start_ns / 10000000;
}

static __always_inline bool se_enf__safe_exe(__u32 dev, __u64 ino)
{
	struct se_enf_ident_key k = { .gen = 0, .dev = dev, .ino = ino };
	return bpf_map_lookup_elem(&se_enf_safe, &k) != NULL;
}

static __always_inline bool se_enf__scope_has(__u32 gen, __u32 idx, __u16 what, __u64 value, __u64 value2)
{
	struct se_enf_scope_key k = {
		.gen = gen, .idx = (__u16)idx, .what = what, .value = value, .value2 = value2,
	};
	return bpf_map_lookup_elem(&se_enf_scope, &k) != NULL;
}

/* Is the task described by p (and its parent's exe) inside policy idx's scope? */
static __always_inline bool se_enf__in_scope(__u32 gen, __u32 idx, const struct se_enf_policy *pol,
					     const struct se_proc *p, struct task_struct *task)
{
	__u32 sc = pol->scope;
	if (!sc)
		return true;
	if (sc & (SE_SCOPE_HOST | SE_SCOPE_CONTAINERS)) {
		bool host = p->pid_ns == pol->host_pid_ns;
		if ((sc & SE_SCOPE_HOST) && !host)
			return false;
		if ((sc & SE_SCOPE_CONTAINERS) && host)
			return false;
	}
	if ((sc & SE_SCOPE_USERS) &&
	    !se_enf__scope_has(gen, idx, SE_SCOPE_WHAT_UID, p->uid, 0) &&
	    !se_enf__scope_has(gen, idx, SE_SCOPE_WHAT_UID, p->euid, 0))
		return false;
	if ((sc & SE_SCOPE_CGROUPS) && !se_enf__scope_has(gen, idx, SE_SCOPE_WHAT_CGROUP, p->cgroup_id, 0))
		return false;
	if (sc & SE_SCOPE_PARENTS) {
		struct inode *pinode = BPF_CORE_READ(task, real_parent, mm, exe_file, f_inode);
		if (!pinode)
			return false;
		__u64 pino = BPF_CORE_READ(pinode, i_ino);
		if (!se_enf__scope_has(gen, idx, SE_SCOPE_WHAT_PARENT, pino, se_enf__dev(pinode)))
			return false;
	}
	return true;
}

/*
 * Pick the policy of a matched entry that applies: the first enforcing policy
 * in scope, else the first auditing one. Returns the policy idx or -1.
 */
static __always_inline int se_enf__choose(__u32 gen, const struct se_enf_match_val *m,
					  const struct se_proc *p, struct task_struct *task,
					  __u32 *enforce)
{
	int audit_idx = -1;
	__u32 n = m->n;
	for (__u32 i = 0; i < SE_ENF_MATCH_MAX; i++) {
		if (i >= n)
			break;
		struct se_enf_policy_key pk = { .gen = gen, .idx = m->idx[i] };
		struct se_enf_policy *pol = bpf_map_lookup_elem(&se_enf_policies, &pk);
		if (!pol || !se_enf__in_scope(gen, pk.idx, pol, p, task))
			continue;
		if (pol->enforce) {
			*enforce = 1;
			return pk.idx;
		}
		if (audit_idx < 0)
			audit_idx = pk.idx;
	}
	*enforce = 0;
	return audit_idx;
}

/* Send the enforcement event built at the start of the heap buffer. */
static __always_inline void se_enf__emit(struct se_heap *heap, __u32 size)
{
	size = (size + 7) & ~7u;
	if (size > SE_EVENT_MAX)
		size = SE_EVENT_MAX;
	if (size < sizeof(struct se_enforce))
		size = sizeof(struct se_enforce);
	((struct se_hdr *)heap->buf)->size = size;
	/* wake the reader: enforcement events are rare and an alert should not wait */
	if (bpf_ringbuf_output(&se_enf_ring, heap->buf, size, 0))
		se_enf__count(SE_ENF_STAT_DROPPED);
}

#endif /* SE_ENFORCE_H */
