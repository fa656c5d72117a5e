/*
 * client/item.c — placing a request's tensors (client/item.h).
 */
#include <errno.h>
#include <string.h>

#include "client/item.h"
#include "client/vlmerr.h"

/* True when [p, p + len) lies inside the connection's arena. */
static int in_arena(const struct vlm_conn *c, const unsigned char *p, uint64_t len)
{
	uintptr_t a = (uintptr_t)c->arena, q = (uintptr_t)p;

	return c->arena && q >= a && q - a <= c->arena_bytes && len <= c->arena_bytes - (q - a);
}

int vc_item_place(struct vlm_conn *c, struct vc_item *it, struct vc_tensor *t, int vmm_fd,
		  int *copy)
{
	unsigned esz = vs_dtype_size(t->dtype);
	int e = vc_usable(c);

	*copy = 0;
	it->vmm_slot = -1;
	if (e)
		return e;
	if (t->mem == VC_MEM_CUDA) {
		if (vmm_fd >= 0) {
			int slot = -1;

			for (int s = 0; s < VS_MAX_FD_SLOTS; s++)
				if (!(c->vmm_slots & (1ull << s))) {
					slot = s;
					break;
				}
			if (slot < 0)
				return vc_err(-EBUSY, "%d CUDA VMM tensors in flight: no free descriptor "
					      "slot", VS_MAX_FD_SLOTS);
			e = vc_conn_fd_add(c->vc, vmm_fd, (unsigned)slot);
			if (e) {
				if (e == -ECONNRESET)
					vc_conn_lost(c);
				return vc_err(e, "sending the CUDA VMM descriptor failed");
			}
			c->vmm_slots |= 1ull << slot;
			it->vmm_slot = slot;
			it->wire.vmm_fd_slot = (uint32_t)slot;
		}
		it->t = t;
		c->stats.tensors_cuda++;
		c->stats.tensors_in_place++;
		return 0;
	}
	if (in_arena(c, t->data, t->data_bytes) &&
	    (uint64_t)(t->data - c->arena) % esz == 0 && t->row_stride % esz == 0) {
		it->wire.device = VS_DEV_ARENA;
		it->wire.data_off = (uint64_t)(t->data - c->arena);
		it->wire.data_bytes = t->data_bytes;
		it->wire.row_stride = t->row_stride;
		it->t = t;
		c->stats.tensors_in_place++;
		return 0;
	}
	it->copy_len = (uint64_t)t->rows * t->cols * esz;
	if (!vc_arena_get(c, it->copy_len, &it->copy_off, &e)) {
		it->copy_len = 0;
		return e;
	}
	it->wire.device = VS_DEV_ARENA;
	it->wire.data_off = it->copy_off;
	it->wire.data_bytes = it->copy_len;
	it->wire.row_stride = (uint64_t)t->cols * esz;
	c->stats.tensors_copied++;
	c->stats.bytes_copied += it->copy_len;
	*copy = 1;
	return 0;
}

void vc_item_copy(struct vlm_conn *c, const struct vc_item *it, const struct vc_tensor *t)
{
	unsigned char *dst = c->arena + it->copy_off; /* [rows, cols] packed */
	uint64_t row = (uint64_t)t->cols * vs_dtype_size(t->dtype);

	if (t->row_stride == row) {
		memcpy(dst, t->data, row * t->rows);
		return;
	}
	for (uint32_t i = 0; i < t->rows; i++)
		memcpy(dst + i * row, t->data + i * t->row_stride, row);
}

void vc_item_release(struct vlm_conn *c, struct vc_item *it)
{
	if (it->released)
		return;
	it->released = 1;
	vc_defer_release(c, it->t);
	it->t = NULL;
	vc_arena_put(c, it->copy_off, it->copy_len);
	it->copy_len = 0;
	vc_pixmemo_unref(c, it->pix);
	it->pix = NULL;
	if (it->vmm_slot >= 0) {
		if (c->vc && c->state == VC_ALIVE)
			vc_conn_fd_del(c->vc, (unsigned)it->vmm_slot);
		c->vmm_slots &= ~(1ull << it->vmm_slot);
		it->vmm_slot = -1;
	}
}
