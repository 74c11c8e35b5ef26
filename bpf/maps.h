/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Every map and tunable of SentinelEdge, declared once.
 *
 * Each sensor object (.bpf.c) includes this header; the definitions are
 * __weak so the BPF static linker (bpftool gen object) merges them into one
 * instance in the combined object build/sentinel.bpf.o.
 */
#ifndef SE_MAPS_H
#define SE_MAPS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "shared/events.h"

/* Settings, written by the loader into .rodata before load (never by recompiling). */
const volatile struct se_config se_cfg __weak = {};

/*
 * One ring buffer per sensor: a flood of file opens can fill se_ring_file
 * without costing a single exec, privilege or injection event.
 * Sizes are set by the loader (bpf_map__set_max_entries) from the config.
 */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} se_ring_process SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 23);
} se_ring_file SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} se_ring_net SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 21);
} se_ring_priv SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 21);
} se_ring_mem SEC(".maps") __weak;

/* Per-sensor counters (enum se_stat), index sensor * SE_STAT_MAX + stat. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SE_SENSOR_MAX * SE_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} se_stats SEC(".maps") __weak;

/*
 * Scratch space to build one event: events are larger than the 512-byte BPF
 * stack. The slack after SE_EVENT_MAX lets a bounded read start at any masked
 * offset below SE_EVENT_MAX.
 */
#define SE_HEAP_SIZE (SE_EVENT_MAX + SE_PATH_MAX + 512)

/*
 * State of one path walk. It lives in map memory, not on the stack: the
 * verifier tracks stack values exactly, so a counter there makes every
 * bpf_loop iteration a new state and the walk exceeds the instruction budget.
 */
struct se_walk {
	__u64 dentry;                 /* struct dentry * */
	__u64 mnt;                    /* struct mount * */
	__u32 n;                      /* components collected into names */
	__u32 trunc;
	__u32 pos;                    /* output position */
	__u32 start;
};

struct se_heap {
	char buf[SE_HEAP_SIZE];
	__u64 names[SE_PATH_DEPTH];   /* dentry name pointers of one path walk */
	struct se_walk walk;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct se_heap);
} se_heap_map SEC(".maps") __weak;

/* Syscall arguments saved at sys_enter_*, taken back at sys_exit_* (keyed by tid). */
struct se_inflight {
	__u64 args[6];
	__u64 ts_ns;
	__u32 nr;                     /* syscall number */
	__u32 aux;                    /* sensor-specific; SE_INFLIGHT_EXEC marks an execve in flight */
	__u64 aux64[4];               /* sensor-specific (old creds, caps, ...) */
};

#define SE_INFLIGHT_EXEC 0x45584543u   /* "EXEC" */

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct se_inflight);
} se_inflight_map SEC(".maps") __weak;

/* Open dedup: last time a process opened the same inode with the same flags. */
struct se_dedup_key {
	__u32 tgid;
	__u32 flags;
	__u64 ino;
	__u32 dev;
	__u32 gen;       /* i_generation: a file deleted and created again may get the same inode number */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct se_dedup_key);
	__type(value, __u64);
} se_dedup_map SEC(".maps") __weak;

/*
 * Syscall ids watched by the raw_tp/sys_enter fallback (tracepoint missing on
 * this kernel). An array indexed by syscall number: the verifier inlines the
 * lookup, which matters because the fallback runs on every syscall.
 * Value 0 = not watched, else SE_FALLBACK_VALUE(type, op).
 */
#define SE_SYSCALL_MAX 1024
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SE_SYSCALL_MAX);
	__type(key, __u32);          /* syscall number */
	__type(value, __u32);
} se_fallback_syscalls SEC(".maps") __weak;

/* Watched syscalls between enter and exit: the exit fallback returns at once while 0. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __s64);
} se_fallback_pending SEC(".maps") __weak;

/* Connected sockets by struct sock address: owner process for async completion. */
struct se_sock_owner {
	__u32 pid;
	__u32 tid;
	__u64 start_ns;
	__u64 cookie;
	__s32 fd;
	__u32 _pad;
	/* added by the net sensor: the owner's full task context at connect /
	 * accept / listen time, copied into se_net.proc of state events that run
	 * in softirq context on behalf of another task */
	struct se_proc proc;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);          /* struct sock * */
	__type(value, struct se_sock_owner);
} se_sock_owner_map SEC(".maps") __weak;

/* connected datagram sockets already reported by SE_NET_DGRAM (socket cookie -> 1) */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u8);
} se_dgram_seen SEC(".maps") __weak;

/*
 * Anchor: makes every wire struct and enum part of the object's BTF even when
 * no program uses it, so user space can build its decoder from the object.
 */
struct se_wire {
	struct se_exec exec;
	struct se_fork fork;
	struct se_exit exit;
	struct se_comm comm;
	struct se_file file;
	struct se_net net;
	struct se_cred cred;
	struct se_ns ns;
	struct se_mem mem;
	struct se_ptrace ptrace;
	struct se_memfd memfd;
	struct se_module module;
	struct se_bpf bpf;
	struct se_io_uring io_uring;
	struct se_config config;
	enum se_event_type event_type;
	enum se_sensor sensor;
	enum se_stat stat;
	enum se_exec_flags exec_flags;
	enum se_fd_kind fd_kind;
	enum se_file_op file_op;
	enum se_file_flags file_flags;
	enum se_net_op net_op;
	enum se_cred_op cred_op;
	enum se_ns_op ns_op;
	enum se_mem_op mem_op;
	enum se_ptrace_op ptrace_op;
	enum se_module_op module_op;
	enum se_io_uring_op io_uring_op;
};
struct se_wire se_wire_anchor __weak;

/*
 * io_uring submission rate limit (mem sensor): one entry per
 * (tgid, ring ctx, opcode); LRU so a process creating many rings cannot grow it.
 */
struct se_io_uring_key {
	__u64 ring_ctx;
	__u32 tgid;
	__u32 opcode;
};

struct se_io_uring_rate {
	__u64 window_start_ns;       /* when the last reported submission was seen */
	__u32 suppressed;            /* submissions not reported since then */
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct se_io_uring_key);
	__type(value, struct se_io_uring_rate);
} se_io_uring_rate_map SEC(".maps") __weak;

/*
 * Per-CPU scratch for the state of bpf_loop() callbacks (path walks). State
 * read back from map memory is an unknown scalar to the verifier, so a loop
 * body is verified once instead of once per distinct iteration outcome.
 * Added by the file sensor (bpf/sensors/file/file.h: struct file_walk).
 */
struct se_scratch {
	__u64 u64[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct se_scratch);
} se_scratch_map SEC(".maps") __weak;

/*
 * Per-CPU direct-mapped cache in front of se_dedup_map (file sensor): a
 * repeated open found here skips the LRU hash lookup. A slot holds the same
 * (key, last reported time) the hash holds, so a hit means the same thing.
 */
#define SE_DEDUP_CACHE_SLOTS 256
struct se_dedup_slot {
	struct se_dedup_key key;
	__u64 ts;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SE_DEDUP_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct se_dedup_slot);
} se_dedup_cache SEC(".maps") __weak;

#endif /* SE_MAPS_H */
