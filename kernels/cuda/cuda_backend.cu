/*
 * kernels/cuda/cuda_backend.cu — the CUDA implementation of struct vk_backend_ops.
 *
 * Why this way:
 *  - One compute stream orders every op; a second stream carries host-to-device substitution
 *    copies so they overlap earlier compute (joined with events).
 *  - Step descriptors (token ids, positions, block tables) are serialised once per step into a
 *    compact int32 image, compared with the previous image on the host (a memcmp of a few KB is
 *    far cheaper than an upload per op: a step calls rope/kv_store/attention once per layer) and
 *    uploaded only when they changed, through a pinned ring so the copy is truly asynchronous.
 *  - Host-side validation of every index a kernel will use (tokens < vocab, block ids < pool,
 *    substitution ranges) because an out-of-range access is a sticky error that kills the context
 *    for every request.
 *  - Scratch (GEMM input conversion, attention partials, substitution staging) grows to a high
 *    water mark and is never freed while graphs may point at it (old buffers are retired).
 *  - Decode-step CUDA graphs: capture once per (batch size, block-table capacity); a replay only
 *    refreshes the staged host arguments in the graph's own pinned buffer (see cuda_backend.h).
 *  - Weights: matrices keep their checkpoint dtype on the device (bf16 stays bf16); vectors
 *    (norm weights, biases) are widened to fp32 once at load. fp32 weights use a pure fp32 GEMM
 *    (no TF32). For 16-bit weights the fp32 activations must become 16-bit for the tensor cores:
 *      split (the default): x = hi + lo, both 16-bit, one GEMM over [2n, k] (the weights are
 *        still read once), the halves summed in fp32: the input keeps ~16 significant bits
 *        (error <= 2^-18 |x|), results match the CPU backend's fp32 x bf16 products to
 *        fp32-accumulation accuracy. Free where a step is bandwidth-bound; twice the tensor-core
 *        work for large prefill chunks.
 *      single (opt-in, VLM_CUDA_GEMM=single, or VLM_CUDA_GEMM_SPLIT_MAX=N for steps above N
 *        rows): x rounded once to bf16 (error <= 2^-9 |x| per element, the precision HF / vLLM
 *        run bf16 models at). On the model reference test (emulated backend) the bf16 logits then
 *        reach 0.89e-2 relative error against the 1e-2 bound: too close to be the default.
 *    Steps of <= 8 rows (decode) skip all that: a GEMV kernel multiplies the fp32 rows with the
 *    16-bit weights directly (exact products, fp32 sums, bias fused; VLM_CUDA_GEMV=0 disables).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/ipc.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/quant.h"
#include "kernels/cuda/vision.h"
#include "kernels/cuda/sample.h"

namespace {

enum mode { MODE_EAGER = 0, MODE_CAPTURE = 1, MODE_REPLAY = 2 };

enum op_id {
	OP_META = 1, OP_EMBED, OP_RMSNORM, OP_ADD_RMSNORM, OP_MATMUL, OP_ROPE, OP_KV_STORE,
	OP_ATTENTION, OP_SWIGLU, OP_GET_ROWS, OP_UPLOAD,
};

#define MAX_GRAPHS 64
#define RING_BYTES (4u << 20)

struct dbuf {
	void *p;
	size_t cap;
};

/* Device views of the current step's serialised descriptors. */
struct meta_view {
	const int32_t *tokens;     /* [n_tokens] */
	const int32_t *pos;        /* [n_tokens]: row 0 (t) of the positions */
	const int32_t *row_seq;    /* [n_tokens] */
	const int32_t *row_pos;    /* [n_tokens] */
	const int32_t *row_sub;    /* [n_tokens], -1: no substitution */
	const int32_t *seq_first;  /* [n_seqs] */
	const int32_t *seq_n;      /* [n_seqs] */
	const int32_t *seq_past;   /* [n_seqs] */
	const int32_t *blocks;     /* [n_seqs, max_blocks] */
	int32_t n_tokens, n_seqs, max_blocks, max_n, max_ctx;
};

struct graph {
	int used;
	int valid;
	int32_t n_seqs, blocks_cap;
	cudaGraphExec_t exec;
	cudaEvent_t done;
	char *host;                /* pinned staging of host arguments, cap bytes */
	char *dev;                 /* device mirror, cap bytes */
	size_t cap, off;
	uint64_t *log;             /* op signatures of the capture */
	int n_log, cap_log, pos_log;
};

struct cuda_kv {
	struct vk_kv_shape shape;
	char *base;                /* device: [n_layers][2][pool_bytes] */
	size_t pool_bytes;         /* one K (or V) pool of a layer */
	uint64_t validated_gen;    /* meta generation whose block ids were checked against this */
};

struct ctx {
	struct vk_backend *be;
	int device;
	struct vk_ipc_cache *ipc;  /* clients' tensors (ops->import_tensor); NULL: ipc_err says why */
	char ipc_err[160];
	int sm_count;
	cudaStream_t stream;
	cudaStream_t copy_stream;
	cudaEvent_t ev_compute, ev_copy;
	struct vk_cuda_gemm gemm;

	/* pinned ring for host arguments (eager mode) */
	char *ring_host, *ring_dev;
	size_t ring_cap, ring_off;

	/* step descriptor cache */
	int32_t *meta_build;       /* host, meta_build_cap words */
	size_t meta_build_cap;
	int32_t *meta_last;        /* host copy of the last uploaded image */
	size_t meta_last_words;    /* 0: none valid */
	struct meta_view mv;
	uint64_t meta_gen;

	struct dbuf act16, partial, stage, small, gemm_out;
	int32_t split_max;         /* matmuls of <= split_max rows use the split (hi + lo) input */
	int gemv;                  /* 1: matmuls of <= 8 rows use the fp32 x 16-bit GEMV kernel */

	/* pos rows 1 and 2 for M-RoPE, cached like the descriptors */
	int32_t *pos3_last;
	size_t pos3_words;
	const int32_t *pos3_dev;
	void **retired;
	int n_retired, cap_retired;

	int32_t *ids_host;         /* pinned [ids_cap] */
	int32_t ids_cap;

	int lost;
	int graphs_enabled;
	enum mode mode;
	int graph_failed;
	struct graph *cur;
	const struct vk_batch *graph_batch;
	struct graph graphs[MAX_GRAPHS];
};

struct ctx *C(struct vk_backend *be)
{
	return (struct ctx *)be->ctx;
}

int fail(struct ctx *c, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int fail(struct ctx *c, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->be->error, sizeof(c->be->error), fmt, ap);
	va_end(ap);
	if (c->mode != MODE_EAGER)
		c->graph_failed = 1;
	return rc;
}

bool sticky(cudaError_t e)
{
	switch (e) {
	case cudaErrorIllegalAddress:
	case cudaErrorLaunchFailure:
	case cudaErrorHardwareStackError:
	case cudaErrorIllegalInstruction:
	case cudaErrorMisalignedAddress:
	case cudaErrorInvalidAddressSpace:
	case cudaErrorInvalidPc:
	case cudaErrorAssert:
	case cudaErrorECCUncorrectable:
	case cudaErrorLaunchTimeout:
	case cudaErrorNvlinkUncorrectable:
	case cudaErrorExternalDevice:
	case cudaErrorContextIsDestroyed:
	case cudaErrorTensorMemoryLeak:
		return true;
	default:
		return false;
	}
}

/* Maps a CUDA status to the op's return code; a sticky error marks the backend lost. */
int check(struct ctx *c, cudaError_t e, const char *what)
{
	if (e == cudaSuccess)
		return 0;
	if (sticky(e)) {
		c->lost = 1;
		return fail(c, VK_CUDA_EDEVICE_LOST, "CUDA context lost in %s: %s (%s)", what,
		            cudaGetErrorName(e), cudaGetErrorString(e));
	}
	(void)cudaGetLastError();   /* clear a non-sticky error */
	return fail(c, e == cudaErrorMemoryAllocation ? -ENOMEM : -EIO, "%s: %s (%s)", what,
	            cudaGetErrorName(e), cudaGetErrorString(e));
}

int enter(struct ctx *c)
{
	if (c->lost)
		return fail(c, VK_CUDA_EDEVICE_LOST, "CUDA context lost earlier; restart required");
	return 0;
}

bool launching(const struct ctx *c)
{
	return c->mode != MODE_REPLAY;
}

/* FNV-1a over an op's identity (op, device pointers, sizes) for graph replay checks. */
uint64_t sig(int op, const uint64_t *w, int n)
{
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)op;
	for (int i = 0; i < n; i++) {
		h ^= w[i];
		h *= 1099511628211ULL;
	}
	return h;
}

/* In a graph section: record (capture) or verify (replay) the op's signature. */
int graph_op(struct ctx *c, int op, const uint64_t *w, int n)
{
	if (c->mode == MODE_EAGER)
		return 0;
	const uint64_t s = sig(op, w, n);
	struct graph *g = c->cur;
	if (c->mode == MODE_CAPTURE) {
		if (g->n_log == g->cap_log) {
			int nc = g->cap_log ? 2 * g->cap_log : 256;
			uint64_t *nl = (uint64_t *)realloc(g->log, (size_t)nc * sizeof(*nl));
			if (!nl)
				return fail(c, -ENOMEM, "graph capture: out of host memory");
			g->log = nl;
			g->cap_log = nc;
		}
		g->log[g->n_log++] = s;
		return 0;
	}
	if (c->graph_failed)
		return 0;   /* already abandoned: the caller redoes the step after step_end */
	if (g->pos_log >= g->n_log || g->log[g->pos_log] != s) {
		/* not an error of the op: the step differs from the capture (other buffers, another
		 * KV cache). The rest of the step is skipped, step_end returns -ECANCELED, the graph
		 * is dropped and the caller runs the step eagerly (backend.h's contract). */
		snprintf(c->be->error, sizeof(c->be->error),
		         "graph replay: op %d differs from the captured step (step abandoned)", op);
		c->graph_failed = 1;
		return 0;
	}
	g->pos_log++;
	return 0;
}

void retire(struct ctx *c, void *p)
{
	if (!p)
		return;
	bool any_graph = false;
	for (int i = 0; i < MAX_GRAPHS; i++)
		any_graph |= c->graphs[i].used != 0;
	if (!any_graph && c->mode == MODE_EAGER) {
		cudaFree(p);
		return;
	}
	if (c->n_retired == c->cap_retired) {
		int nc = c->cap_retired ? 2 * c->cap_retired : 16;
		void **nr = (void **)realloc(c->retired, (size_t)nc * sizeof(*nr));
		if (!nr) {
			/* keep it mapped forever rather than free memory a graph may use */
			return;
		}
		c->retired = nr;
		c->cap_retired = nc;
	}
	c->retired[c->n_retired++] = p;
}

/* Grows a scratch buffer to at least bytes (x1.5 headroom). Legal during relaxed-mode capture:
 * the old buffer is retired, never freed under a graph. */
int ensure(struct ctx *c, struct dbuf *b, size_t bytes, const char *what)
{
	if (b->cap >= bytes)
		return 0;
	size_t want = bytes + bytes / 2;
	void *p = NULL;
	cudaError_t e = cudaMalloc(&p, want);
	if (e != cudaSuccess) {
		(void)cudaGetLastError();
		size_t fr = 0, tot = 0;
		cudaMemGetInfo(&fr, &tot);
		return fail(c, -ENOMEM, "out of GPU memory for %s scratch (%zu MiB; %zu of %zu MiB free)",
		            what, want >> 20, fr >> 20, tot >> 20);
	}
	retire(c, b->p);
	b->p = p;
	b->cap = want;
	return 0;
}

/* Copies bytes of host memory to device memory ordered on the compute stream; *ret_dev is valid
 * for the ops enqueued after it. Eager: through the pinned ring; in a graph: through the graph's
 * own pinned buffer (capture records the copy, replay only rewrites the host side). */
int stage(struct ctx *c, const void *host, size_t bytes, const void **ret_dev)
{
	const size_t al = (bytes + 255) & ~(size_t)255;
	if (c->mode == MODE_REPLAY && c->graph_failed) {   /* abandoned replay: nothing runs */
		*ret_dev = c->cur->dev;
		return 0;
	}
	if (c->mode != MODE_EAGER) {
		struct graph *g = c->cur;
		if (g->off + al > g->cap)
			return fail(c, -ENOSPC, "graph staging buffer full (%zu bytes)", g->cap);
		memcpy(g->host + g->off, host, bytes);
		if (c->mode == MODE_CAPTURE) {
			cudaError_t e = cudaMemcpyAsync(g->dev + g->off, g->host + g->off, bytes,
			                                cudaMemcpyHostToDevice, c->stream);
			if (e != cudaSuccess)
				return check(c, e, "graph staging copy");
		}
		*ret_dev = g->dev + g->off;
		g->off += al;
		return 0;
	}
	if (al > c->ring_cap / 4) {
		/* grow the ring (to 8x this copy, so that the few stagings of one op never wrap onto
		 * each other); drain the stream first. The old device ring is kept (retired list): the
		 * op being staged may already hold a pointer into it. */
		cudaError_t e = cudaStreamSynchronize(c->stream);
		if (e != cudaSuccess)
			return check(c, e, "ring resize");
		size_t nc = al * 8;
		char *h = NULL, *d = NULL;
		if (cudaHostAlloc((void **)&h, nc, cudaHostAllocDefault) != cudaSuccess) {
			(void)cudaGetLastError();
			return fail(c, -ENOMEM, "pinned staging ring of %zu bytes", nc);
		}
		if (cudaMalloc((void **)&d, nc) != cudaSuccess) {
			(void)cudaGetLastError();
			cudaFreeHost(h);
			return fail(c, -ENOMEM, "device staging ring of %zu bytes", nc);
		}
		cudaFreeHost(c->ring_host);
		if (c->n_retired == c->cap_retired) {
			int ncap = c->cap_retired ? 2 * c->cap_retired : 16;
			void **nr = (void **)realloc(c->retired, (size_t)ncap * sizeof(*nr));
			if (nr) {
				c->retired = nr;
				c->cap_retired = ncap;
			}
		}
		if (c->n_retired < c->cap_retired)
			c->retired[c->n_retired++] = c->ring_dev;   /* else leaked, never freed early */
		c->ring_host = h;
		c->ring_dev = d;
		c->ring_cap = nc;
		c->ring_off = 0;
		c->meta_last_words = 0;
		c->pos3_words = 0;
	}
	if (c->ring_off + al > c->ring_cap) {
		/* wrap: the copies out of the ring's host side must have run */
		cudaError_t e = cudaStreamSynchronize(c->stream);
		if (e != cudaSuccess)
			return check(c, e, "staging ring wrap");
		c->ring_off = 0;
		c->meta_last_words = 0;   /* the cached descriptors lived in the ring */
		c->pos3_words = 0;
	}
	memcpy(c->ring_host + c->ring_off, host, bytes);
	cudaError_t e = cudaMemcpyAsync(c->ring_dev + c->ring_off, c->ring_host + c->ring_off, bytes,
	                                cudaMemcpyHostToDevice, c->stream);
	if (e != cudaSuccess)
		return check(c, e, "staging copy");
	*ret_dev = c->ring_dev + c->ring_off;
	c->ring_off += al;
	return 0;
}

/* ---- step descriptors ---------------------------------------------------------------------- */

/* Serialises and validates batch (max_blocks = 0: the batch's own maximum). Header words:
 * n_tokens, n_seqs, max_blocks, max_n, max_ctx; then the arrays in meta_view order. */
int meta_serialise(struct ctx *c, const struct vk_batch *b, int32_t max_blocks, size_t *ret_words)
{
	/* tokens and pos may be NULL for ops that do not read them (embed / rope check) */
	if (!b || b->n_tokens < 0 || b->n_seqs < 0 || (b->n_seqs > 0 && !b->seqs))
		return fail(c, -EINVAL, "batch: missing arrays");
	if (b->n_subs < 0 || (b->n_subs > 0 && !b->subs))
		return fail(c, -EINVAL, "batch: bad substitution list");
	const int32_t nt = b->n_tokens, ns = b->n_seqs;
	int32_t mb = 0, max_n = 0, max_ctx = 0, next = 0;
	for (int32_t i = 0; i < ns; i++) {
		const struct vk_seq *s = &b->seqs[i];
		if (s->first != next || s->n < 0 || s->past < 0 || s->n > nt - s->first ||
		    s->n_blocks < 0 || (s->n_blocks > 0 && !s->blocks) || s->past > INT32_MAX - s->n)
			return fail(c, -EINVAL, "batch: sequence %d (first %d, n %d, past %d) malformed",
			            i, s->first, s->n, s->past);
		next = s->first + s->n;
		if (s->n_blocks > mb)
			mb = s->n_blocks;
		if (s->n > max_n)
			max_n = s->n;
		if (s->past + s->n > max_ctx)
			max_ctx = s->past + s->n;
	}
	if (next != nt)
		return fail(c, -EINVAL, "batch: sequences cover %d of %d rows", next, nt);
	if (max_blocks == 0)
		max_blocks = mb > 0 ? mb : 1;
	else if (mb > max_blocks)
		return fail(c, -EINVAL, "batch: %d blocks exceed the graph's %d", mb, max_blocks);

	const size_t words = 5 + (size_t)nt * 5 + (size_t)ns * 3 + (size_t)ns * max_blocks;
	if (words > c->meta_build_cap) {
		size_t nc = words * 2;
		int32_t *nb = (int32_t *)realloc(c->meta_build, nc * sizeof(int32_t));
		if (!nb)
			return fail(c, -ENOMEM, "step descriptors: out of host memory");
		c->meta_build = nb;
		c->meta_build_cap = nc;
	}
	int32_t *w = c->meta_build;
	w[0] = nt;
	w[1] = ns;
	w[2] = max_blocks;
	w[3] = max_n;
	w[4] = max_ctx;
	/* pos: row 0 only (1-D RoPE callers may pass [1][n_tokens]); M-RoPE stages rows 1, 2 */
	int32_t *tokens = w + 5, *pos = tokens + nt, *row_seq = pos + nt, *row_pos = row_seq + nt;
	int32_t *row_sub = row_pos + nt, *sf = row_sub + nt, *sn = sf + ns, *sp = sn + ns;
	int32_t *blocks = sp + ns;
	if (nt > 0 && b->tokens)
		memcpy(tokens, b->tokens, (size_t)nt * sizeof(int32_t));
	else if (nt > 0)
		memset(tokens, 0, (size_t)nt * sizeof(int32_t));
	if (nt > 0 && b->pos)
		memcpy(pos, b->pos, (size_t)nt * sizeof(int32_t));
	else if (nt > 0)
		memset(pos, 0, (size_t)nt * sizeof(int32_t));
	for (int32_t i = 0; i < ns; i++) {
		const struct vk_seq *s = &b->seqs[i];
		sf[i] = s->first;
		sn[i] = s->n;
		sp[i] = s->past;
		for (int32_t j = 0; j < s->n; j++) {
			row_seq[s->first + j] = i;
			row_pos[s->first + j] = s->past + j;
		}
		int32_t *bt = blocks + (size_t)i * max_blocks;
		if (s->n_blocks > 0)
			memcpy(bt, s->blocks, (size_t)s->n_blocks * sizeof(int32_t));
		for (int32_t j = s->n_blocks; j < max_blocks; j++)
			bt[j] = 0;   /* never read: validated against the positions used */
	}
	for (int32_t t = 0; t < nt; t++)
		row_sub[t] = -1;
	for (int32_t k = 0; k < b->n_subs; k++) {
		const struct vk_row_source *r = &b->subs[k];
		if (r->row < 0 || r->n_rows <= 0 || r->row > nt - r->n_rows || !r->data)
			return fail(c, -EINVAL, "substitution %d: rows [%d, +%d) outside the step's %d",
			            k, r->row, r->n_rows, nt);
		for (int32_t t = r->row; t < r->row + r->n_rows; t++) {
			if (row_sub[t] >= 0)
				return fail(c, -EINVAL, "substitutions %d and %d overlap at row %d",
				            row_sub[t], k, t);
			row_sub[t] = k;
		}
	}
	*ret_words = words;
	return 0;
}

void meta_view_set(struct ctx *c, const int32_t *dev, const int32_t *host)
{
	struct meta_view *m = &c->mv;
	m->n_tokens = host[0];
	m->n_seqs = host[1];
	m->max_blocks = host[2];
	m->max_n = host[3];
	m->max_ctx = host[4];
	const int32_t nt = m->n_tokens, ns = m->n_seqs;
	m->tokens = dev + 5;
	m->pos = m->tokens + nt;
	m->row_seq = m->pos + nt;
	m->row_pos = m->row_seq + nt;
	m->row_sub = m->row_pos + nt;
	m->seq_first = m->row_sub + nt;
	m->seq_n = m->seq_first + ns;
	m->seq_past = m->seq_n + ns;
	m->blocks = m->seq_past + ns;
}

/* The device view of batch's descriptors, uploading them only if they changed. */
int meta_get(struct ctx *c, const struct vk_batch *b)
{
	if (c->mode != MODE_EAGER) {
		if (b != c->graph_batch)
			return fail(c, -EINVAL, "graph section: ops must use the batch given to begin");
		return 0;
	}
	size_t words;
	int rc = meta_serialise(c, b, 0, &words);
	if (rc < 0)
		return rc;
	if (c->meta_last_words == words &&
	    !memcmp(c->meta_last, c->meta_build, words * sizeof(int32_t)))
		return 0;
	const void *dev;
	c->meta_last_words = 0;
	rc = stage(c, c->meta_build, words * sizeof(int32_t), &dev);
	if (rc < 0)
		return rc;
	int32_t *nl = (int32_t *)realloc(c->meta_last, words * sizeof(int32_t));
	if (!nl)
		return fail(c, -ENOMEM, "step descriptors: out of host memory");
	c->meta_last = nl;
	memcpy(c->meta_last, c->meta_build, words * sizeof(int32_t));
	c->meta_last_words = words;
	meta_view_set(c, (const int32_t *)dev, c->meta_last);
	c->meta_gen++;
	return 0;
}

/* Block ids of the current step against kv: every position a row writes or reads must map to a
 * block id inside the pool. Checked once per (descriptor generation, cache). */
int meta_check_kv(struct ctx *c, struct cuda_kv *kv, const struct vk_batch *b)
{
	if (kv->validated_gen == c->meta_gen)
		return 0;
	const int32_t bs = kv->shape.block_size;
	for (int32_t i = 0; i < b->n_seqs; i++) {
		const struct vk_seq *s = &b->seqs[i];
		const int64_t need = ((int64_t)s->past + s->n + bs - 1) / bs;
		if (s->n_blocks < need)
			return fail(c, -EINVAL, "sequence %d: %d blocks for %d positions (block size %d)",
			            i, s->n_blocks, s->past + s->n, bs);
		for (int64_t j = 0; j < need; j++)
			if (s->blocks[j] < 0 || s->blocks[j] >= kv->shape.n_blocks)
				return fail(c, -EINVAL, "sequence %d: block id %d outside the pool of %d", i,
				            s->blocks[j], kv->shape.n_blocks);
	}
	kv->validated_gen = c->meta_gen;
	return 0;
}

size_t dsize(int dtype)
{
	return dtype == VK_DTYPE_F32 ? 4 : 2;
}

bool dtype_ok(int dtype)
{
	return dtype == VK_DTYPE_F32 || dtype == VK_DTYPE_F16 || dtype == VK_DTYPE_BF16;
}

float half_to_float(uint16_t h)
{
	const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
	if (exp == 0) {
		if (man == 0) {
			bits = sign;
		} else {   /* subnormal: normalise */
			exp = 127 - 15 + 1;
			while (!(man & 0x400)) {
				man <<= 1;
				exp--;
			}
			man &= 0x3ff;
			bits = sign | (exp << 23) | (man << 13);
		}
	} else if (exp == 0x1f) {
		bits = sign | 0x7f800000u | (man << 13);
	} else {
		bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
	}
	float f;
	memcpy(&f, &bits, sizeof(f));
	return f;
}

float host_elem(const void *p, int dtype, size_t i)
{
	if (dtype == VK_DTYPE_F32)
		return ((const float *)p)[i];
	const uint16_t v = ((const uint16_t *)p)[i];
	if (dtype == VK_DTYPE_F16)
		return half_to_float(v);
	const uint32_t bits = (uint32_t)v << 16;
	float f;
	memcpy(&f, &bits, sizeof(f));
	return f;
}

/* ---- memory --------------------------------------------------------------------------------- */

void be_destroy(struct vk_backend *be);

int be_alloc(struct vk_backend *be, size_t bytes, void **ret_ptr)
{
	struct ctx *c = C(be);
	int rc = enter(c);
	if (rc < 0)
		return rc;
	void *p = NULL;
	cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
	if (e != cudaSuccess) {
		if (sticky(e))
			return check(c, e, "cudaMalloc");
		(void)cudaGetLastError();
		size_t fr = 0, tot = 0;
		cudaMemGetInfo(&fr, &tot);
		return fail(c, -ENOMEM, "out of GPU memory: %zu MiB requested, %zu of %zu MiB free",
		            bytes >> 20, fr >> 20, tot >> 20);
	}
	*ret_ptr = p;
	return 0;
}

void be_free(struct vk_backend *be, void *ptr)
{
	if (ptr)
		cudaFree(ptr);
	(void)be;
}

int be_upload(struct vk_backend *be, void *dst, const void *src_host, size_t bytes)
{
	struct ctx *c = C(be);
	int rc = enter(c);
	if (rc < 0)
		return rc;
	if (c->mode != MODE_EAGER)
		return fail(c, -EINVAL, "upload inside a graph section");
	return check(c, cudaMemcpyAsync(dst, src_host, bytes, cudaMemcpyHostToDevice, c->stream),
	             "upload");
}

int be_download(struct vk_backend *be, void *dst_host, const void *src, size_t bytes)
{
	struct ctx *c = C(be);
	int rc = enter(c);
	if (rc < 0)
		return rc;
	if (c->mode != MODE_EAGER)
		return fail(c, -EINVAL, "download inside a graph section");
	rc = check(c, cudaMemcpyAsync(dst_host, src, bytes, cudaMemcpyDeviceToHost, c->stream),
	           "download");
	if (rc < 0)
		return rc;
	return check(c, cudaStreamSynchronize(c->stream), "download");
}

int be_sync(struct vk_backend *be)
{
	struct ctx *c = C(be);
	int rc = enter(c);
	if (rc < 0)
		return rc;
	if (c->mode != MODE_EAGER)
		return fail(c, -EINVAL, "sync inside a graph section");
	return check(c, cudaStreamSynchronize(c->stream), "sync");
}

int timed_ms(struct ctx *c, cudaEvent_t a, cudaEvent_t b, float *ms)
{
	int rc = check(c, cudaEventSynchronize(b), "probe");
	if (rc < 0)
		return rc;
	return check(c, cudaEventElapsedTime(ms, a, b), "probe timing");
}

/* Device-to-device copy bandwidth, streaming read bandwidth and the bf16 GEMM rate (8192^3). */
int be_probe(struct vk_backend *be, struct vk_probe *ret)
{
	struct ctx *c = C(be);
	int rc = enter(c);
	if (rc < 0)
		return rc;
	if (c->mode != MODE_EAGER)
		return fail(c, -EINVAL, "probe inside a graph section");
	memset(ret, 0, sizeof(*ret));
	const size_t bytes = 1u << 30;
	const int n = 8192;
	void *a = NULL, *b = NULL, *g = NULL;
	float *sink = NULL;
	cudaEvent_t e0 = NULL, e1 = NULL;
	float ms = 0.0f;
	rc = check(c, cudaEventCreate(&e0), "probe");
	if (rc < 0)
		goto out;
	rc = check(c, cudaEventCreate(&e1), "probe");
	if (rc < 0)
		goto out;
	rc = be_alloc(be, bytes, &a);
	if (rc < 0)
		goto out;
	rc = be_alloc(be, bytes, &b);
	if (rc < 0)
		goto out;
	rc = be_alloc(be, sizeof(float), (void **)&sink);
	if (rc < 0)
		goto out;
	rc = check(c, cudaMemsetAsync(a, 0, bytes, c->stream), "probe");
	if (rc < 0)
		goto out;
	for (int it = 0; it < 2; it++) {   /* warm-up, then timed */
		const int reps = it ? 10 : 2;
		cudaEventRecord(e0, c->stream);
		for (int r = 0; r < reps; r++)
			cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, c->stream);
		cudaEventRecord(e1, c->stream);
		rc = timed_ms(c, e0, e1, &ms);
		if (rc < 0)
			goto out;
		ret->copy_bandwidth_gbps = 2.0 * bytes * reps / (ms * 1e-3) / 1e9;
	}
	for (int it = 0; it < 2; it++) {
		const int reps = it ? 10 : 2;
		cudaEventRecord(e0, c->stream);
		for (int r = 0; r < reps; r++)
			vk_cuda_read_probe(c->stream, (const float4 *)a, (int64_t)(bytes / 16), sink);
		cudaEventRecord(e1, c->stream);
		rc = timed_ms(c, e0, e1, &ms);
		if (rc < 0)
			goto out;
		ret->read_bandwidth_gbps = (double)bytes * reps / (ms * 1e-3) / 1e9;
	}
	/* GEMM rate: bf16 [n, n] x [n, n]^T -> fp32, the matmul path's own configuration */
	rc = check(c, cudaMemsetAsync(b, 0, (size_t)n * n * 2, c->stream), "probe");
	if (rc < 0)
		goto out;
	rc = be_alloc(be, (size_t)n * n * 4, &g);
	if (rc < 0)
		goto out;
	for (int it = 0; it < 2; it++) {
		const int reps = it ? 5 : 1;
		cudaEventRecord(e0, c->stream);
		for (int r = 0; r < reps; r++) {
			rc = vk_cuda_gemm_run(&c->gemm, c->stream, a, b, VK_DTYPE_BF16, NULL, n, n, n,
			                      (float *)g, be->error, sizeof(be->error));
			if (rc < 0)
				goto out;
		}
		cudaEventRecord(e1, c->stream);
		rc = timed_ms(c, e0, e1, &ms);
		if (rc < 0)
			goto out;
		ret->peak_gflops = 2.0 * n * (double)n * n * reps / (ms * 1e-3) / 1e9;
	}
	ret->threads = 0;
out:
	if (e0)
		cudaEventDestroy(e0);
	if (e1)
		cudaEventDestroy(e1);
	cudaStreamSynchronize(c->stream);
	be_free(be, a);
	be_free(be, b);
	be_free(be, g);
	be_free(be, sink);
	return rc;
}

/* ---- weights and KV ------------------------------------------------------------------------- */

int be_weight_load(struct vk_backend *be, const void *src, enum vk_dtype dtype, int64_t rows,
                   int64_t cols, struct vk_weight *ret)
{
	struct ctx *c = C(be);
	int rc = enter(c);
	if (rc < 0)
		return rc;
	if (!dtype_ok(dtype) || rows <= 0 || cols <= 0 || !src)
		return fail(c, -EINVAL, "weight [%lld x %lld] of dtype %d refused", (long long)rows,
		            (long long)cols, (int)dtype);
	const size_t count = (size_t)rows * (size_t)cols;
	memset(ret, 0, sizeof(*ret));
	if (rows == 1) {
		/* vectors (norm weights, biases): fp32 on the device */
		float *tmp = (float *)malloc(count * sizeof(float));
		if (!tmp)
			return fail(c, -ENOMEM, "weight vector of %zu elements: out of host memory", count);
		for (size_t i = 0; i < count; i++)
			tmp[i] = host_elem(src, dtype, i);
		void *d = NULL;
		rc = be_alloc(be, count * sizeof(float), &d);
		if (rc == 0)
			rc = check(c, cudaMemcpyAsync(d, tmp, count * sizeof(float),
			                              cudaMemcpyHostToDevice, c->stream), "weight upload");
		free(tmp);
		if (rc < 0) {
			be_free(be, d);
			return rc;
		}
		ret->dtype = VK_DTYPE_F32;
		ret->data = d;
	} else {
		void *d = NULL;
		rc = be_alloc(be, count * dsize(dtype), &d);
		if (rc < 0)
			return fail(c, rc, "weight [%lld x %lld]: %s", (long long)rows, (long long)cols,
			            be->error);
		/* on the compute stream: a pageable cudaMemcpy may return before its DMA finished,
		 * and the legacy stream does not order the non-blocking compute stream */
		rc = check(c, cudaMemcpyAsync(d, src, count * dsize(dtype), cudaMemcpyHostToDevice,
		                              c->stream), "weight upload");
		if (rc < 0) {
			be_free(be, d);
			return rc;
		}
		ret->dtype = dtype;
		ret->data = d;
	}
	ret->rows = rows;
	ret->cols = cols;
	ret->priv = NULL;
	return 0;
}

static bool is_quant(int dtype)
{
	return dtype == VK_DTYPE_Q8 || dtype == VK_DTYPE_Q4;
}

/* Quantized weights (quant.h): the source is checked, packed on the host into the device layout
 * and uploaded as one allocation; priv holds the layout with device pointers. */
int be_weight_load_quant(struct vk_backend *be, const struct vk_quant_src *src,
                         struct vk_weight *ret)
{
	struct ctx *c = C(be);
	int rc = enter(c);
	if (rc < 0)
		return rc;
	char err[200];
	rc = vk_cuda_quant_check(src, err, sizeof(err));
	if (rc < 0)
		return fail(c, rc, "%s", err);
	if (!ret)
		return fail(c, -EINVAL, "weight_load_quant: no result");
	struct vk_cuda_qw *qw = (struct vk_cuda_qw *)calloc(1, sizeof(*qw));
	void *img = NULL, *d = NULL;
	size_t bytes = 0;
	if (!qw || vk_cuda_quant_pack(src, &img, &bytes, qw) < 0) {
		free(qw);
		return fail(c, -ENOMEM, "weight_load_quant: out of host memory");
	}
	rc = be_alloc(be, bytes, &d);
	if (rc == 0)
		rc = check(c, cudaMemcpyAsync(d, img, bytes, cudaMemcpyHostToDevice, c->stream),
		           "quantized weight upload");
	if (rc == 0)   /* img is freed next: the copy must be done with it */
		rc = check(c, cudaStreamSynchronize(c->stream), "quantized weight upload");
	free(img);
	if (rc < 0) {
		be_free(be, d);
		free(qw);
		return rc;
	}
	vk_cuda_quant_rebase(qw, d);
	memset(ret, 0, sizeof(*ret));
	ret->dtype = src->dtype;
	ret->rows = src->rows;
	ret->cols = src->cols;
	ret->data = d;
	ret->priv = qw;
	return 0;
}

void be_weight_free(struct vk_backend *be, struct vk_weight *w)
{
	if (!w)
		return;
	if (is_quant(w->dtype)) {
		free(w->priv);
		w->priv = NULL;
	}
	be_free(be, w->data);
	w->data = NULL;
}

int be_kv_new(struct vk_backend *be, const struct vk_kv_shape *shape, struct vk_kv **ret)
{
	struct ctx *c = C(be);
	int rc = enter(c);
	if (rc < 0)
		return rc;
	if (shape->n_layers <= 0 || shape->n_blocks <= 0 || shape->block_size <= 0 ||
	    shape->n_kv_heads <= 0 || shape->head_dim <= 0)
		return fail(c, -EINVAL, "KV shape refused (%d layers, %d blocks of %d, %d x %d)",
		            shape->n_layers, shape->n_blocks, shape->block_size, shape->n_kv_heads,
		            shape->head_dim);
	if (!dtype_ok(shape->dtype) || !vk_cuda_attn_supported(shape->head_dim, 1))
		return fail(c, -ENOTSUP, "KV dtype %d / head_dim %d not supported (head_dim <= 256)",
		            (int)shape->dtype, shape->head_dim);
	struct cuda_kv *kv = (struct cuda_kv *)calloc(1, sizeof(*kv));
	if (!kv)
		return fail(c, -ENOMEM, "KV cache: out of host memory");
	kv->shape = *shape;
	kv->pool_bytes = (size_t)shape->n_blocks * shape->block_size * shape->n_kv_heads *
	                 shape->head_dim * dsize(shape->dtype);
	kv->validated_gen = UINT64_MAX;
	const size_t total = kv->pool_bytes * 2 * (size_t)shape->n_layers;
	rc = be_alloc(be, total, (void **)&kv->base);
	if (rc < 0) {
		free(kv);
		return fail(c, rc, "KV pool of %zu MiB (%d layers x %d blocks x %d tokens): %s",
		            total >> 20, shape->n_layers, shape->n_blocks, shape->block_size,
		            be->error);
	}
	*ret = (struct vk_kv *)kv;
	return 0;
}

void be_kv_free(struct vk_backend *be, struct vk_kv *kvp)
{
	struct cuda_kv *kv = (struct cuda_kv *)kvp;
	if (!kv)
		return;
	be_free(be, kv->base);
	free(kv);
}

/* ---- ops ------------------------------------------------------------------------------------ */

int be_embed(struct vk_backend *be, const struct vk_weight *table, const struct vk_batch *batch,
             float *x)
{
	struct ctx *c = C(be);
	int rc = enter(c);
	if (rc < 0)
		return rc;
	if (c->mode != MODE_EAGER && batch && batch->n_subs > 0)
		return fail(c, -EINVAL, "graph section: substitutions are not allowed");
	if (!batch || (batch->n_tokens > 0 && !batch->tokens))
		return fail(c, -EINVAL, "embed: no token ids");
	rc = meta_get(c, batch);
	if (rc < 0)
		return rc;
	const int32_t hidden = (int32_t)table->cols;
	/* the host image of row_sub: substituted rows' token ids are never looked up */
	const int32_t *himg = c->mode == MODE_EAGER ? c->meta_last : c->meta_build;
	const int32_t *hsub = himg + 5 + 4 * (size_t)batch->n_tokens;
	if (table->dtype != VK_DTYPE_F32 && table->dtype != VK_DTYPE_BF16 &&
	    table->dtype != VK_DTYPE_F16 && !(is_quant(table->dtype) && table->priv))
		return fail(c, -ENOTSUP, "embed: table dtype %d", (int)table->dtype);
	for (int32_t t = 0; t < batch->n_tokens; t++)
		if (hsub[t] < 0 && (batch->tokens[t] < 0 || batch->tokens[t] >= table->rows))
			return fail(c, -EINVAL, "token id %d at row %d outside the vocabulary of %lld",
			            batch->tokens[t], t, (long long)table->rows);
	/* substitution table; host sources go through the staging buffer on the copy stream */
	const void *dsubs = NULL;
	if (batch->n_subs > 0) {
		struct vk_cuda_sub *hs = (struct vk_cuda_sub *)calloc((size_t)batch->n_subs,
		                                                      sizeof(*hs));
		if (!hs)
			return fail(c, -ENOMEM, "substitutions: out of host memory");
		size_t stage_bytes = 0;
		for (int32_t k = 0; k < batch->n_subs; k++) {
			const struct vk_row_source *r = &batch->subs[k];
			if (!dtype_ok(r->dtype) || r->row_stride < (int64_t)hidden * (int64_t)dsize(r->dtype)) {
				free(hs);
				return fail(c, -EINVAL, "substitution %d: dtype %d / row stride %lld too small "
				            "for hidden %d", k, (int)r->dtype, (long long)r->row_stride, hidden);
			}
			if (!r->is_device)
				stage_bytes += ((size_t)r->n_rows * hidden * dsize(r->dtype) + 255) & ~(size_t)255;
		}
		if (stage_bytes) {
			rc = ensure(c, &c->stage, stage_bytes, "substitution staging");
			if (rc == 0)
				rc = check(c, cudaEventRecord(c->ev_compute, c->stream), "staging");
			if (rc == 0)   /* the staging buffer may still be read by an earlier embed */
				rc = check(c, cudaStreamWaitEvent(c->copy_stream, c->ev_compute, 0), "staging");
			if (rc < 0) {
				free(hs);
				return rc;
			}
		}
		size_t off = 0;
		for (int32_t k = 0; k < batch->n_subs; k++) {
			const struct vk_row_source *r = &batch->subs[k];
			hs[k].row = r->row;
			hs[k].dtype = r->dtype;
			if (r->is_device) {
				hs[k].data = r->data;
				hs[k].row_stride = r->row_stride;
				continue;
			}
			const size_t width = (size_t)hidden * dsize(r->dtype);
			char *dst = (char *)c->stage.p + off;
			rc = check(c, cudaMemcpy2DAsync(dst, width, r->data, (size_t)r->row_stride, width,
			                                (size_t)r->n_rows, cudaMemcpyHostToDevice,
			                                c->copy_stream), "substitution staging copy");
			if (rc < 0) {
				free(hs);
				return rc;
			}
			hs[k].data = dst;
			hs[k].row_stride = (int64_t)width;
			off += ((size_t)r->n_rows * width + 255) & ~(size_t)255;
		}
		if (stage_bytes) {
			rc = check(c, cudaEventRecord(c->ev_copy, c->copy_stream), "staging");
			if (rc == 0)
				rc = check(c, cudaStreamWaitEvent(c->stream, c->ev_copy, 0), "staging");
		}
		if (rc == 0)
			rc = stage(c, hs, (size_t)batch->n_subs * sizeof(*hs), &dsubs);
		free(hs);
		if (rc < 0)
			return rc;
	}
	const uint64_t w[] = { (uint64_t)(uintptr_t)table->data, (uint64_t)(uintptr_t)x,
	                       (uint64_t)hidden, (uint64_t)batch->n_tokens };
	rc = graph_op(c, OP_EMBED, w, 4);
	if (rc < 0 || !launching(c))
		return rc;
	if (is_quant(table->dtype))
		return check(c, vk_cuda_qembed(c->stream, (const struct vk_cuda_qw *)table->priv,
		                               c->mv.tokens, c->mv.row_sub,
		                               (const struct vk_cuda_sub *)dsubs, batch->n_tokens, x),
		             "embed (quantized table)");
	return check(c, vk_cuda_embed(c->stream, table->data, table->dtype, hidden, c->mv.tokens,
	                              c->mv.row_sub, (const struct vk_cuda_sub *)dsubs,
	                              batch->n_tokens, x), "embed");
}

int norm_common(struct vk_backend *be, int op, float *residual, const float *x,
                const struct vk_weight *w, float eps, int32_t n, int32_t dim, float *out)
{
	struct ctx *c = C(be);
	int rc = enter(c);
	if (rc < 0)
		return rc;
	if (w->dtype != VK_DTYPE_F32 || w->rows * w->cols != dim || n < 0)
		return fail(c, -EINVAL, "rmsnorm: weight [%lld x %lld] does not match dim %d",
		            (long long)w->rows, (long long)w->cols, dim);
	const uint64_t s[] = { (uint64_t)(uintptr_t)residual, (uint64_t)(uintptr_t)x,
	                       (uint64_t)(uintptr_t)w->data, (uint64_t)(uintptr_t)out,
	                       (uint64_t)n, (uint64_t)dim };
	rc = graph_op(c, op, s, 6);
	if (rc < 0 || !launching(c))
		return rc;
	return check(c, vk_cuda_rmsnorm(c->stream, residual, x, (const float *)w->data, eps, n, dim,
	                                out), "rmsnorm");
}

int be_rmsnorm(struct vk_backend *be, const float *x, const struct vk_weight *w, float eps,
               int32_t n, int32_t dim, float *out)
{
	return norm_common(be, OP_RMSNORM, NULL, x, w, eps, n, dim, out);
}

int be_add_rmsnorm(struct vk_backend *be, float *residual, const float *delta,
                   const struct vk_weight *w, float eps, int32_t n, int32_t dim, float *out)
{
	return norm_common(be, OP_ADD_RMSNORM, residual, delta, w, eps, n, dim, out);
}

int be_matmul(struct vk_backend *be, const float *x, const struct vk_weight *w,
              const struct vk_weight *bias, int32_t n, float *out)
{
	struct ctx *c = C(be);
	int rc = enter(c);
	if (rc < 0)
		return rc;
	const int32_t m = (int32_t)w->rows, k = (int32_t)w->cols;
	if (n < 0 || (bias && (bias->dtype != VK_DTYPE_F32 || bias->rows * bias->cols != m)))
		return fail(c, -EINVAL, "matmul: bias does not match [%d x %d]", m, k);
	if (!dtype_ok(w->dtype) && !(is_quant(w->dtype) && w->priv))
		return fail(c, -ENOTSUP, "matmul: weight dtype %d", (int)w->dtype);
	const float *bp = bias ? (const float *)bias->data : NULL;
	if (is_quant(w->dtype) && w->priv) {
		const uint64_t sq[] = { (uint64_t)(uintptr_t)x, (uint64_t)(uintptr_t)w->data,
		                        (uint64_t)(uintptr_t)bp, (uint64_t)(uintptr_t)out, (uint64_t)n,
		                        3 };
		rc = graph_op(c, OP_MATMUL, sq, 6);
		if (rc < 0 || !launching(c))
			return rc;
		return check(c, vk_cuda_qmatmul(c->stream, x, (const struct vk_cuda_qw *)w->priv, bp, n,
		                                out), "matmul (quantized)");
	}
	if (c->gemv && vk_cuda_gemv_ok(n, k, w->dtype, x, w->data)) {
		/* decode: fp32 x against the 16-bit weights directly, one pass, bias fused */
		const uint64_t sg[] = { (uint64_t)(uintptr_t)x, (uint64_t)(uintptr_t)w->data,
		                        (uint64_t)(uintptr_t)bp, (uint64_t)(uintptr_t)out, (uint64_t)n,
		                        2 };
		rc = graph_op(c, OP_MATMUL, sg, 6);
		if (rc < 0 || !launching(c))
			return rc;
		return check(c, vk_cuda_gemv(c->stream, x, w->data, w->dtype, bp, n, m, k, out),
		             "matmul (gemv)");
	}
	const bool split = w->dtype != VK_DTYPE_F32 && n <= c->split_max;
	const void *in = x;
	if (w->dtype != VK_DTYPE_F32) {
		rc = ensure(c, &c->act16, (size_t)n * k * 2 * (split ? 2 : 1), "GEMM input");
		if (rc == 0 && split)
			rc = ensure(c, &c->gemm_out, (size_t)2 * n * m * sizeof(float), "GEMM output");
		if (rc < 0)
			return rc;
		in = c->act16.p;
	}
	const uint64_t s[] = { (uint64_t)(uintptr_t)x, (uint64_t)(uintptr_t)w->data,
	                       (uint64_t)(uintptr_t)bp, (uint64_t)(uintptr_t)out, (uint64_t)n,
	                       (uint64_t)split };
	rc = graph_op(c, OP_MATMUL, s, 6);
	if (rc < 0 || !launching(c) || n == 0)
		return rc;
	if (w->dtype != VK_DTYPE_F32) {
		cudaError_t e = split ?
			vk_cuda_convert_split(c->stream, x, (int64_t)n * k, w->dtype, c->act16.p) :
			vk_cuda_convert(c->stream, x, (int64_t)n * k, w->dtype, c->act16.p);
		rc = check(c, e, "GEMM input conversion");
		if (rc < 0)
			return rc;
	}
	if (split)   /* one GEMM over [hi; lo] (the weights are read once), then the halves summed */
		rc = vk_cuda_gemm_run(&c->gemm, c->stream, in, w->data, w->dtype, NULL, 2 * n, m, k,
		                      (float *)c->gemm_out.p, be->error, sizeof(be->error));
	else
		rc = vk_cuda_gemm_run(&c->gemm, c->stream, in, w->data, w->dtype, bp, n, m, k, out,
		                      be->error, sizeof(be->error));
	if (rc < 0) {
		cudaError_t e = cudaPeekAtLastError();
		if (sticky(e))
			return check(c, e, "matmul");
		if (c->mode != MODE_EAGER)
			c->graph_failed = 1;
		return rc;
	}
	if (split)
		rc = check(c, vk_cuda_add_halves(c->stream, (const float *)c->gemm_out.p, bp, n, m, out),
		           "matmul halves");
	return rc;
}

int be_rope(struct vk_backend *be, float *q, float *k, const struct vk_batch *batch,
            int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, const struct vk_rope *rope)
{
	struct ctx *c = C(be);
	int rc = enter(c);
	if (rc < 0)
		return rc;
	if (head_dim <= 0 || head_dim % 2 || rope->section[0] < 0 || rope->section[1] < 0 ||
	    rope->section[2] < 0 ||
	    rope->section[0] + rope->section[1] + rope->section[2] != head_dim / 2)
		return fail(c, -EINVAL, "rope: section %d/%d/%d does not add up to head_dim/2 = %d",
		            rope->section[0], rope->section[1], rope->section[2], head_dim / 2);
	if (!batch || (batch->n_tokens > 0 && !batch->pos))
		return fail(c, -EINVAL, "rope: no positions");
	rc = meta_get(c, batch);
	if (rc < 0)
		return rc;
	const int32_t *pos = c->mv.pos;   /* 1-D: row 0 is all the kernel reads */
	if (rope->section[1] + rope->section[2] > 0 && batch->n_tokens > 0) {
		/* M-RoPE: all three rows, uploaded once per step (cached like the descriptors) */
		const size_t words = (size_t)batch->n_tokens * 3;
		if (c->mode != MODE_EAGER || c->pos3_words != words ||
		    memcmp(c->pos3_last, batch->pos, words * sizeof(int32_t))) {
			const void *dev;
			c->pos3_words = 0;
			rc = stage(c, batch->pos, words * sizeof(int32_t), &dev);
			if (rc < 0)
				return rc;
			if (c->mode == MODE_EAGER) {
				int32_t *nl = (int32_t *)realloc(c->pos3_last, words * sizeof(int32_t));
				if (!nl)
					return fail(c, -ENOMEM, "positions: out of host memory");
				memcpy(nl, batch->pos, words * sizeof(int32_t));
				c->pos3_last = nl;
				c->pos3_words = words;
			}
			c->pos3_dev = (const int32_t *)dev;
		}
		pos = c->pos3_dev;
	}
	const uint64_t s[] = { (uint64_t)(uintptr_t)q, (uint64_t)(uintptr_t)k, (uint64_t)n_heads,
	                       (uint64_t)n_kv_heads, (uint64_t)head_dim,
	                       (uint64_t)rope->section[0], (uint64_t)rope->section[1] };
	rc = graph_op(c, OP_ROPE, s, 7);
	if (rc < 0 || !launching(c))
		return rc;
	return check(c, vk_cuda_rope(c->stream, q, k, pos, batch->n_tokens, n_heads,
	                             n_kv_heads, head_dim, rope->theta, rope->section[0],
	                             rope->section[1]), "rope");
}

int be_kv_store(struct vk_backend *be, struct vk_kv *kvp, int32_t layer, const float *k,
                const float *v, const struct vk_batch *batch)
{
	struct ctx *c = C(be);
	struct cuda_kv *kv = (struct cuda_kv *)kvp;
	int rc = enter(c);
	if (rc < 0)
		return rc;
	if (layer < 0 || layer >= kv->shape.n_layers)
		return fail(c, -EINVAL, "kv_store: layer %d of %d", layer, kv->shape.n_layers);
	rc = meta_get(c, batch);
	if (rc == 0)
		rc = meta_check_kv(c, kv, batch);
	if (rc < 0)
		return rc;
	char *kpool = kv->base + (size_t)(2 * layer) * kv->pool_bytes;
	char *vpool = kpool + kv->pool_bytes;
	const int32_t width = kv->shape.n_kv_heads * kv->shape.head_dim;
	const uint64_t s[] = { (uint64_t)(uintptr_t)kpool, (uint64_t)(uintptr_t)k,
	                       (uint64_t)(uintptr_t)v, (uint64_t)width };
	rc = graph_op(c, OP_KV_STORE, s, 4);
	if (rc < 0 || !launching(c))
		return rc;
	return check(c, vk_cuda_kv_store(c->stream, kpool, vpool, kv->shape.dtype,
	                                 kv->shape.block_size, width, k, v, c->mv.row_seq,
	                                 c->mv.row_pos, c->mv.blocks, c->mv.max_blocks,
	                                 batch->n_tokens), "kv_store");
}

int be_attention(struct vk_backend *be, struct vk_kv *kvp, int32_t layer, const float *q,
                 const struct vk_batch *batch, int32_t n_heads, float *out)
{
	struct ctx *c = C(be);
	struct cuda_kv *kv = (struct cuda_kv *)kvp;
	int rc = enter(c);
	if (rc < 0)
		return rc;
	const int32_t kvh = kv->shape.n_kv_heads, hd = kv->shape.head_dim;
	if (layer < 0 || layer >= kv->shape.n_layers || n_heads <= 0 || n_heads % kvh ||
	    !vk_cuda_attn_supported(hd, n_heads / kvh))
		return fail(c, -EINVAL, "attention: layer %d, %d heads over %d KV heads of dim %d "
		            "unsupported", layer, n_heads, kvh, hd);
	rc = meta_get(c, batch);
	if (rc == 0)
		rc = meta_check_kv(c, kv, batch);
	if (rc < 0)
		return rc;
	struct vk_cuda_attn_plan plan;
	int32_t max_ctx = c->mv.max_ctx;
	if (c->mode != MODE_EAGER)   /* fixed geometry for every replay of this graph */
		max_ctx = c->cur->blocks_cap * kv->shape.block_size;
	vk_cuda_attn_plan_make(&plan, batch->n_seqs, c->mv.max_n, max_ctx, kvh, n_heads / kvh,
	                       c->sm_count);
	const int64_t pf = vk_cuda_attn_scratch_floats(&plan, batch->n_tokens, n_heads, hd);
	if (pf > 0) {
		rc = ensure(c, &c->partial, (size_t)pf * sizeof(float), "attention partials");
		if (rc < 0)
			return rc;
	}
	const char *kpool = kv->base + (size_t)(2 * layer) * kv->pool_bytes;
	const char *vpool = kpool + kv->pool_bytes;
	const uint64_t s[] = { (uint64_t)(uintptr_t)kpool, (uint64_t)(uintptr_t)q,
	                       (uint64_t)(uintptr_t)out, (uint64_t)n_heads, (uint64_t)plan.n_splits,
	                       (uint64_t)plan.rows_per_tile };
	rc = graph_op(c, OP_ATTENTION, s, 6);
	if (rc < 0 || !launching(c))
		return rc;
	return check(c, vk_cuda_attention(c->stream, &plan, q, kpool, vpool, kv->shape.dtype,
	                                  kv->shape.block_size, n_heads, kvh, hd, c->mv.seq_first,
	                                  c->mv.seq_n, c->mv.seq_past, c->mv.blocks,
	                                  c->mv.max_blocks, batch->n_seqs, batch->n_tokens,
	                                  (float *)c->partial.p, out), "attention");
}

int be_swiglu(struct vk_backend *be, const float *gate, const float *up, int32_t n, int32_t dim,
              float *out)
{
	struct ctx *c = C(be);
	int rc = enter(c);
	if (rc < 0)
		return rc;
	const uint64_t s[] = { (uint64_t)(uintptr_t)gate, (uint64_t)(uintptr_t)up,
	                       (uint64_t)(uintptr_t)out, (uint64_t)n, (uint64_t)dim };
	rc = graph_op(c, OP_SWIGLU, s, 5);
	if (rc < 0 || !launching(c))
		return rc;
	return check(c, vk_cuda_swiglu(c->stream, gate, up, (int64_t)n * dim, out), "swiglu");
}

int be_get_rows(struct vk_backend *be, const float *x, const int32_t *rows, int32_t n,
                int32_t dim, float *out)
{
	struct ctx *c = C(be);
	int rc = enter(c);
	if (rc < 0)
		return rc;
	if (n < 0 || (n > 0 && !rows))
		return fail(c, -EINVAL, "get_rows: no rows");
	for (int32_t i = 0; i < n; i++)
		if (rows[i] < 0)
			return fail(c, -EINVAL, "get_rows: row %d is negative", rows[i]);
	if (n == 0)
		return 0;
	const void *drows;
	rc = stage(c, rows, (size_t)n * sizeof(int32_t), &drows);
	if (rc < 0)
		return rc;
	const uint64_t s[] = { (uint64_t)(uintptr_t)x, (uint64_t)(uintptr_t)out, (uint64_t)n,
	                       (uint64_t)dim };
	rc = graph_op(c, OP_GET_ROWS, s, 4);
	if (rc < 0 || !launching(c))
		return rc;
	return check(c, vk_cuda_get_rows(c->stream, x, (const int32_t *)drows, n, dim, out),
	             "get_rows");
}

int ids_ensure(struct ctx *c, int32_t n)
{
	if (n <= c->ids_cap)
		return 0;
	int32_t nc = n < 1024 ? 1024 : n;
	int32_t *h = NULL;
	if (cudaHostAlloc((void **)&h, (size_t)nc * 2 * sizeof(int32_t), cudaHostAllocDefault) !=
	    cudaSuccess) {
		(void)cudaGetLastError();
		return fail(c, -ENOMEM, "pinned id buffer");
	}
	if (c->ids_host)
		cudaFreeHost(c->ids_host);
	c->ids_host = h;
	c->ids_cap = nc;
	return ensure(c, &c->small, (size_t)nc * sizeof(int32_t), "token ids");
}

int be_argmax(struct vk_backend *be, const float *logits, int32_t n, int32_t vocab,
              int32_t *ret_ids)
{
	struct ctx *c = C(be);
	int rc = enter(c);
	if (rc < 0)
		return rc;
	if (c->mode != MODE_EAGER)
		return fail(c, -EINVAL, "argmax inside a graph section (call it after graph_end)");
	if (n < 0 || vocab <= 0)
		return fail(c, -EINVAL, "argmax: bad shape");
	if (n == 0)
		return 0;
	rc = ids_ensure(c, n);
	if (rc < 0)
		return rc;
	rc = check(c, vk_cuda_argmax(c->stream, logits, n, vocab, (int32_t *)c->small.p), "argmax");
	if (rc == 0)
		rc = check(c, cudaMemcpyAsync(c->ids_host, c->small.p, (size_t)n * sizeof(int32_t),
		                              cudaMemcpyDeviceToHost, c->stream), "argmax");
	if (rc == 0)
		rc = check(c, cudaStreamSynchronize(c->stream), "argmax");
	if (rc == 0)
		memcpy(ret_ids, c->ids_host, (size_t)n * sizeof(int32_t));
	return rc;
}

/* ---- graphs --------------------------------------------------------------------------------- */

void graph_drop(struct graph *g)
{
	if (g->exec)
		cudaGraphExecDestroy(g->exec);
	if (g->done)
		cudaEventDestroy(g->done);
	if (g->host)
		cudaFreeHost(g->host);
	if (g->dev)
		cudaFree(g->dev);
	free(g->log);
	memset(g, 0, sizeof(*g));
}

/* ---- vision tower ops (eager only: the tower never runs inside a graph section) ----------- */

int vision_enter(struct ctx *c, const char *op)
{
	int rc = enter(c);
	if (rc < 0)
		return rc;
	if (c->mode != MODE_EAGER)
		return fail(c, -EINVAL, "%s: not supported inside a step graph section", op);
	return 0;
}

int vec_ok(const struct vk_weight *w, int64_t dim)
{
	return w && w->dtype == VK_DTYPE_F32 && w->rows * w->cols == dim && w->data;
}

int be_layernorm(struct vk_backend *be, float *x, const float *delta, const struct vk_weight *w,
                 const struct vk_weight *b, float eps, int32_t n, int32_t dim, float *out)
{
	struct ctx *c = C(be);
	int rc = vision_enter(c, "layernorm");
	if (rc < 0)
		return rc;
	if (!x || !out || out == x || n < 1 || dim < 1 || !vec_ok(w, dim) || (b && !vec_ok(b, dim)))
		return fail(c, -EINVAL, "layernorm: bad arguments (n %d, dim %d)", n, dim);
	return check(c, vk_cuda_layernorm(c->stream, x, delta, (const float *)w->data,
	                                  b ? (const float *)b->data : NULL, eps, n, dim, out),
	             "layernorm");
}

int be_activate(struct vk_backend *be, enum vk_act act, const float *x, int64_t n, float *out)
{
	struct ctx *c = C(be);
	int rc = vision_enter(c, "activate");
	if (rc < 0)
		return rc;
	if (!x || !out || n < 1)
		return fail(c, -EINVAL, "activate: bad arguments");
	if (act != VK_ACT_GELU_ERF && act != VK_ACT_QUICK_GELU && act != VK_ACT_SILU)
		return fail(c, -ENOTSUP, "activate: unknown activation %d", (int)act);
	return check(c, vk_cuda_activate(c->stream, (int)act, x, n, out), "activate");
}

int be_rope_2d(struct vk_backend *be, float *x, int64_t ld, int32_t n, int32_t n_heads,
               int32_t head_dim, const int32_t *pos, float theta)
{
	struct ctx *c = C(be);
	int rc = vision_enter(c, "rope_2d");
	if (rc < 0)
		return rc;
	if (!x || !pos || n < 1 || n_heads < 1 || head_dim < 4 || head_dim % 4 ||
	    ld < (int64_t)n_heads * head_dim || !(theta > 0))
		return fail(c, -EINVAL, "rope_2d: bad arguments (n %d, heads %d, head_dim %d)", n,
		            n_heads, head_dim);
	const void *dpos = NULL;
	if ((rc = stage(c, pos, (size_t)2 * (size_t)n * sizeof(int32_t), &dpos)) < 0)
		return rc;
	return check(c, vk_cuda_rope_2d(c->stream, x, ld, n, n_heads, head_dim,
	                                (const int32_t *)dpos, theta), "rope_2d");
}

int be_seg_attention(struct vk_backend *be, const float *q, const float *k, const float *v,
                     int64_t ld, int32_t n, int32_t n_heads, int32_t head_dim, const int32_t *seg,
                     int32_t n_seg, float *out)
{
	struct ctx *c = C(be);
	int rc = vision_enter(c, "seg_attention");
	if (rc < 0)
		return rc;
	if (!q || !k || !v || !out || !seg || n < 1 || n_heads < 1 || head_dim < 1 ||
	    head_dim > 256 || n_seg < 1 || ld < (int64_t)n_heads * head_dim || seg[0] != 0 ||
	    seg[n_seg] != n)
		return fail(c, -EINVAL, "seg_attention: bad arguments (n %d, heads %d, head_dim %d, "
		            "%d segments)", n, n_heads, head_dim, n_seg);
	/* host: [n_seg + 1] bounds then [n] segment of each row, staged in one copy */
	int32_t *h = (int32_t *)malloc(sizeof(int32_t) * ((size_t)n_seg + 1 + (size_t)n));
	if (!h)
		return fail(c, -ENOMEM, "seg_attention: out of host memory");
	for (int32_t i = 0; i <= n_seg; i++)
		h[i] = seg[i];
	for (int32_t i = 0; i < n_seg; i++) {
		if (seg[i + 1] <= seg[i]) {
			free(h);
			return fail(c, -EINVAL, "seg_attention: segment %d is [%d, %d)", i, seg[i],
			            seg[i + 1]);
		}
		for (int32_t r = seg[i]; r < seg[i + 1]; r++)
			h[n_seg + 1 + r] = i;
	}
	const void *d = NULL;
	rc = stage(c, h, sizeof(int32_t) * ((size_t)n_seg + 1 + (size_t)n), &d);
	free(h);
	if (rc < 0)
		return rc;
	const int32_t *dseg = (const int32_t *)d;
	return check(c, vk_cuda_seg_attention(c->stream, q, k, v, ld, n, n_heads, head_dim, dseg,
	                                      dseg + n_seg + 1, out), "seg_attention");
}

int be_sample(struct vk_backend *be, float *logits, int32_t n, int32_t vocab,
              const struct vk_sample_params *params, int32_t *ret_ids);
int be_step_begin(struct vk_backend *be, const struct vk_batch *batch);
int be_step_end(struct vk_backend *be);
int be_import_tensor(struct vk_backend *be, const struct vk_import *im, void **ret_ref,
                     const void **ret_ptr, char *err, size_t err_len);
void be_release_tensor(struct vk_backend *be, void *ref);
int be_import_count(struct vk_backend *be);

int be_mem_info(struct vk_backend *be, uint64_t *ret_free, uint64_t *ret_total)
{
	struct ctx *c = C(be);
	size_t fr = 0, tot = 0;
	int rc = enter(c);

	if (rc < 0)
		return rc;
	rc = check(c, cudaMemGetInfo(&fr, &tot), "cudaMemGetInfo");
	if (rc < 0)
		return rc;
	*ret_free = (uint64_t)fr;
	*ret_total = (uint64_t)tot;
	return 0;
}

const struct vk_backend_ops cuda_ops = {
	VK_BACKEND_ABI,
	"cuda",
	be_destroy,
	be_alloc,
	be_free,
	be_upload,
	be_download,
	be_sync,
	be_probe,
	be_weight_load,
	be_weight_free,
	be_kv_new,
	be_kv_free,
	be_embed,
	be_rmsnorm,
	be_add_rmsnorm,
	be_matmul,
	be_rope,
	be_kv_store,
	be_attention,
	be_swiglu,
	be_get_rows,
	be_argmax,
	be_sample,
	be_step_begin,
	be_step_end,
	be_layernorm,
	be_activate,
	be_rope_2d,
	be_seg_attention,
	be_mem_info,
	be_import_tensor,
	be_release_tensor,
	be_import_count,
	be_weight_load_quant,
};

/* ---- clients' tensors: kernels/cuda/ipc.h's cache behind the table ---- */

int be_import_tensor(struct vk_backend *be, const struct vk_import *im, void **ret_ref,
                     const void **ret_ptr, char *err, size_t err_len)
{
	struct ctx *c = C(be);
	struct vk_ipc_map *m = NULL;
	void *p = NULL;
	int e;

	static_assert(VK_IMPORT_HANDLE_BYTES == VK_IPC_HANDLE_BYTES, "IPC handle size");
	if (!c->ipc) {
		snprintf(err, err_len, "no CUDA import: %s", c->ipc_err);
		return -ENOTSUP;
	}
	switch (im->kind) {
	case VK_IMPORT_CUDA_IPC:
		e = vk_ipc_open_legacy(c->ipc, im->handle, im->offset, im->bytes, &m, &p, err, err_len);
		break;
	case VK_IMPORT_CUDA_VMM:
		if (im->fd < 0) {
			snprintf(err, err_len, "VMM item without its descriptor");
			return -EBADF;
		}
		e = vk_ipc_open_fd(c->ipc, im->fd, im->alloc_bytes, im->offset, im->bytes, &m, &p, err,
		                   err_len);
		break;
	default:
		snprintf(err, err_len, "import kind %d unknown", (int)im->kind);
		return -ENOTSUP;
	}
	if (e < 0)
		return e;
	*ret_ref = m;
	*ret_ptr = p;
	return 0;
}

void be_release_tensor(struct vk_backend *be, void *ref)
{
	struct ctx *c = C(be);

	if (c->ipc && ref)
		vk_ipc_release(c->ipc, (struct vk_ipc_map *)ref);
}

int be_import_count(struct vk_backend *be)
{
	struct ctx *c = C(be);

	return c->ipc ? vk_ipc_cache_count(c->ipc) : 0;
}

void be_destroy(struct vk_backend *be)
{
	if (!be)
		return;
	struct ctx *c = C(be);
	if (c) {
		if (c->stream)
			cudaStreamSynchronize(c->stream);
		vk_ipc_cache_free(c->ipc);   /* the engine released every import before */
		for (int i = 0; i < MAX_GRAPHS; i++)
			graph_drop(&c->graphs[i]);
		vk_cuda_gemm_fini(&c->gemm);
		for (int i = 0; i < c->n_retired; i++)
			cudaFree(c->retired[i]);
		free(c->retired);
		cudaFree(c->act16.p);
		cudaFree(c->partial.p);
		cudaFree(c->stage.p);
		cudaFree(c->small.p);
		cudaFree(c->gemm_out.p);
		free(c->pos3_last);
		if (c->ids_host)
			cudaFreeHost(c->ids_host);
		if (c->ring_host)
			cudaFreeHost(c->ring_host);
		cudaFree(c->ring_dev);
		if (c->ev_compute)
			cudaEventDestroy(c->ev_compute);
		if (c->ev_copy)
			cudaEventDestroy(c->ev_copy);
		if (c->copy_stream)
			cudaStreamDestroy(c->copy_stream);
		if (c->stream)
			cudaStreamDestroy(c->stream);
		free(c->meta_build);
		free(c->meta_last);
		free(c);
	}
	free(be);
}

} /* namespace */

/* ---- public entry points -------------------------------------------------------------------- */

extern "C" int vk_cuda_backend_is(const struct vk_backend *be)
{
	return be && be->ops == &cuda_ops;
}

extern "C" int vk_cuda_backend_mem_info(struct vk_backend *be, size_t *ret_free,
                                        size_t *ret_total)
{
	if (!vk_cuda_backend_is(be) || !ret_free || !ret_total)
		return -EINVAL;
	struct ctx *c = C(be);
	int rc = enter(c);
	if (rc < 0)
		return rc;
	return check(c, cudaMemGetInfo(ret_free, ret_total), "cudaMemGetInfo");
}

extern "C" int vk_cuda_backend_lost(const struct vk_backend *be)
{
	return vk_cuda_backend_is(be) && ((const struct ctx *)be->ctx)->lost;
}

extern "C" int vk_cuda_backend_open(struct vk_backend **ret, char *err, size_t err_len)
{
	char dummy[8];
	if (!err) {
		err = dummy;
		err_len = sizeof(dummy);
	}
	int count = 0;
	cudaError_t e = cudaGetDeviceCount(&count);
	if (e != cudaSuccess || count <= 0) {
		snprintf(err, err_len, "no usable CUDA device (%s)",
		         e != cudaSuccess ? cudaGetErrorString(e) : "none found");
		(void)cudaGetLastError();
		return -ENODEV;
	}
	int dev = 0;
	const char *env = getenv("VLM_CUDA_DEVICE");
	if (env && *env) {
		char *end;
		long v = strtol(env, &end, 10);
		if (*end || v < 0 || v >= count) {
			snprintf(err, err_len, "VLM_CUDA_DEVICE=%s: %d device(s) present", env, count);
			return -ENODEV;
		}
		dev = (int)v;
	}
	cudaDeviceProp prop;
	e = cudaGetDeviceProperties(&prop, dev);
	if (e != cudaSuccess) {
		snprintf(err, err_len, "CUDA device %d: %s", dev, cudaGetErrorString(e));
		return -ENODEV;
	}
	if (prop.major < 8) {
		snprintf(err, err_len, "CUDA device %d (%s) has compute capability %d.%d; this build "
		         "needs 8.0 or newer", dev, prop.name, prop.major, prop.minor);
		return -ENODEV;
	}
	e = cudaSetDevice(dev);
	if (e == cudaSuccess)
		e = cudaFree(0);   /* creates the context now, so failures show here */
	if (e != cudaSuccess) {
		snprintf(err, err_len, "CUDA device %d (%s): cannot create a context: %s", dev,
		         prop.name, cudaGetErrorString(e));
		return -ENODEV;
	}

	struct vk_backend *be = (struct vk_backend *)calloc(1, sizeof(*be));
	struct ctx *c = (struct ctx *)calloc(1, sizeof(*c));
	if (!be || !c) {
		free(be);
		free(c);
		snprintf(err, err_len, "out of host memory");
		return -ENOMEM;
	}
	be->ops = &cuda_ops;
	be->ctx = c;
	c->be = be;
	c->device = dev;
	c->sm_count = prop.multiProcessorCount;
	env = getenv("VLM_CUDA_GRAPHS");
	c->graphs_enabled = !(env && env[0] == '0');
	c->split_max = INT32_MAX;   /* split by default: see the header comment */
	env = getenv("VLM_CUDA_GEMV");
	c->gemv = !(env && env[0] == '0');
	env = getenv("VLM_CUDA_GEMM_SPLIT_MAX");
	if (env && *env)
		c->split_max = atoi(env);
	env = getenv("VLM_CUDA_GEMM");
	if (env && !strcmp(env, "split"))
		c->split_max = INT32_MAX;
	else if (env && !strcmp(env, "single"))
		c->split_max = -1;
	int rc = -EIO;
	const char *what = "stream";
	if ((e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess ||
	    (e = cudaStreamCreateWithFlags(&c->copy_stream, cudaStreamNonBlocking)) != cudaSuccess)
		goto fail_cuda;
	what = "event";
	if ((e = cudaEventCreateWithFlags(&c->ev_compute, cudaEventDisableTiming)) != cudaSuccess ||
	    (e = cudaEventCreateWithFlags(&c->ev_copy, cudaEventDisableTiming)) != cudaSuccess)
		goto fail_cuda;
	what = "attention kernel setup";
	if ((e = vk_cuda_attn_init()) != cudaSuccess)
		goto fail_cuda;
	what = "pinned staging ring";
	c->ring_cap = RING_BYTES;
	if ((e = cudaHostAlloc((void **)&c->ring_host, c->ring_cap, cudaHostAllocDefault)) !=
	    cudaSuccess || (e = cudaMalloc((void **)&c->ring_dev, c->ring_cap)) != cudaSuccess)
		goto fail_cuda;
	rc = vk_cuda_gemm_init(&c->gemm, c->stream, err, err_len);
	if (rc < 0)
		goto fail;
	/* clients' GPU tensors are mapped, never copied; without the driver entry points they are
	 * refused per request with the reason (the backend itself works, so vlmd serves) */
	if (vk_ipc_cache_new(&c->ipc, c->ipc_err, sizeof(c->ipc_err)) < 0)
		c->ipc = NULL;
	*ret = be;
	return 0;

fail_cuda:
	rc = e == cudaErrorMemoryAllocation ? -ENOMEM : -EIO;
	snprintf(err, err_len, "CUDA device %d (%s): %s: %s", dev, prop.name, what,
	         cudaGetErrorString(e));
fail:
	be_destroy(be);
	return rc;
}

extern "C" int vk_cuda_reserve(struct vk_backend *be, int32_t max_tokens, int32_t max_dim,
                               int32_t n_heads, int32_t head_dim, int32_t max_context)
{
	if (!vk_cuda_backend_is(be))
		return -EINVAL;
	struct ctx *c = C(be);
	int rc = enter(c);
	if (rc < 0)
		return rc;
	if (max_tokens <= 0 || max_dim <= 0 || n_heads <= 0 || head_dim <= 0 || max_context <= 0)
		return fail(c, -EINVAL, "reserve: bad sizes");
	rc = ensure(c, &c->act16, (size_t)max_tokens * max_dim * 2, "GEMM input");
	if (rc < 0)
		return rc;
	/* the largest split-partial buffer over decode batches and single prefill chunks (the plan
	 * splits only when a step has few blocks, so this stays small) */
	int64_t worst = 0;
	for (int32_t nt = 1; nt <= max_tokens; nt *= 2) {
		for (int kind = 0; kind < 2; kind++) {
			struct vk_cuda_attn_plan p;
			const int32_t ns = kind ? 1 : nt, mn = kind ? nt : 1;
			vk_cuda_attn_plan_make(&p, ns, mn, max_context, 1, 1, c->sm_count);
			int64_t f = vk_cuda_attn_scratch_floats(&p, nt, n_heads, head_dim);
			if (f > worst)
				worst = f;
		}
	}
	if (worst > 0)
		rc = ensure(c, &c->partial, (size_t)worst * sizeof(float), "attention partials");
	if (rc == 0)
		rc = ids_ensure(c, max_tokens);
	return rc;
}

extern "C" int vk_cuda_graph_begin(struct vk_backend *be, const struct vk_batch *batch)
{
	if (!vk_cuda_backend_is(be))
		return -EINVAL;
	struct ctx *c = C(be);
	int rc = enter(c);
	if (rc < 0)
		return rc;
	if (!c->graphs_enabled)
		return fail(c, -ENOSYS, "CUDA graphs disabled (VLM_CUDA_GRAPHS=0)");
	if (c->mode != MODE_EAGER)
		return fail(c, -EINVAL, "graph_begin inside a graph section");
	if (!batch || batch->n_tokens != batch->n_seqs || batch->n_subs != 0)
		return fail(c, -EINVAL, "graphs are for decode steps (one row per sequence)");
	int32_t mb = 1;
	for (int32_t i = 0; i < batch->n_seqs; i++)
		if (batch->seqs[i].n_blocks > mb)
			mb = batch->seqs[i].n_blocks;
	int32_t cap = 1;
	while (cap < mb)
		cap *= 2;
	struct graph *g = NULL, *free_slot = NULL;
	for (int i = 0; i < MAX_GRAPHS; i++) {
		struct graph *x = &c->graphs[i];
		if (x->used && x->n_seqs == batch->n_seqs && x->blocks_cap == cap)
			g = x;
		else if (!x->used && !free_slot)
			free_slot = x;
	}
	if (g && !g->valid) {
		graph_drop(g);
		free_slot = g;
		g = NULL;
	}
	size_t words;
	rc = meta_serialise(c, batch, cap, &words);
	if (rc < 0)
		return rc;
	const size_t meta_bytes = words * sizeof(int32_t);
	if (!g) {
		if (!free_slot)
			return fail(c, -ENOSPC, "graph table full (%d graphs)", MAX_GRAPHS);
		g = free_slot;
		memset(g, 0, sizeof(*g));
		g->used = 1;
		g->n_seqs = batch->n_seqs;
		g->blocks_cap = cap;
		g->cap = ((meta_bytes + 255) & ~(size_t)255) + 64 * 1024;
		if (cudaHostAlloc((void **)&g->host, g->cap, cudaHostAllocDefault) != cudaSuccess ||
		    cudaMalloc((void **)&g->dev, g->cap) != cudaSuccess ||
		    cudaEventCreateWithFlags(&g->done, cudaEventDisableTiming) != cudaSuccess) {
			(void)cudaGetLastError();
			graph_drop(g);
			return fail(c, -ENOMEM, "graph staging buffers");
		}
	} else {
		/* the previous replay's copies read g->host */
		rc = check(c, cudaEventSynchronize(g->done), "graph replay wait");
		if (rc < 0)
			return rc;
	}
	c->cur = g;
	c->graph_batch = batch;
	c->graph_failed = 0;
	g->off = 0;
	g->pos_log = 0;
	c->mode = g->valid ? MODE_REPLAY : MODE_CAPTURE;
	if (c->mode == MODE_CAPTURE) {
		/* relaxed: scratch may grow (cudaMalloc) while capturing */
		cudaError_t e = cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeRelaxed);
		if (e != cudaSuccess) {
			c->mode = MODE_EAGER;
			graph_drop(g);
			return check(c, e, "graph capture");
		}
	}
	const void *dev;
	rc = stage(c, c->meta_build, meta_bytes, &dev);
	if (rc < 0) {
		(void)vk_cuda_graph_end(be);
		return rc;
	}
	meta_view_set(c, (const int32_t *)dev, c->meta_build);
	c->meta_gen++;
	return c->mode == MODE_REPLAY ? 1 : 0;
}

extern "C" int vk_cuda_graph_end(struct vk_backend *be)
{
	if (!vk_cuda_backend_is(be))
		return -EINVAL;
	struct ctx *c = C(be);
	if (c->mode == MODE_EAGER)
		return fail(c, -EINVAL, "graph_end without graph_begin");
	struct graph *g = c->cur;
	const enum mode m = c->mode;
	int rc = 0;
	c->mode = MODE_EAGER;
	c->cur = NULL;
	c->graph_batch = NULL;
	c->meta_last_words = 0;   /* mv points into the graph's buffer now */
	c->pos3_words = 0;
	if (m == MODE_CAPTURE) {
		cudaGraph_t graph = NULL;
		cudaError_t e = cudaStreamEndCapture(c->stream, &graph);
		if (e == cudaSuccess && !c->graph_failed)
			e = cudaGraphInstantiate(&g->exec, graph, 0);
		if (graph)
			cudaGraphDestroy(graph);
		if (e != cudaSuccess || c->graph_failed) {
			graph_drop(g);
			if (e != cudaSuccess)
				return check(c, e, "graph capture");
			return -ECANCELED;
		}
		g->valid = 1;
	} else if (c->graph_failed || g->pos_log != g->n_log) {
		graph_drop(g);
		if (!c->graph_failed)
			snprintf(be->error, sizeof(be->error), "graph replay: %d of %d ops called",
			         g->pos_log, g->n_log);
		return -ECANCELED;
	}
	rc = check(c, cudaGraphLaunch(g->exec, c->stream), "graph launch");
	if (rc == 0)
		rc = check(c, cudaEventRecord(g->done, c->stream), "graph launch");
	return rc;
}

extern "C" int vk_cuda_sample(struct vk_backend *be, float *logits, int32_t n, int32_t vocab,
                              const struct vk_sample_params *params, int32_t *ret_ids)
{
	if (!vk_cuda_backend_is(be))
		return -EINVAL;
	struct ctx *c = C(be);
	int rc = enter(c);
	if (rc < 0)
		return rc;
	if (c->mode != MODE_EAGER)
		return fail(c, -EINVAL, "sample inside a graph section (call it after graph_end)");
	if (n < 0 || vocab <= 0 || (n > 0 && !params))
		return fail(c, -EINVAL, "sample: bad arguments");
	if (n == 0)
		return 0;
	/* per-row parameters and the concatenated (token, count) histories, one staged upload */
	size_t pairs = 0;
	for (int32_t r = 0; r < n; r++) {
		if (params[r].n_history < 0 || (params[r].n_history > 0 && !params[r].history))
			return fail(c, -EINVAL, "sample: row %d history malformed", r);
		for (int32_t i = 0; i < params[r].n_history; i++)
			if (params[r].history[2 * i] < 0 || params[r].history[2 * i] >= vocab)
				return fail(c, -EINVAL, "sample: row %d history token %d outside vocab", r,
				            params[r].history[2 * i]);
		pairs += (size_t)params[r].n_history;
	}
	const size_t bytes = (size_t)n * sizeof(struct vk_cuda_sample_row) + pairs * 2 * sizeof(int32_t);
	char *buf = (char *)malloc(bytes);
	if (!buf)
		return fail(c, -ENOMEM, "sample: out of host memory");
	struct vk_cuda_sample_row *rows = (struct vk_cuda_sample_row *)buf;
	int32_t *hist = (int32_t *)(buf + (size_t)n * sizeof(*rows));
	size_t off = 0;
	for (int32_t r = 0; r < n; r++) {
		vk_cuda_sample_row_fill(&rows[r], &params[r], (int32_t)off);
		if (params[r].n_history > 0) /* history may be NULL when empty */
			memcpy(hist + 2 * off, params[r].history, (size_t)params[r].n_history * 2 * sizeof(int32_t));
		off += (size_t)params[r].n_history;
	}
	const void *dev;
	rc = stage(c, buf, bytes, &dev);
	free(buf);
	if (rc == 0)
		rc = ids_ensure(c, n);
	if (rc < 0)
		return rc;
	const struct vk_cuda_sample_row *drows = (const struct vk_cuda_sample_row *)dev;
	const int32_t *dhist = (const int32_t *)((const char *)dev + (size_t)n * sizeof(*rows));
	rc = check(c, vk_cuda_sample_launch(c->stream, logits, n, vocab, drows, dhist,
	                                    (int32_t *)c->small.p), "sample");
	if (rc == 0)
		rc = check(c, cudaMemcpyAsync(c->ids_host, c->small.p, (size_t)n * sizeof(int32_t),
		                              cudaMemcpyDeviceToHost, c->stream), "sample");
	if (rc == 0)
		rc = check(c, cudaStreamSynchronize(c->stream), "sample");
	if (rc == 0)
		memcpy(ret_ids, c->ids_host, (size_t)n * sizeof(int32_t));
	return rc;
}

namespace {

int be_sample(struct vk_backend *be, float *logits, int32_t n, int32_t vocab,
              const struct vk_sample_params *params, int32_t *ret_ids)
{
	return vk_cuda_sample(be, logits, n, vocab, params, ret_ids);
}

int be_step_begin(struct vk_backend *be, const struct vk_batch *batch)
{
	/* only decode steps are graphed; anything else runs eagerly without an error text */
	if (!batch || batch->n_tokens != batch->n_seqs || batch->n_subs != 0 ||
	    !C(be)->graphs_enabled)
		return -ENOSYS;
	/* backend.h: >= 0 means "in the section"; callers test == 0, so replay (1) maps to 0 */
	const int rc = vk_cuda_graph_begin(be, batch);
	return rc > 0 ? 0 : rc;
}

int be_step_end(struct vk_backend *be)
{
	return vk_cuda_graph_end(be);
}

} /* namespace */
