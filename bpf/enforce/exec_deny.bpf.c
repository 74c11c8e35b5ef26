// SPDX-License-Identifier: GPL-2.0
/*
 * Exec deny: SIGKILL at sched_process_exec, before the new image runs one
 * instruction (the signal is delivered on the way back to user space).
 *
 * Matches, in this order, against the active policy generation:
 *   1. the identity of the executed file: (superblock dev, inode) and the
 *      inode generation when the entry has one, so a symlink, a hard link, a
 *      relative path or a reused inode number cannot fool it;
 *   2. the resolved absolute path of the executed file in the prefix trie
 *      (directory prefixes like "/tmp/" cover files that do not exist yet;
 *      whole paths are stored with their NUL so "/usr/bin/nc" != ".../ncat");
 *   3. the path given to execve: for a #! script that is the script (the
 *      executed file is then the interpreter); a relative one is joined with
 *      the cwd (a leading "./" dropped; ".." components are not resolved).
 * A script by identity or by hash is decided by the fanotify backend in user
 * space (FAN_OPEN_EXEC_PERM sees the script).
 */
#include "enforce/enforce.h"

static __always_inline struct se_enf_match_val *se_enf__lookup_path(struct se_heap *heap, __u32 gen,
								    __u32 off, __u32 len)
{
	__u32 zero = 0;
	struct se_enf_path_key *k = bpf_map_lookup_elem(&se_enf_scratch, &zero);
	if (!k)
		return NULL;
	if (len >= SE_ENF_PATH_LPM)
		len = SE_ENF_PATH_LPM - 1;          /* compare the first 247 bytes (longer whole paths are refused) */
	bpf_probe_read_kernel(k->path, SE_ENF_PATH_LPM, &heap->buf[off & SE_MASK]);
	if (len < SE_ENF_PATH_LPM)
		k->path[len] = 0;                   /* the NUL lets whole-path entries match exactly */
	k->gen = gen;
	k->prefixlen = 32 + 8 * (len + 1);
	return bpf_map_lookup_elem(&se_enf_exec_path, k);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(enforce_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct se_enf_state *st = se_enf__state();
	if (!st || !st->active_gen)
		return 0;
	__u32 gen = st->active_gen;

	struct file *file = BPF_CORE_READ(bprm, file);
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	__u32 dev = se_enf__dev(inode);
	__u64 ino = BPF_CORE_READ(inode, i_ino);
	__u32 igen = BPF_CORE_READ(inode, i_generation);

	__u32 match = 0;
	struct se_enf_ident_key ik = { .gen = gen, .dev = dev, .ino = ino };
	struct se_enf_match_val *m = bpf_map_lookup_elem(&se_enf_exec_ident, &ik);
	if (m && (!m->has_igen || m->igen == igen))
		match = SE_ENF_BY_IDENTITY;
	else
		m = NULL;

	struct se_heap *heap = se_heap__get();
	if (!heap)
		return 0;
	struct se_enforce *ev = se_event__init(heap, SE_EV_ENFORCE, sizeof(struct se_enforce));
	if (!ev)
		return 0;
	__u32 pos = sizeof(struct se_enforce);
	se_path__append(heap, &pos, &ev->path, __builtin_preserve_access_index(&file->f_path));
	se_event__append_str(heap, &pos, &ev->filename, BPF_CORE_READ(bprm, filename), SE_PATH_MAX, 0);

	if (!m && ev->path.len) {
		m = se_enf__lookup_path(heap, gen, ev->path.off, ev->path.len);
		if (m)
			match = SE_ENF_BY_PREFIX;
	}
	if (!m && ev->filename.len && heap->buf[ev->filename.off & SE_MASK] == '/') {
		m = se_enf__lookup_path(heap, gen, ev->filename.off, ev->filename.len);
		if (m)
			match = SE_ENF_BY_FILENAME;
	} else if (!m && ev->filename.len) {
		/* a relative path (./x.sh): the cwd joined with it, a leading "./" dropped */
		struct se_str cwd = {};
		__u32 p0 = pos;
		if (!se_path__append_cwd(heap, &pos, &cwd) && cwd.len && p0 < SE_EVENT_MAX - SE_PATH_MAX) {
			__u32 end = cwd.off + cwd.len;
			__u32 skip = (heap->buf[ev->filename.off & SE_MASK] == '.' &&
				      heap->buf[(ev->filename.off + 1) & SE_MASK] == '/') ? 2 : 0;
			if (end < SE_EVENT_MAX - SE_ENF_PATH_LPM - 2) {
				heap->buf[end & SE_MASK] = '/';
				long n = bpf_probe_read_kernel_str(&heap->buf[(end + 1) & SE_MASK], SE_ENF_PATH_LPM,
								   &heap->buf[(ev->filename.off + skip) & SE_MASK]);
				if (n > 1) {
					m = se_enf__lookup_path(heap, gen, cwd.off, cwd.len + n);
					if (m)
						match = SE_ENF_BY_FILENAME;
				}
			}
		}
		pos = p0;  /* the joined path is scratch, not part of the event */
	}
	if (!m)
		return 0;

	__u32 enforce = 0;
	int idx = se_enf__choose(gen, m, &ev->proc, p, &enforce);
	if (idx < 0)
		return 0;
	se_enf__count(SE_ENF_STAT_HITS);

	ev->kind = SE_ENF_EXEC;
	ev->policy_idx = idx;
	ev->gen = gen;
	ev->match = match;
	ev->dev = dev;
	ev->ino = ino;
	ev->igen = igen;
	if (enforce && st->armed) {
		if (se_enf__protected_task(p, st) || se_enf__safe_exe(dev, ino)) {
			se_enf__count(SE_ENF_STAT_SPARED);
			ev->action = SE_ENF_ACT_AUDIT;
			ev->result = -1;               /* EPERM: not allowed to act on this task */
		} else {
			ev->action = SE_ENF_ACT_KILL;
			ev->result = bpf_send_signal(SE_SIGKILL);
			se_enf__count(ev->result ? SE_ENF_STAT_KILL_FAIL : SE_ENF_STAT_KILLS);
		}
	} else {
		ev->action = SE_ENF_ACT_AUDIT;
		se_enf__count(SE_ENF_STAT_AUDITS);
	}
	se_enf__emit(heap, pos);
	return 0;
}

SE_LICENSE;
