/*
 * Triggers for the kernel and container rule tests of the default set
 * (rules-b). Run as root; every value a test needs is printed as key=value.
 *   bpf_load          BPF_PROG_LOAD of a two-instruction socket filter, then close it
 *   setns PID TYPE    join /proc/PID/ns/TYPE (net, uts, ...) with setns()
 *   init_module       init_module() of a 64-byte buffer that is no module (ENOSYS or ENOEXEC)
 *   finit_module FILE finit_module() of FILE (an empty file: never a valid module)
 *   delete_module     delete_module("se_rules_b_none", O_NONBLOCK) (no such module)
 * A syscall's result is printed as ret=<value> and errno=<errno> (0 on success).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int report(long ret)
{
	printf("pid=%d\nret=%ld\nerrno=%d\n", getpid(), ret, ret < 0 ? errno : 0);
	return 0;
}

static int do_bpf_load(void)
{
	struct bpf_insn insns[2];
	memset(insns, 0, sizeof(insns));
	insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K;  /* r0 = 0 */
	insns[0].dst_reg = BPF_REG_0;
	insns[1].code = BPF_JMP | BPF_EXIT;
	char license[] = "GPL";
	union bpf_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
	attr.insns = (unsigned long)insns;
	attr.insn_cnt = 2;
	attr.license = (unsigned long)license;
	strncpy(attr.prog_name, "se_rules_b", sizeof(attr.prog_name) - 1);
	long fd = syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof(attr));
	report(fd);
	if (fd >= 0)
		close((int)fd);
	return fd < 0;
}

static int do_setns(const char *pid, const char *type)
{
	char path[128];
	snprintf(path, sizeof(path), "/proc/%s/ns/%s", pid, type);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return perror(path), 1;
	long r = setns(fd, 0);
	report(r);
	close(fd);
	return r != 0;
}

static int do_init_module(void)
{
	char image[64];
	memset(image, 0, sizeof(image));
	return report(syscall(SYS_init_module, image, sizeof(image), ""));
}

static int do_finit_module(const char *file)
{
	int fd = open(file, O_RDONLY);
	if (fd < 0)
		return perror(file), 1;
	report(syscall(SYS_finit_module, fd, "", 0));
	close(fd);
	return 0;
}

static int do_delete_module(void)
{
	return report(syscall(SYS_delete_module, "se_rules_b_none", O_NONBLOCK));
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "bpf_load"))
		return do_bpf_load();
	if (argc >= 4 && !strcmp(argv[1], "setns"))
		return do_setns(argv[2], argv[3]);
	if (argc >= 2 && !strcmp(argv[1], "init_module"))
		return do_init_module();
	if (argc >= 3 && !strcmp(argv[1], "finit_module"))
		return do_finit_module(argv[2]);
	if (argc >= 2 && !strcmp(argv[1], "delete_module"))
		return do_delete_module();
	fprintf(stderr, "usage: %s bpf_load | setns PID TYPE | init_module | finit_module FILE | delete_module\n",
		argv[0]);
	return 2;
}
