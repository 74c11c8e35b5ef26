/*
 * Triggers for the priv sensor's kernel tests (run as root). Every value a
 * test must compare is printed as key=value on stdout.
 *   setuid        setgid(1000) then setresuid(1000, 1000, 1000)
 *   capset        drop CAP_NET_RAW from the effective set
 *   ns            unshare(CLONE_NEWUTS), then setns back to the original
 *   mount DIR     mount a tmpfs on DIR, then umount2(DIR, 0)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static unsigned long ns_ino(const char *path)
{
	struct stat st;
	return stat(path, &st) ? 0 : (unsigned long)st.st_ino;
}

static int do_setuid(void)
{
	int rg = setgid(1000);
	int ru = setresuid(1000, 1000, 1000);
	printf("pid=%d\nsetgid_ret=%d\nsetresuid_ret=%d\n", getpid(), rg, ru);
	return rg || ru;
}

static int do_capset(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &hdr, data))
		return perror("capget"), 1;
	unsigned long long old_eff = data[0].effective | ((unsigned long long)data[1].effective << 32);
	unsigned long long old_prm = data[0].permitted | ((unsigned long long)data[1].permitted << 32);
	unsigned long long old_inh = data[0].inheritable | ((unsigned long long)data[1].inheritable << 32);
	data[0].effective &= ~(1u << CAP_NET_RAW);
	int r = syscall(SYS_capset, &hdr, data);
	memset(data, 0, sizeof(data));
	syscall(SYS_capget, &hdr, data);
	unsigned long long new_eff = data[0].effective | ((unsigned long long)data[1].effective << 32);
	printf("pid=%d\nret=%d\nversion=%u\nold_eff=%llu\nold_prm=%llu\nold_inh=%llu\nnew_eff=%llu\n",
	       getpid(), r, _LINUX_CAPABILITY_VERSION_3, old_eff, old_prm, old_inh, new_eff);
	return r != 0;
}

static int do_ns(void)
{
	unsigned long uts0 = ns_ino("/proc/self/ns/uts");
	int fd = open("/proc/self/ns/uts", O_RDONLY);
	if (fd < 0)
		return perror("open ns"), 1;
	int ru = unshare(CLONE_NEWUTS);
	unsigned long uts1 = ns_ino("/proc/self/ns/uts");
	int rs = setns(fd, CLONE_NEWUTS);
	unsigned long uts2 = ns_ino("/proc/self/ns/uts");
	printf("pid=%d\nfd=%d\nunshare_ret=%d\nsetns_ret=%d\nuts0=%lu\nuts1=%lu\nuts2=%lu\nmnt=%lu\nnet=%lu\n",
	       getpid(), fd, ru, rs, uts0, uts1, uts2, ns_ino("/proc/self/ns/mnt"), ns_ino("/proc/self/ns/net"));
	return ru || rs;
}

static int do_mount(const char *dir)
{
	unsigned long flags = MS_NOSUID | MS_NODEV;
	int rm = mount("se_test_tmpfs", dir, "tmpfs", flags, "size=1m");
	int ru = rm == 0 ? umount2(dir, 0) : -1;
	printf("pid=%d\nmount_ret=%d\numount_ret=%d\nflags=%lu\n", getpid(), rm, ru, flags);
	return rm || ru;
}

/*
 * A bind mount the way util-linux >= 2.39 makes it: open_tree(OPEN_TREE_CLONE)
 * then move_mount(MOVE_MOUNT_F_EMPTY_PATH), inside a private mount namespace
 * of this process only (it goes away with the process: nothing to clean up).
 */
static int do_bind_new_api(const char *src, const char *dst)
{
	int ru = unshare(CLONE_NEWNS);
	int rp = ru == 0 ? mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) : -1;
	long fd = rp == 0 ? syscall(SYS_open_tree, AT_FDCWD, src, 1 /* OPEN_TREE_CLONE */ | O_CLOEXEC) : -1;
	long rm = fd >= 0 ? syscall(SYS_move_mount, (int)fd, "", AT_FDCWD, dst, 4 /* MOVE_MOUNT_F_EMPTY_PATH */) : -1;
	struct stat a, b;
	int same = rm == 0 && stat(src, &a) == 0 && stat(dst, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
	printf("pid=%d\nunshare_ret=%d\ntree_fd=%ld\nmove_ret=%ld\nbound=%d\n", getpid(), ru, fd, rm, same);
	return !(ru == 0 && rp == 0 && fd >= 0 && rm == 0 && same);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s setuid|capset|ns|mount DIR|bind_new_api SRC DST\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(argv[1], "setuid")) return do_setuid();
	if (!strcmp(argv[1], "capset")) return do_capset();
	if (!strcmp(argv[1], "ns")) return do_ns();
	if (!strcmp(argv[1], "mount") && argc > 2) return do_mount(argv[2]);
	if (!strcmp(argv[1], "bind_new_api") && argc > 3) return do_bind_new_api(argv[2], argv[3]);
	fprintf(stderr, "unknown subcommand %s\n", argv[1]);
	return 2;
}
