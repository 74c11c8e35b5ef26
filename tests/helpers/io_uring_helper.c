/*
 * io_uring trigger for the mem sensor's kernel test (link with -luring):
 * one ring, one IORING_OP_NOP with a known user_data, then a burst of NOPs
 * (rate-limited in the kernel), a pause longer than the rate-limit window and
 * one more NOP, whose event carries the number of suppressed submissions.
 * Usage: io_uring_helper BURST PAUSE_MS [sqpoll]
 * With "sqpoll" the ring is IORING_SETUP_SQPOLL: the kernel's iou-sqp thread
 * submits the requests.
 */
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int nop(struct io_uring *ring, unsigned long long user_data)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	struct io_uring_cqe *cqe;
	if (!sqe)
		return -1;
	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data64(sqe, user_data);
	if (io_uring_submit(ring) != 1)
		return -1;
	if (io_uring_wait_cqe(ring, &cqe))
		return -1;
	io_uring_cqe_seen(ring, cqe);
	return 0;
}

int main(int argc, char **argv)
{
	int burst = argc > 1 ? atoi(argv[1]) : 0;
	int pause_ms = argc > 2 ? atoi(argv[2]) : 0;
	int sqpoll = argc > 3 && !strcmp(argv[3], "sqpoll");
	struct io_uring ring;
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	if (sqpoll) {
		p.flags = IORING_SETUP_SQPOLL;
		p.sq_thread_idle = 2000;
	}
	int r = io_uring_queue_init_params(8, &ring, &p);
	if (r < 0) {
		fprintf(stderr, "io_uring_queue_init: %d\n", r);
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("pid=%d\nring_fd=%d\nentries=%u\nflags=%u\n", getpid(), ring.ring_fd, p.sq_entries, ring.flags);
	if (nop(&ring, 0x5e5e0001ULL))
		return 1;
	for (int i = 0; i < burst; i++)
		if (nop(&ring, 0x5e5e1000ULL + i))
			return 1;
	if (pause_ms > 0) {
		usleep(pause_ms * 1000);
		if (nop(&ring, 0x5e5e0002ULL))
			return 1;
	}
	io_uring_queue_exit(&ring);
	printf("done=1\n");
	return 0;
}
