/*
 * client/hostmem.c — host memory in the connection's shared arena (vlm_host_alloc,
 * vlm_host_free, vlm_host_tensor_new).
 *
 * Why: vlmd can read only what lies in the arena. An application that writes its embeddings
 * straight into arena memory (its vision encoder's output buffer, or a NumPy array over it)
 * saves the one copy every other host tensor costs; the DLPack intake (client/item.c) recognizes
 * such tensors by address. Blocks are tracked here so that vlm_host_free can refuse pointers it
 * never handed out instead of corrupting the allocator.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/api.h"
#include "client/vlmerr.h"
#include "shm/wire.h"
#include "vlm/vlm.h"

int vlm_host_alloc(struct vlm_conn *c, size_t bytes, void **ret)
{
	uint64_t off;
	void *p;
	int e = 0;

	vc_err_clear();
	if (!ret)
		return vc_err(-EINVAL, "vlm_host_alloc: ret is NULL");
	*ret = NULL;
	if (!c || !bytes)
		return vc_err(-EINVAL, "vlm_host_alloc: conn is NULL or bytes is 0");
	vc_lock(c);
	if (c->n_blocks == c->cap_blocks) {
		size_t cap = c->cap_blocks ? 2 * c->cap_blocks : 16;
		struct vc_block *b = realloc(c->blocks, cap * sizeof(*b));

		if (!b) {
			e = vc_err(-ENOMEM, "out of memory");
			goto out;
		}
		c->blocks = b;
		c->cap_blocks = cap;
	}
	p = vc_arena_get(c, bytes, &off, &e);
	if (!p)
		goto out;
	c->blocks[c->n_blocks].off = off;
	c->blocks[c->n_blocks].len = bytes;
	c->n_blocks++;
	*ret = p;
out:
	vc_unlock(c);
	return e;
}

int vlm_host_free(struct vlm_conn *c, void *ptr)
{
	uintptr_t off;
	int e = 0;
	size_t i;

	vc_err_clear();
	if (!ptr)
		return 0;
	if (!c)
		return vc_err(-EINVAL, "vlm_host_free: conn is NULL");
	vc_lock(c);
	if (!c->vc)
		goto out; /* closed: the arena is gone already */
	off = (uintptr_t)ptr - (uintptr_t)c->arena;
	for (i = 0; i < c->n_blocks; i++)
		if (c->blocks[i].off == off && (uintptr_t)ptr >= (uintptr_t)c->arena)
			break;
	if (i == c->n_blocks) {
		e = vc_err(-EINVAL, "vlm_host_free: %p is not a block of this connection", ptr);
		goto out;
	}
	vc_arena_put(c, c->blocks[i].off, c->blocks[i].len);
	c->blocks[i] = c->blocks[--c->n_blocks];
out:
	vc_unlock(c);
	return e;
}

/* The DLPack wrapper of vlm_host_tensor_new: the managed tensor and what its deleter frees. */
struct host_tensor {
	DLManagedTensor m;
	int64_t shape[2];            /* [rows, cols] */
	struct vlm_conn *conn;       /* reference held */
	void *block;
};

static void host_tensor_delete(DLManagedTensor *m)
{
	struct host_tensor *h = m->manager_ctx;

	vlm_host_free(h->conn, h->block);
	vc_unref(h->conn);
	free(h);
}

int vlm_host_tensor_new(struct vlm_conn *c, enum vlm_dtype dtype, uint32_t rows, uint32_t cols,
			DLManagedTensor **ret)
{
	static const DLDataType types[] = {
		[VLM_DTYPE_F32] = { kDLFloat, 32, 1 },
		[VLM_DTYPE_F16] = { kDLFloat, 16, 1 },
		[VLM_DTYPE_BF16] = { kDLBfloat, 16, 1 },
	};
	struct host_tensor *h;
	uint64_t bytes;
	int e;

	vc_err_clear();
	if (!ret)
		return vc_err(-EINVAL, "vlm_host_tensor_new: ret is NULL");
	*ret = NULL;
	if (!c || !rows || !cols || (unsigned)dtype > VLM_DTYPE_BF16)
		return vc_err(-EINVAL, "vlm_host_tensor_new: bad connection, shape or dtype");
	if ((uint64_t)rows * cols > UINT64_MAX / 4)   /* rows, cols < 2^32: the product fits */
		return vc_err(-E2BIG, "tensor too large");
	bytes = (uint64_t)rows * cols * (dtype == VLM_DTYPE_F32 ? 4 : 2);
	if (bytes > SIZE_MAX)
		return vc_err(-E2BIG, "tensor too large");
	h = calloc(1, sizeof(*h));
	if (!h)
		return vc_err(-ENOMEM, "out of memory");
	e = vlm_host_alloc(c, (size_t)bytes, &h->block);
	if (e) {
		free(h);
		return e;
	}
	vc_ref(c);
	h->conn = c;
	h->shape[0] = rows;
	h->shape[1] = cols;
	h->m.dl_tensor.data = h->block;
	h->m.dl_tensor.device.device_type = kDLCPU;
	h->m.dl_tensor.ndim = 2;
	h->m.dl_tensor.dtype = types[dtype];
	h->m.dl_tensor.shape = h->shape;
	h->m.manager_ctx = h;
	h->m.deleter = host_tensor_delete;
	*ret = &h->m;
	return 0;
}
