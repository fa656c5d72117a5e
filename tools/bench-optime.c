/*
 * tools/bench-optime.c — see bench-optime.h.
 */
#include "tools/bench-optime.h"

#include <time.h>

static const struct vk_backend_ops *real;   /* the backend's own table while attached */
static struct vk_backend_ops timed;
static struct vb_op_stat stats[VB_OP_N];
static int counting;
static int32_t shape_h, shape_i, shape_v;
static int head_next;   /* get_rows ran since the embedding: the next matmul is the head */

static const char *const names[VB_OP_N] = {
	"embed", "norms", "matmul_q_o", "matmul_k_v", "matmul_gate_up", "matmul_down",
	"matmul_head", "matmul_other", "rope", "kv_store", "attention", "swiglu", "get_rows",
	"argmax", "sample",
};

const char *vb_optime_name(enum vb_op op)
{
	return op >= 0 && op < VB_OP_N ? names[op] : "?";
}

static double clock_s(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct mark { double wall, cpu; };

static struct mark begin(void)
{
	struct mark m = { 0, 0 };
	if (counting) {
		m.cpu = clock_s(CLOCK_THREAD_CPUTIME_ID);
		m.wall = clock_s(CLOCK_MONOTONIC);
	}
	return m;
}

static void end(enum vb_op op, struct mark m, double bytes)
{
	if (!counting)
		return;
	double w = clock_s(CLOCK_MONOTONIC), c = clock_s(CLOCK_THREAD_CPUTIME_ID);
	stats[op].wall_s += w - m.wall;
	stats[op].cpu_s += c - m.cpu;
	stats[op].bytes += bytes;
	stats[op].calls++;
}

static enum vb_op matmul_kind(const struct vk_weight *w)
{
	if (head_next && w->rows == shape_v)
		return VB_OP_MM_HEAD;
	if (w->rows == shape_i && w->cols == shape_h)
		return VB_OP_MM_GATE_UP;
	if (w->cols == shape_i)
		return VB_OP_MM_DOWN;
	if (w->rows == shape_h && w->cols == shape_h)
		return VB_OP_MM_QO;
	if (w->cols == shape_h && w->rows < shape_h)
		return VB_OP_MM_KV;
	return VB_OP_MM_OTHER;
}

static double weight_bytes(const struct vk_weight *w)
{
	double n = (double)w->rows * (double)w->cols;
	if (w->dtype == VK_DTYPE_Q8)
		return n;
	if (w->dtype == VK_DTYPE_Q4)
		return n / 2;
	return n * (double)vk_dtype_size(w->dtype);
}

static int t_embed(struct vk_backend *be, const struct vk_weight *table,
                   const struct vk_batch *batch, float *x)
{
	struct mark m = begin();
	head_next = 0;
	int rc = real->embed(be, table, batch, x);
	end(VB_OP_EMBED, m, 0);
	return rc;
}

static int t_rmsnorm(struct vk_backend *be, const float *x, const struct vk_weight *w, float eps,
                     int32_t n, int32_t dim, float *out)
{
	struct mark m = begin();
	int rc = real->rmsnorm(be, x, w, eps, n, dim, out);
	end(VB_OP_NORM, m, 0);
	return rc;
}

static int t_add_rmsnorm(struct vk_backend *be, float *residual, const float *delta,
                         const struct vk_weight *w, float eps, int32_t n, int32_t dim, float *out)
{
	struct mark m = begin();
	int rc = real->add_rmsnorm(be, residual, delta, w, eps, n, dim, out);
	end(VB_OP_NORM, m, 0);
	return rc;
}

static int t_matmul(struct vk_backend *be, const float *x, const struct vk_weight *w,
                    const struct vk_weight *bias, int32_t n, float *out)
{
	struct mark m = begin();
	int rc = real->matmul(be, x, w, bias, n, out);
	end(matmul_kind(w), m, weight_bytes(w));
	return rc;
}

static int t_rope(struct vk_backend *be, float *q, float *k, const struct vk_batch *batch,
                  int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, const struct vk_rope *rope)
{
	struct mark m = begin();
	int rc = real->rope(be, q, k, batch, n_heads, n_kv_heads, head_dim, rope);
	end(VB_OP_ROPE, m, 0);
	return rc;
}

static int t_kv_store(struct vk_backend *be, struct vk_kv *kv, int32_t layer, const float *k,
                      const float *v, const struct vk_batch *batch)
{
	struct mark m = begin();
	int rc = real->kv_store(be, kv, layer, k, v, batch);
	end(VB_OP_KV_STORE, m, 0);
	return rc;
}

static int t_attention(struct vk_backend *be, struct vk_kv *kv, int32_t layer, const float *q,
                       const struct vk_batch *batch, int32_t n_heads, float *out)
{
	struct mark m = begin();
	int rc = real->attention(be, kv, layer, q, batch, n_heads, out);
	end(VB_OP_ATTENTION, m, 0);
	return rc;
}

static int t_swiglu(struct vk_backend *be, const float *gate, const float *up, int32_t n,
                    int32_t dim, float *out)
{
	struct mark m = begin();
	int rc = real->swiglu(be, gate, up, n, dim, out);
	end(VB_OP_SWIGLU, m, 0);
	return rc;
}

static int t_get_rows(struct vk_backend *be, const float *x, const int32_t *rows, int32_t n,
                      int32_t dim, float *out)
{
	struct mark m = begin();
	head_next = 1;
	int rc = real->get_rows(be, x, rows, n, dim, out);
	end(VB_OP_GET_ROWS, m, 0);
	return rc;
}

static int t_argmax(struct vk_backend *be, const float *logits, int32_t n, int32_t vocab,
                    int32_t *ret_ids)
{
	struct mark m = begin();
	int rc = real->argmax(be, logits, n, vocab, ret_ids);
	end(VB_OP_ARGMAX, m, 0);
	return rc;
}

static int t_sample(struct vk_backend *be, float *logits, int32_t n, int32_t vocab,
                    const struct vk_sample_params *params, int32_t *ret_ids)
{
	struct mark m = begin();
	int rc = real->sample(be, logits, n, vocab, params, ret_ids);
	end(VB_OP_SAMPLE, m, 0);
	return rc;
}

int vb_optime_attach(struct vk_backend *be, int32_t hidden, int32_t intermediate, int32_t vocab)
{
	if (real)
		return -1;   /* one backend per process */
	real = be->ops;
	timed = *real;
	shape_h = hidden;
	shape_i = intermediate;
	shape_v = vocab;
	timed.embed = t_embed;
	timed.rmsnorm = t_rmsnorm;
	timed.add_rmsnorm = t_add_rmsnorm;
	timed.matmul = t_matmul;
	timed.rope = t_rope;
	timed.kv_store = t_kv_store;
	timed.attention = t_attention;
	timed.swiglu = t_swiglu;
	timed.get_rows = t_get_rows;
	timed.argmax = t_argmax;
	if (real->sample)
		timed.sample = t_sample;
	be->ops = &timed;
	vb_optime_reset();
	return 0;
}

void vb_optime_detach(struct vk_backend *be)
{
	if (real && be->ops == &timed)
		be->ops = real;
	real = NULL;
	counting = 0;
}

void vb_optime_count(int on)
{
	counting = on;
}

void vb_optime_reset(void)
{
	for (int i = 0; i < VB_OP_N; i++)
		stats[i] = (struct vb_op_stat){ 0, 0, 0, 0 };
}

const struct vb_op_stat *vb_optime_stats(void)
{
	return stats;
}
