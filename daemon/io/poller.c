/*
 * daemon/io/poller.c — io_uring (multishot poll) and epoll backends of daemon/io/poller.h.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "config.h"
#include "daemon/io/poller.h"

#if VLM_HAVE_LIBURING
#include <liburing.h>
#endif

#define POLL_MASK (POLLIN | POLLRDHUP | POLLHUP | POLLERR)
#define TOKEN_INTERNAL UINT64_MAX /* completions of our own remove requests */

struct watch {
	int fd;
	uint64_t token;
};

struct vd_poller {
	enum vd_backend kind;
	struct watch *w;         /* io_uring: live watches, to re-arm a multishot poll that ended */
	unsigned n_w, cap_w;
	int epfd;
	unsigned pending;        /* io_uring: SQEs prepared but not submitted */
	int defer;               /* io_uring: IORING_SETUP_DEFER_TASKRUN */
#if VLM_HAVE_LIBURING
	struct io_uring ring;
#endif
};

#if VLM_HAVE_LIBURING
static struct io_uring_sqe *get_sqe(struct vd_poller *p)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&p->ring);

	if (!sqe) { /* SQ full: flush and retry once */
		io_uring_submit(&p->ring);
		p->pending = 0;
		sqe = io_uring_get_sqe(&p->ring);
	}
	if (sqe)
		p->pending++;
	return sqe;
}

static void rearm(struct vd_poller *p, uint64_t token)
{
	for (unsigned i = 0; i < p->n_w; i++) {
		if (p->w[i].token == token) {
			struct io_uring_sqe *sqe = get_sqe(p);

			if (sqe) {
				io_uring_prep_poll_multishot(sqe, p->w[i].fd, POLL_MASK);
				io_uring_sqe_set_data64(sqe, token);
			}
			return;
		}
	}
}

/* Does this ring deliver multishot polls (kernel >= 5.13, not filtered by seccomp)? Arm one on an
 * eventfd, ring it twice, expect two completions that both say "more to come", then remove it. */
static int uring_probe(struct vd_poller *p)
{
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts = { .tv_sec = 1 };
	uint64_t one = 1;
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), good = 0, r = -ENOSYS;
	struct io_uring_sqe *sqe;

	if (efd < 0)
		return -errno;
	sqe = io_uring_get_sqe(&p->ring);
	io_uring_prep_poll_multishot(sqe, efd, POLLIN);
	io_uring_sqe_set_data64(sqe, 1);
	if (io_uring_submit(&p->ring) != 1)
		goto out;
	for (int i = 0; i < 2; i++) {
		if (write(efd, &one, sizeof(one)) != sizeof(one))
			goto out;
		if (io_uring_wait_cqe_timeout(&p->ring, &cqe, &ts) < 0)
			goto out;
		if (cqe->user_data == 1 && cqe->res > 0 && (cqe->flags & IORING_CQE_F_MORE))
			good++;
		io_uring_cqe_seen(&p->ring, cqe);
	}
	if (good == 2)
		r = 0;
out:
	sqe = io_uring_get_sqe(&p->ring);
	if (sqe) {
		io_uring_prep_poll_remove(sqe, 1);
		io_uring_sqe_set_data64(sqe, TOKEN_INTERNAL);
		io_uring_submit(&p->ring);
	}
	close(efd);
	/* drop whatever the probe left in the completion queue */
	ts.tv_sec = 0;
	ts.tv_nsec = 1000000;
	while (io_uring_peek_cqe(&p->ring, &cqe) == 0 ||
	       io_uring_wait_cqe_timeout(&p->ring, &cqe, &ts) == 0)
		io_uring_cqe_seen(&p->ring, cqe);
	return r;
}

static int uring_init(struct vd_poller *p, unsigned entries)
{
	struct io_uring_params prm;
	int r;

	/* DEFER_TASKRUN: completions are produced in our own io_uring_enter, not by interrupting
	 * whatever the loop is doing (cheaper wake-ups); the spinning loop then fetches them with
	 * io_uring_get_events(). */
	memset(&prm, 0, sizeof(prm));
	prm.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
	prm.cq_entries = entries * 4;
	r = io_uring_queue_init_params(entries, &p->ring, &prm);
	p->defer = r == 0;
	if (r == -EINVAL) {
		memset(&prm, 0, sizeof(prm));
		prm.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_CQSIZE;
		prm.cq_entries = entries * 4;
		r = io_uring_queue_init_params(entries, &p->ring, &prm);
	}
	if (r == -EINVAL) { /* kernels before 6.0 lack SINGLE_ISSUER */
		memset(&prm, 0, sizeof(prm));
		prm.flags = IORING_SETUP_CQSIZE;
		prm.cq_entries = entries * 4;
		r = io_uring_queue_init_params(entries, &p->ring, &prm);
	}
	return r;
}
#endif

int vd_poller_new(enum vd_backend want, unsigned entries, struct vd_poller **out)
{
	struct vd_poller *p = calloc(1, sizeof(*p));
	int r = -ENOSYS;

	if (!p)
		return -ENOMEM;
	p->epfd = -1;
	if (entries < 64)
		entries = 64;
#if VLM_HAVE_LIBURING
	if (want == VD_BACKEND_AUTO || want == VD_BACKEND_URING) {
		r = uring_init(p, entries);
		if (r == 0 && (r = uring_probe(p)) != 0)
			io_uring_queue_exit(&p->ring);
		if (r == 0) {
			p->kind = VD_BACKEND_URING;
			*out = p;
			return 0;
		}
		if (want == VD_BACKEND_URING) {
			free(p);
			return r;
		}
	}
#else
	if (want == VD_BACKEND_URING) {
		free(p);
		return -ENOSYS;
	}
#endif
	p->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (p->epfd < 0) {
		r = -errno;
		free(p);
		return r;
	}
	p->kind = VD_BACKEND_EPOLL;
	*out = p;
	return 0;
}

void vd_poller_free(struct vd_poller *p)
{
	if (!p)
		return;
#if VLM_HAVE_LIBURING
	if (p->kind == VD_BACKEND_URING)
		io_uring_queue_exit(&p->ring);
#endif
	if (p->epfd >= 0)
		close(p->epfd);
	free(p->w);
	free(p);
}

const char *vd_poller_name(const struct vd_poller *p)
{
	return p->kind == VD_BACKEND_URING ? "io_uring" : "epoll";
}

int vd_poller_add(struct vd_poller *p, int fd, uint64_t token)
{
#if VLM_HAVE_LIBURING
	if (p->kind == VD_BACKEND_URING) {
		struct io_uring_sqe *sqe = get_sqe(p);

		if (!sqe)
			return -EBUSY;
		if (p->n_w == p->cap_w) {
			unsigned cap = p->cap_w ? 2 * p->cap_w : 64;
			struct watch *nw = realloc(p->w, cap * sizeof(*nw));

			if (!nw)
				return -ENOMEM;
			p->w = nw;
			p->cap_w = cap;
		}
		p->w[p->n_w].fd = fd;
		p->w[p->n_w].token = token;
		p->n_w++;
		io_uring_prep_poll_multishot(sqe, fd, POLL_MASK);
		io_uring_sqe_set_data64(sqe, token);
		return 0;
	}
#endif
	/* edge-triggered: every eventfd write is a new edge, so doorbells need not be read */
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.u64 = token };

	return epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int vd_poller_del(struct vd_poller *p, int fd, uint64_t token)
{
#if VLM_HAVE_LIBURING
	if (p->kind == VD_BACKEND_URING) {
		struct io_uring_sqe *sqe = get_sqe(p);

		if (!sqe)
			return -EBUSY;
		for (unsigned i = 0; i < p->n_w; i++) {
			if (p->w[i].token == token) {
				p->w[i] = p->w[--p->n_w];
				break;
			}
		}
		io_uring_prep_poll_remove(sqe, token);
		io_uring_sqe_set_data64(sqe, TOKEN_INTERNAL);
		/* submit now: the caller closes fd next, and the poll must go with it */
		io_uring_submit(&p->ring);
		p->pending = 0;
		return 0;
	}
#endif
	return epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, NULL) < 0 ? -errno : 0;
}

int vd_poller_wait(struct vd_poller *p, uint64_t *tokens, int max, int timeout_ms)
{
#if VLM_HAVE_LIBURING
	if (p->kind == VD_BACKEND_URING) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		int n = 0, r;

		if (p->pending || timeout_ms != 0 || p->defer) {
			if (timeout_ms == 0) {
				r = p->pending ? io_uring_submit(&p->ring) : 0;
				if (r >= 0 && p->defer)
					r = io_uring_get_events(&p->ring);
			} else if (timeout_ms < 0) {
				r = io_uring_submit_and_wait(&p->ring, 1);
			} else {
				struct __kernel_timespec ts = {
					.tv_sec = timeout_ms / 1000,
					.tv_nsec = (long long)(timeout_ms % 1000) * 1000000,
				};
				r = io_uring_submit_and_wait_timeout(&p->ring, &cqe, 1, &ts, NULL);
			}
			p->pending = 0;
			if (r < 0 && r != -ETIME && r != -EINTR && r != -EBUSY)
				return r;
		}
		io_uring_for_each_cqe(&p->ring, head, cqe) {
			if (n == max)
				break;
			seen++;
			if (cqe->user_data == TOKEN_INTERNAL || cqe->res == -ECANCELED)
				continue;
			if (!(cqe->flags & IORING_CQE_F_MORE))
				rearm(p, cqe->user_data);
			if (cqe->res > 0)
				tokens[n++] = cqe->user_data;
		}
		io_uring_cq_advance(&p->ring, seen);
		return n;
	}
#endif
	struct epoll_event evs[64];
	int r;

	if (max > 64)
		max = 64;
	r = epoll_wait(p->epfd, evs, max, timeout_ms);
	if (r < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < r; i++)
		tokens[i] = evs[i].data.u64;
	return r;
}
