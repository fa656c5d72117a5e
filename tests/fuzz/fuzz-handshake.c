/*
 * fuzz-handshake — libFuzzer target for the hello check (daemon/io/handshake.c vd_hello_check),
 * what vlmd reads from a connection before it knows anything of the peer, and for the layout the
 * daemon then computes from the hello's sizes (shm/wire.c vs_layout_compute), which the client
 * side must accept (vs_layout_check). Input: the bytes received (any length).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/io/handshake.h"
#include "shm/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vs_hello h;
	struct vs_layout lay;
	uint8_t *buf = malloc(size ? size : 1);
	int v;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	memset(&h, 0, sizeof(h));
	v = vd_hello_check(buf, size, &h);
	if (v > 0) {
		if (size != sizeof(h) || v < (int)VS_PROTO_MIN || v > (int)VS_PROTO_MAX ||
		    (h.flags & ~VS_HELLO_ADMIN))
			abort();
		/* what the loop does next with the client's sizes (clamped like server.c) */
		if (vs_layout_compute(&lay, (uint32_t)v, h.sq_entries, h.cq_entries,
				      h.arena_bytes > (1ull << 30) ? 1ull << 30 : h.arena_bytes, 100) == 0 &&
		    vs_layout_check(&lay, lay.dseg_bytes, lay.cseg_bytes) != 0)
			abort();
	} else if (v != -EPROTO && v != -EPROTONOSUPPORT) {
		abort();
	}
	free(buf);
	return 0;
}
