/*
 * test-vmm-slots — a CUDA VMM item's descriptor slot is registered (VS_CTL_FD_ADD on the socket)
 * right before the entry naming it is published on the ring, which is what libvlmclient does for
 * a cuMemCreate tensor. vlmd must see the registration when it checks the entry, even though the
 * socket and the ring are two channels that its loop reads at different times (a spinning loop
 * drains rings first). The test needs no GPU: the echo sink only checks the slot and releases the
 * item, so a memfd stands in for the exported allocation. 2000 requests alternate between two
 * slots that are deleted and registered again each time (the reuse a long-running client does);
 * every one must finish, none may be refused with -EBADF. Raw protocol (client/conn.h).
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ct.h"

int main(int argc, char **argv)
{
	struct th_daemon d;
	struct vc_conn *c = NULL;
	struct vs_mm_item *it;
	uint64_t toff, ioff;
	uint32_t *tok;
	int finished = 0, refused = 0, e = 0;

	signal(SIGPIPE, SIG_IGN);
	th_set_args(argc, argv);
	if (th_start(&d, NULL) || th_connect(&d, "test-vmm-slots", &c)) {
		fprintf(stderr, "vlmd did not start\n");
		return 1;
	}
	tok = vc_conn_arena_alloc(c, 4, &toff);
	it = vc_conn_arena_alloc(c, sizeof(*it), &ioff);
	*tok = 1;
	for (int i = 0; i < 2000 && !e; i++) {
		struct vs_sqe s = { .opcode = VS_OP_ECHO, .user_data = (uint64_t)i + 1,
				    .tokens_off = toff, .n_tokens = 1, .n_items = 1,
				    .items_off = ioff };
		unsigned slot = (unsigned)i % 2;
		int fd = memfd_create("vmm-stand-in", MFD_CLOEXEC), done = 0;

		memset(it, 0, sizeof(*it));
		it->placeholder_id = 250;
		it->dtype = VS_DTYPE_F32;
		it->device = VS_DEV_CUDA_VMM;
		it->rows = 1;
		it->cols = 4;
		it->row_stride = 16;
		it->data_bytes = 16;
		it->alloc_bytes = 4096;
		it->vmm_fd_slot = slot;
		e = vc_conn_fd_add(c, fd, slot); /* registered, then published at once */
		close(fd);
		if (!e)
			e = vc_conn_submit(c, &s);
		while (!e && !done) {
			struct vs_cqe q[8];
			uint32_t n;

			e = vc_conn_wait(c, 5000000000ll);
			n = vc_conn_reap(c, q, 8);
			for (uint32_t k = 0; k < n; k++) {
				if (q[k].type == VS_CQE_ERROR) {
					refused++;
					done = 1;
				} else if (q[k].type == VS_CQE_FINISH) {
					finished++;
					done = 1;
				}
			}
		}
		if (!e)
			e = vc_conn_fd_del(c, slot); /* after the release, as the library does */
	}
	CHECK(e == 0, "transport error %d", e);
	CHECK(finished == 2000 && refused == 0, "%d finished, %d refused (slot not seen)", finished,
	      refused);
	vc_conn_free(c);
	CHECK(th_stop(&d) == 0, "vlmd exit");
	return ct_failures ? 1 : 0;
}
