/*
 * tests/cuda/test-cuda-ops.c — every CUDA backend op against an independent scalar reference.
 *
 * The references below are written from the interface contract (kernels/backend.h) and the HF
 * Qwen2 formulas, in double precision, not from the CUDA code. Inputs are fresh random values of
 * several shapes; outputs are poisoned with NaN before each op so unwritten elements fail.
 * Tolerances are per dtype: exact for gathers and conversions, fp32 accumulation bounds for
 * reductions, and the documented bf16 rounding of GEMM inputs for matmul.
 * Check runs in no-fork mode (CUDA does not survive fork); exit 77 when no GPU is usable.
 * Built twice: against the real backend (GPU machines) and, as cuda-ops-emu, against the same
 * backend compiled for tests/cuda/emu (fake runtime, kernels on CPU threads) so CI runs it too.
 * Also covered: validation errors leave the context usable, the sticky-error path (in a child
 * process that makes a kernel fault), decode-step CUDA graphs (replay equals eager), sampling.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_backend.h"

extern char **environ;

static struct vk_backend *be;
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng_next(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static float frand(void)   /* uniform [-1, 1) */
{
	return (float)((double)(rng_next() >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

static int irand(int n)
{
	return (int)(rng_next() % (uint64_t)n);
}

static uint16_t f2bf(float f)   /* round to nearest even */
{
	uint32_t u;
	memcpy(&u, &f, 4);
	u += 0x7fff + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

static float bf2f(uint16_t b)
{
	uint32_t u = (uint32_t)b << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static float h2f(uint16_t h)   /* normal numbers and zero only (the test generates those) */
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
	uint32_t u = exp ? sign | ((exp + 112) << 23) | (man << 13) : sign;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static uint16_t hrand(void)   /* a random normal fp16 of magnitude in [2^-4, 4) */
{
	uint16_t exp = (uint16_t)(11 + irand(6)), man = (uint16_t)irand(1024);
	return (uint16_t)((irand(2) ? 0x8000 : 0) | (exp << 10) | man);
}

static void *dev_from(const void *host, size_t bytes)
{
	void *d = NULL;
	ck_assert_int_eq(be->ops->alloc(be, bytes, &d), 0);
	ck_assert_int_eq(be->ops->upload(be, d, host, bytes), 0);
	return d;
}

static void *dev_poison(size_t bytes)
{
	unsigned char *h = malloc(bytes);
	ck_assert_ptr_nonnull(h);
	memset(h, 0xff, bytes);   /* NaN in fp32 */
	void *d = dev_from(h, bytes);
	free(h);
	return d;
}

static void down(void *host, const void *dev, size_t bytes)
{
	ck_assert_int_eq(be->ops->download(be, host, dev, bytes), 0);
}

static float *fdown(const void *dev, size_t n)
{
	float *h = malloc(n * sizeof(float));
	ck_assert_ptr_nonnull(h);
	down(h, dev, n * sizeof(float));
	return h;
}

static float *frand_n(size_t n, float scale)
{
	float *h = malloc(n * sizeof(float));
	ck_assert_ptr_nonnull(h);
	for (size_t i = 0; i < n; i++)
		h[i] = frand() * scale;
	return h;
}

/* |got - ref| <= atol + rtol * |ref| element-wise; NaN (poison) always fails. */
static void expect_close(const float *got, const double *ref, size_t n, double atol, double rtol,
                         const char *what)
{
	size_t bad = 0, first = n;
	for (size_t i = 0; i < n; i++) {
		const double d = fabs((double)got[i] - ref[i]);
		if (isnan(got[i]) || !(d <= atol + rtol * fabs(ref[i]))) {
			if (first == n)
				first = i;
			bad++;
		}
	}
	ck_assert_msg(bad == 0, "%s: %zu of %zu elements off; first at %zu: got %.9g want %.9g", what,
	              bad, n, first, first < n ? (double)got[first] : 0.0,
	              first < n ? ref[first] : 0.0);
}

static struct vk_weight load_weight(const void *host, enum vk_dtype dt, int64_t rows, int64_t cols)
{
	struct vk_weight w;
	int rc = be->ops->weight_load(be, host, dt, rows, cols, &w);
	ck_assert_msg(rc == 0, "weight_load: %d %s", rc, be->error);
	return w;
}

/* ---- embed + substitution ------------------------------------------------------------------ */

START_TEST(test_embed)
{
	static const int hiddens[] = { 1536, 72, 13 };
	const int hidden = hiddens[_i];
	const int vocab = 300, nt = 40;
	uint16_t *table = malloc((size_t)vocab * hidden * 2);
	for (int i = 0; i < vocab * hidden; i++)
		table[i] = f2bf(frand());
	struct vk_weight tw = load_weight(table, VK_DTYPE_BF16, vocab, hidden);

	int32_t tokens[40], pos[3 * 40];
	for (int t = 0; t < nt; t++) {
		tokens[t] = irand(vocab);
		pos[t] = pos[nt + t] = pos[2 * nt + t] = t;
	}
	/* source A: device fp32 rows 3..10; B: host bf16 rows 20..24 with padding between rows;
	 * C: host fp16 rows 30..31 */
	float *a = frand_n((size_t)8 * hidden, 2.0f);
	void *da = dev_from(a, (size_t)8 * hidden * 4);
	const int bstride = hidden + 5;
	uint16_t *b = malloc((size_t)5 * bstride * 2);
	for (int i = 0; i < 5 * bstride; i++)
		b[i] = f2bf(frand());
	uint16_t *c = malloc((size_t)2 * hidden * 2);
	for (int i = 0; i < 2 * hidden; i++)
		c[i] = hrand();
	struct vk_row_source subs[3] = {
		{ 3, 8, VK_DTYPE_F32, 1, (int64_t)hidden * 4, da },
		{ 20, 5, VK_DTYPE_BF16, 0, (int64_t)bstride * 2, b },
		{ 30, 2, VK_DTYPE_F16, 0, (int64_t)hidden * 2, c },
	};
	struct vk_seq seq = { 0, nt, 0, 0, NULL };
	struct vk_batch batch = { nt, 1, tokens, pos, &seq, 3, subs };

	float *dx = dev_poison((size_t)nt * hidden * 4);
	int rc = be->ops->embed(be, &tw, &batch, dx);
	ck_assert_msg(rc == 0, "embed: %d %s", rc, be->error);
	float *x = fdown(dx, (size_t)nt * hidden);
	double *ref = malloc((size_t)nt * hidden * sizeof(double));
	for (int t = 0; t < nt; t++)
		for (int i = 0; i < hidden; i++) {
			double v = bf2f(table[(size_t)tokens[t] * hidden + i]);
			if (t >= 3 && t < 11)
				v = a[(size_t)(t - 3) * hidden + i];
			else if (t >= 20 && t < 25)
				v = bf2f(b[(size_t)(t - 20) * bstride + i]);
			else if (t >= 30 && t < 32)
				v = h2f(c[(size_t)(t - 30) * hidden + i]);
			ref[(size_t)t * hidden + i] = v;
		}
	expect_close(x, ref, (size_t)nt * hidden, 0.0, 0.0, "embed");

	/* a substituted row's token id is never looked up (the interface allows any value) */
	tokens[5] = vocab + 1000;
	ck_assert_int_eq(be->ops->embed(be, &tw, &batch, dx), 0);
	tokens[5] = 0;
	/* bad inputs: clear errors, nothing launched, context still usable */
	tokens[12] = vocab;   /* a text row */
	ck_assert_int_eq(be->ops->embed(be, &tw, &batch, dx), -EINVAL);
	ck_assert_ptr_nonnull(strstr(be->error, "vocabulary"));
	tokens[12] = 0;
	subs[1].row = 9;   /* overlaps source A */
	ck_assert_int_eq(be->ops->embed(be, &tw, &batch, dx), -EINVAL);
	subs[1].row = 38;  /* runs past the step */
	ck_assert_int_eq(be->ops->embed(be, &tw, &batch, dx), -EINVAL);
	subs[1].row = 20;
	subs[1].row_stride = 2;   /* shorter than a row */
	ck_assert_int_eq(be->ops->embed(be, &tw, &batch, dx), -EINVAL);
	subs[1].row_stride = (int64_t)bstride * 2;
	ck_assert_int_eq(be->ops->embed(be, &tw, &batch, dx), 0);
	ck_assert_int_eq(be->ops->sync(be), 0);

	be->ops->free(be, dx);
	be->ops->free(be, da);
	be->ops->weight_free(be, &tw);
	free(x);
	free(ref);
	free(a);
	free(b);
	free(c);
	free(table);
}
END_TEST

/* ---- RMSNorm ------------------------------------------------------------------------------- */

START_TEST(test_rmsnorm)
{
	static const int shapes[][2] = { { 1, 1536 }, { 7, 3584 }, { 33, 64 }, { 3, 100 } };
	const int n = shapes[_i][0], dim = shapes[_i][1];
	const float eps = 1e-6f;
	const size_t cnt = (size_t)n * dim;
	float *x = frand_n(cnt, 3.0f), *delta = frand_n(cnt, 1.0f), *w = frand_n((size_t)dim, 1.0f);
	uint16_t *wb = malloc((size_t)dim * 2);
	for (int i = 0; i < dim; i++) {
		wb[i] = f2bf(w[i]);
		w[i] = bf2f(wb[i]);
	}
	struct vk_weight vw = load_weight(wb, VK_DTYPE_BF16, 1, dim);
	float *dx = dev_from(x, cnt * 4), *dd = dev_from(delta, cnt * 4);
	float *dout = dev_poison(cnt * 4);
	double *ref = malloc(cnt * sizeof(double)), *rres = malloc(cnt * sizeof(double));

	ck_assert_int_eq(be->ops->rmsnorm(be, dx, &vw, eps, n, dim, dout), 0);
	float *out = fdown(dout, cnt);
	for (int r = 0; r < n; r++) {
		double ss = 0;
		for (int i = 0; i < dim; i++)
			ss += (double)x[(size_t)r * dim + i] * x[(size_t)r * dim + i];
		const double inv = 1.0 / sqrt(ss / dim + eps);
		for (int i = 0; i < dim; i++)
			ref[(size_t)r * dim + i] = x[(size_t)r * dim + i] * inv * w[i];
	}
	expect_close(out, ref, cnt, 1e-6, 1e-5, "rmsnorm");
	free(out);

	/* in place */
	ck_assert_int_eq(be->ops->rmsnorm(be, dx, &vw, eps, n, dim, dx), 0);
	out = fdown(dx, cnt);
	expect_close(out, ref, cnt, 1e-6, 1e-5, "rmsnorm in place");
	free(out);

	/* fused residual: residual = x + delta; out = norm(residual) */
	be->ops->free(be, dx);
	dx = dev_from(x, cnt * 4);
	be->ops->free(be, dout);
	dout = dev_poison(cnt * 4);
	ck_assert_int_eq(be->ops->add_rmsnorm(be, dx, dd, &vw, eps, n, dim, dout), 0);
	out = fdown(dout, cnt);
	float *res = fdown(dx, cnt);
	for (int r = 0; r < n; r++) {
		double ss = 0;
		for (int i = 0; i < dim; i++) {
			const size_t k = (size_t)r * dim + i;
			rres[k] = (double)(x[k] + delta[k]);   /* fp32 add, as the interface defines */
			ss += rres[k] * rres[k];
		}
		const double inv = 1.0 / sqrt(ss / dim + eps);
		for (int i = 0; i < dim; i++)
			ref[(size_t)r * dim + i] = rres[(size_t)r * dim + i] * inv * w[i];
	}
	expect_close(res, rres, cnt, 0.0, 0.0, "add_rmsnorm residual");
	expect_close(out, ref, cnt, 1e-6, 1e-5, "add_rmsnorm");

	/* weight of the wrong size */
	ck_assert_int_eq(be->ops->rmsnorm(be, dx, &vw, eps, n, dim + 1, dout), -EINVAL);

	be->ops->free(be, dx);
	be->ops->free(be, dd);
	be->ops->free(be, dout);
	be->ops->weight_free(be, &vw);
	free(x);
	free(delta);
	free(w);
	free(wb);
	free(out);
	free(res);
	free(ref);
	free(rres);
}
END_TEST

/* ---- matmul -------------------------------------------------------------------------------- */

START_TEST(test_matmul)
{
	/* n, k, m, dtype, bias */
	static const int cases[][5] = {
		{ 1, 1536, 256, VK_DTYPE_BF16, 1 }, { 5, 1536, 2048, VK_DTYPE_BF16, 0 },
		{ 64, 256, 8960, VK_DTYPE_BF16, 1 }, { 3, 100, 37, VK_DTYPE_F32, 1 },
		{ 17, 128, 96, VK_DTYPE_F16, 0 }, { 130, 896, 4864, VK_DTYPE_BF16, 1 },
	};
	const int n = cases[_i][0], k = cases[_i][1], m = cases[_i][2], dt = cases[_i][3];
	const int has_bias = cases[_i][4];
	float *x = frand_n((size_t)n * k, 2.0f), *wf = frand_n((size_t)m * k, 0.1f);
	float *bias = frand_n((size_t)m, 1.0f);
	void *wh = malloc((size_t)m * k * 4);
	for (size_t i = 0; i < (size_t)m * k; i++) {
		if (dt == VK_DTYPE_BF16) {
			((uint16_t *)wh)[i] = f2bf(wf[i]);
			wf[i] = bf2f(((uint16_t *)wh)[i]);
		} else if (dt == VK_DTYPE_F16) {
			((uint16_t *)wh)[i] = hrand();
			wf[i] = h2f(((uint16_t *)wh)[i]);
		} else {
			((float *)wh)[i] = wf[i];
		}
	}
	struct vk_weight w = load_weight(wh, dt, m, k);
	struct vk_weight bw = load_weight(bias, VK_DTYPE_F32, 1, m);
	float *dx = dev_from(x, (size_t)n * k * 4), *dout = dev_poison((size_t)n * m * 4);
	int rc = be->ops->matmul(be, dx, &w, has_bias ? &bw : NULL, n, dout);
	ck_assert_msg(rc == 0, "matmul: %d %s", rc, be->error);
	float *out = fdown(dout, (size_t)n * m);
	/* reference: exact products, double accumulation, bound relative to sum |x w| (fp32
	 * accumulation). The documented GEMM input: x kept (GEMV for <= 8 rows, split hi + lo
	 * above); only VLM_CUDA_GEMM=single rounds it to bf16 once. */
	double *ref = malloc((size_t)n * m * sizeof(double));
	size_t bad = 0;
	for (int r = 0; r < n; r++)
		for (int o = 0; o < m; o++) {
			double s = 0, mag = 0;
			for (int i = 0; i < k; i++) {
				float xv = x[(size_t)r * k + i];
				if (dt == VK_DTYPE_BF16 && getenv("VLM_CUDA_GEMM") &&
				    !strcmp(getenv("VLM_CUDA_GEMM"), "single"))
					xv = bf2f(f2bf(xv));
				const double p = (double)xv * wf[(size_t)o * k + i];
				s += p;
				mag += fabs(p);
			}
			if (has_bias)
				s += bias[o];
			ref[(size_t)r * m + o] = s;
			const double tol = (dt == VK_DTYPE_F16 ? 1e-3 : 1e-4) * mag + 1e-5;
			const float g = out[(size_t)r * m + o];
			if (isnan(g) || fabs(g - s) > tol)
				bad++;
		}
	ck_assert_msg(bad == 0, "matmul case %d: %zu of %d elements outside the bound", _i, bad,
	              n * m);
	/* bias of the wrong length */
	struct vk_weight bw2 = load_weight(bias, VK_DTYPE_F32, 1, m - 1 > 0 ? m - 1 : 1);
	ck_assert_int_eq(be->ops->matmul(be, dx, &w, &bw2, n, dout), -EINVAL);
	be->ops->weight_free(be, &bw2);

	be->ops->free(be, dx);
	be->ops->free(be, dout);
	be->ops->weight_free(be, &w);
	be->ops->weight_free(be, &bw);
	free(x);
	free(wf);
	free(wh);
	free(bias);
	free(out);
	free(ref);
}
END_TEST

/* ---- RoPE / M-RoPE ------------------------------------------------------------------------- */

START_TEST(test_rope)
{
	/* heads, kv heads, head_dim, sections */
	static const int cases[][6] = {
		{ 12, 2, 128, 16, 24, 24 }, { 14, 2, 64, 32, 0, 0 }, { 4, 4, 128, 64, 0, 0 },
	};
	const int nh = cases[_i][0], nkv = cases[_i][1], hd = cases[_i][2];
	const struct vk_rope rope = { 1000000.0f, { cases[_i][3], cases[_i][4], cases[_i][5] } };
	const int nt = 9, half = hd / 2;
	int32_t tokens[9] = { 0 }, pos[27];
	for (int t = 0; t < nt; t++) {
		pos[t] = 5 + irand(5000);
		pos[nt + t] = irand(64);
		pos[2 * nt + t] = irand(64);
	}
	struct vk_seq seq = { 0, nt, 0, 0, NULL };
	struct vk_batch batch = { nt, 1, tokens, pos, &seq, 0, NULL };
	const size_t qn = (size_t)nt * nh * hd, kn = (size_t)nt * nkv * hd;
	float *q = frand_n(qn, 1.0f), *k = frand_n(kn, 1.0f);
	float *dq = dev_from(q, qn * 4), *dk = dev_from(k, kn * 4);
	int rc = be->ops->rope(be, dq, dk, &batch, nh, nkv, hd, &rope);
	ck_assert_msg(rc == 0, "rope: %d %s", rc, be->error);
	float *gq = fdown(dq, qn), *gk = fdown(dk, kn);
	double *rq = malloc(qn * sizeof(double)), *rk = malloc(kn * sizeof(double));
	/* inv_freq = 1 / theta^(2i/d) rounded once to fp32 (as the CPU backend), angle = the fp32
	 * product pos * inv_freq (as HF), rotate-half */
	for (int pass = 0; pass < 2; pass++) {
		const int heads = pass ? nkv : nh;
		const float *src = pass ? k : q;
		double *dst = pass ? rk : rq;
		for (int t = 0; t < nt; t++)
			for (int h = 0; h < heads; h++)
				for (int i = 0; i < half; i++) {
					const int axis = i < rope.section[0] ? 0 :
					                 i < rope.section[0] + rope.section[1] ? 1 : 2;
					const float inv = (float)(1.0 / pow(1e6, (double)(2 * i) / hd));
					const float ang = (float)pos[axis * nt + t] * inv;
					const double cs = cos((double)ang), sn = sin((double)ang);
					const size_t b0 = ((size_t)t * heads + h) * hd;
					const double a = src[b0 + i], bb = src[b0 + i + half];
					dst[b0 + i] = a * cs - bb * sn;
					dst[b0 + i + half] = bb * cs + a * sn;
				}
	}
	expect_close(gq, rq, qn, 2e-6, 1e-5, "rope q");
	expect_close(gk, rk, kn, 2e-6, 1e-5, "rope k");
	/* sections that do not add up to head_dim / 2 */
	const struct vk_rope bad = { 1e6f, { 1, 2, 3 } };
	ck_assert_int_eq(be->ops->rope(be, dq, dk, &batch, nh, nkv, hd, &bad), -EINVAL);
	be->ops->free(be, dq);
	be->ops->free(be, dk);
	free(q);
	free(k);
	free(gq);
	free(gk);
	free(rq);
	free(rk);
}
END_TEST

/* ---- paged KV store + attention ------------------------------------------------------------ */

struct attn_case {
	int nh, nkv, hd, dtype, block;
	int n_seqs;
	int past[4], n[4];
};

static float kv_round(float v, int dtype)
{
	return dtype == VK_DTYPE_BF16 ? bf2f(f2bf(v)) : v;
}

START_TEST(test_attention)
{
	static const struct attn_case cases[] = {
		/* decode batch incl. a long context (split-K), a prefill chunk after history */
		{ 12, 2, 128, VK_DTYPE_F32, 16, 3, { 20, 300, 1500 }, { 13, 1, 1 } },
		{ 28, 4, 128, VK_DTYPE_BF16, 16, 2, { 0, 77 }, { 70, 1 } },
		{ 14, 2, 64, VK_DTYPE_F32, 32, 4, { 0, 5, 4000, 33 }, { 1, 1, 1, 40 } },
		{ 8, 8, 128, VK_DTYPE_F16, 16, 1, { 0 }, { 1 } },
	};
	const struct attn_case *cs = &cases[_i];
	const int kvw = cs->nkv * cs->hd, qw = cs->nh * cs->hd, bs = cs->block;
	int total_blocks = 0, nt = 0;
	for (int s = 0; s < cs->n_seqs; s++) {
		total_blocks += (cs->past[s] + cs->n[s] + bs - 1) / bs;
		nt += cs->n[s];
	}
	const int pool = total_blocks + 7;
	struct vk_kv_shape shape = { 2, pool, bs, cs->nkv, cs->hd, (enum vk_dtype)cs->dtype };
	struct vk_kv *kv = NULL;
	int rc = be->ops->kv_new(be, &shape, &kv);
	ck_assert_msg(rc == 0, "kv_new: %d %s", rc, be->error);

	/* a random permutation of block ids, handed out per sequence */
	int *perm = malloc((size_t)pool * sizeof(int));
	for (int i = 0; i < pool; i++)
		perm[i] = i;
	for (int i = pool - 1; i > 0; i--) {
		int j = irand(i + 1), t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	struct vk_seq seqs[4], hseqs[4];
	int32_t *blocks[4];
	float *kall[4], *vall[4];   /* [past + n, kvw] every position of each sequence */
	int used = 0, first = 0, hfirst = 0, hn = 0;
	for (int s = 0; s < cs->n_seqs; s++) {
		const int len = cs->past[s] + cs->n[s], nb = (len + bs - 1) / bs;
		blocks[s] = malloc((size_t)nb * sizeof(int32_t));
		for (int j = 0; j < nb; j++)
			blocks[s][j] = perm[used++];
		kall[s] = frand_n((size_t)len * kvw, 1.0f);
		vall[s] = frand_n((size_t)len * kvw, 1.0f);
		seqs[s] = (struct vk_seq){ first, cs->n[s], cs->past[s], nb, blocks[s] };
		first += cs->n[s];
		hn += cs->past[s];
	}
	/* history: store positions [0, past) of every sequence with one kv_store per layer */
	if (hn > 0) {
		float *hk = malloc((size_t)hn * kvw * 4), *hv = malloc((size_t)hn * kvw * 4);
		int32_t *ht = calloc((size_t)hn, 4), *hp = calloc((size_t)hn * 3, 4);
		int ns = 0;
		for (int s = 0; s < cs->n_seqs; s++) {
			if (!cs->past[s])
				continue;
			memcpy(hk + (size_t)hfirst * kvw, kall[s], (size_t)cs->past[s] * kvw * 4);
			memcpy(hv + (size_t)hfirst * kvw, vall[s], (size_t)cs->past[s] * kvw * 4);
			hseqs[ns++] = (struct vk_seq){ hfirst, cs->past[s], 0, seqs[s].n_blocks, blocks[s] };
			hfirst += cs->past[s];
		}
		struct vk_batch hb = { hn, ns, ht, hp, hseqs, 0, NULL };
		float *dhk = dev_from(hk, (size_t)hn * kvw * 4), *dhv = dev_from(hv, (size_t)hn * kvw * 4);
		for (int l = 0; l < 2; l++) {
			rc = be->ops->kv_store(be, kv, l, dhk, dhv, &hb);
			ck_assert_msg(rc == 0, "kv_store history: %d %s", rc, be->error);
		}
		be->ops->free(be, dhk);
		be->ops->free(be, dhv);
		free(hk);
		free(hv);
		free(ht);
		free(hp);
	}
	/* the step: store its own K/V in layer 1, then attend */
	float *sk = malloc((size_t)nt * kvw * 4), *sv = malloc((size_t)nt * kvw * 4);
	for (int s = 0; s < cs->n_seqs; s++) {
		memcpy(sk + (size_t)seqs[s].first * kvw, kall[s] + (size_t)cs->past[s] * kvw,
		       (size_t)cs->n[s] * kvw * 4);
		memcpy(sv + (size_t)seqs[s].first * kvw, vall[s] + (size_t)cs->past[s] * kvw,
		       (size_t)cs->n[s] * kvw * 4);
	}
	int32_t *tok = calloc((size_t)nt, 4), *pos = calloc((size_t)nt * 3, 4);
	struct vk_batch batch = { nt, cs->n_seqs, tok, pos, seqs, 0, NULL };
	float *q = frand_n((size_t)nt * qw, 1.0f);
	float *dq = dev_from(q, (size_t)nt * qw * 4), *dsk = dev_from(sk, (size_t)nt * kvw * 4);
	float *dsv = dev_from(sv, (size_t)nt * kvw * 4), *dout = dev_poison((size_t)nt * qw * 4);
	rc = be->ops->kv_store(be, kv, 1, dsk, dsv, &batch);
	ck_assert_msg(rc == 0, "kv_store: %d %s", rc, be->error);
	rc = be->ops->attention(be, kv, 1, dq, &batch, cs->nh, dout);
	ck_assert_msg(rc == 0, "attention: %d %s", rc, be->error);
	float *out = fdown(dout, (size_t)nt * qw);

	double *ref = malloc((size_t)nt * qw * sizeof(double));
	const int group = cs->nh / cs->nkv;
	for (int s = 0; s < cs->n_seqs; s++)
		for (int r = 0; r < cs->n[s]; r++) {
			const int row = seqs[s].first + r, p = cs->past[s] + r;
			for (int h = 0; h < cs->nh; h++) {
				const int kh = h / group;
				double *sc = malloc((size_t)(p + 1) * sizeof(double)), mx = -INFINITY, sum = 0;
				for (int j = 0; j <= p; j++) {
					double d = 0;
					for (int e = 0; e < cs->hd; e++)
						d += (double)q[(size_t)row * qw + h * cs->hd + e] *
						     kv_round(kall[s][(size_t)j * kvw + kh * cs->hd + e], cs->dtype);
					sc[j] = d / sqrt((double)cs->hd);
					if (sc[j] > mx)
						mx = sc[j];
				}
				for (int j = 0; j <= p; j++)
					sum += (sc[j] = exp(sc[j] - mx));
				for (int e = 0; e < cs->hd; e++) {
					double o = 0;
					for (int j = 0; j <= p; j++)
						o += sc[j] * kv_round(vall[s][(size_t)j * kvw + kh * cs->hd + e],
						                      cs->dtype);
					ref[(size_t)row * qw + h * cs->hd + e] = o / sum;
				}
				free(sc);
			}
		}
	/* fp16 KV: the reference rounds like fp32 (inputs |v| < 1 keep ~11 bits): looser bound */
	expect_close(out, ref, (size_t)nt * qw, cs->dtype == VK_DTYPE_F16 ? 2e-3 : 2e-5, 1e-4,
	             "attention");

	/* a block id outside the pool, and too few blocks: refused before any launch */
	const int32_t saved = blocks[0][0];
	blocks[0][0] = pool;
	ck_assert_int_eq(be->ops->attention(be, kv, 1, dq, &batch, cs->nh, dout), -EINVAL);
	ck_assert_int_eq(be->ops->kv_store(be, kv, 1, dsk, dsv, &batch), -EINVAL);
	blocks[0][0] = saved;
	seqs[0].n_blocks--;
	ck_assert_int_eq(be->ops->attention(be, kv, 1, dq, &batch, cs->nh, dout), -EINVAL);
	seqs[0].n_blocks++;
	ck_assert_int_eq(be->ops->kv_store(be, kv, 2, dsk, dsv, &batch), -EINVAL);   /* layer */
	ck_assert_int_eq(be->ops->attention(be, kv, 1, dq, &batch, cs->nh, dout), 0);
	ck_assert_int_eq(be->ops->sync(be), 0);

	be->ops->free(be, dq);
	be->ops->free(be, dsk);
	be->ops->free(be, dsv);
	be->ops->free(be, dout);
	be->ops->kv_free(be, kv);
	for (int s = 0; s < cs->n_seqs; s++) {
		free(blocks[s]);
		free(kall[s]);
		free(vall[s]);
	}
	free(perm);
	free(sk);
	free(sv);
	free(tok);
	free(pos);
	free(q);
	free(out);
	free(ref);
}
END_TEST

/* ---- SwiGLU, get_rows, argmax -------------------------------------------------------------- */

START_TEST(test_swiglu_getrows_argmax)
{
	const int n = 5, dim = 8960, vocab = 151936;
	const size_t cnt = (size_t)n * dim;
	float *g = frand_n(cnt, 8.0f), *u = frand_n(cnt, 2.0f);
	float *dg = dev_from(g, cnt * 4), *du = dev_from(u, cnt * 4), *dout = dev_poison(cnt * 4);
	ck_assert_int_eq(be->ops->swiglu(be, dg, du, n, dim, dout), 0);
	float *out = fdown(dout, cnt);
	double *ref = malloc(cnt * sizeof(double));
	for (size_t i = 0; i < cnt; i++)
		ref[i] = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
	expect_close(out, ref, cnt, 1e-6, 1e-5, "swiglu");
	/* out aliasing gate */
	ck_assert_int_eq(be->ops->swiglu(be, dg, du, n, dim, dg), 0);
	free(out);
	out = fdown(dg, cnt);
	expect_close(out, ref, cnt, 1e-6, 1e-5, "swiglu in place");

	/* get_rows: last row of three "sequences" plus a repeated row */
	const int32_t rows[4] = { 4, 0, 2, 4 };
	float *dr = dev_poison((size_t)4 * dim * 4);
	ck_assert_int_eq(be->ops->get_rows(be, du, rows, 4, dim, dr), 0);
	float *gr = fdown(dr, (size_t)4 * dim);
	double *rr = malloc((size_t)4 * dim * sizeof(double));
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < dim; j++)
			rr[(size_t)i * dim + j] = u[(size_t)rows[i] * dim + j];
	expect_close(gr, rr, (size_t)4 * dim, 0.0, 0.0, "get_rows");
	const int32_t negative[1] = { -1 };
	ck_assert_int_eq(be->ops->get_rows(be, du, negative, 1, dim, dr), -EINVAL);

	/* argmax with planted ties (first index wins) and a row of -inf except one */
	const int na = 4;
	float *lg = frand_n((size_t)na * vocab, 10.0f);
	lg[(size_t)0 * vocab + 777] = 50.0f;
	lg[(size_t)0 * vocab + 150000] = 50.0f;
	lg[(size_t)1 * vocab + 3] = 60.0f;
	lg[(size_t)1 * vocab + 2] = 60.0f;
	for (int j = 0; j < vocab; j++)
		lg[(size_t)2 * vocab + j] = -INFINITY;
	lg[(size_t)2 * vocab + vocab - 1] = -1.0f;
	int32_t want[4];
	for (int r = 0; r < na; r++) {
		int best = 0;
		for (int j = 1; j < vocab; j++)
			if (lg[(size_t)r * vocab + j] > lg[(size_t)r * vocab + best])
				best = j;
		want[r] = best;
	}
	float *dl = dev_from(lg, (size_t)na * vocab * 4);
	int32_t ids[4] = { -1, -1, -1, -1 };
	ck_assert_int_eq(be->ops->argmax(be, dl, na, vocab, ids), 0);
	for (int r = 0; r < na; r++)
		ck_assert_int_eq(ids[r], want[r]);
	ck_assert_int_eq(ids[0], 777);
	ck_assert_int_eq(ids[1], 2);

	be->ops->free(be, dg);
	be->ops->free(be, du);
	be->ops->free(be, dout);
	be->ops->free(be, dr);
	be->ops->free(be, dl);
	free(g);
	free(u);
	free(out);
	free(ref);
	free(gr);
	free(rr);
	free(lg);
}
END_TEST

/* ---- sampling ------------------------------------------------------------------------------ */

static double uniform_of(uint64_t seed, uint64_t step)   /* the documented formula */
{
	uint64_t x = seed ^ (step * 0x9e3779b97f4a7c15ULL);
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return (double)(x >> 11) * 0x1.0p-53;
}

/* Reference of the documented sampling semantics, in double. */
static int ref_sample(const float *logits, int vocab, const struct vk_sample_params *p)
{
	double *l = malloc((size_t)vocab * sizeof(double));
	for (int i = 0; i < vocab; i++)
		l[i] = logits[i];
	for (int i = 0; i < p->n_history; i++) {
		const int t = p->history[2 * i], c = p->history[2 * i + 1];
		double v = l[t];
		if (p->repetition_penalty > 0 && p->repetition_penalty != 1.0f)
			v = v > 0 ? v / p->repetition_penalty : v * p->repetition_penalty;
		v -= (c > 0 ? p->presence_penalty : 0) + (double)p->frequency_penalty * c;
		l[t] = v;
	}
	int best = 0;
	for (int i = 1; i < vocab; i++)
		if (l[i] > l[best])
			best = i;
	if (p->temperature <= 0) {
		free(l);
		return best;
	}
	const double mx = l[best];
	double *pr = malloc((size_t)vocab * sizeof(double)), *sorted = malloc((size_t)vocab * 8);
	for (int i = 0; i < vocab; i++)
		sorted[i] = pr[i] = exp((l[i] - mx) / p->temperature);
	double thr = p->min_p > 0 ? fmin(p->min_p, 1.0) : 0.0;
	if (p->top_k > 0 && p->top_k < vocab) {
		/* k-th largest by partial selection */
		for (int a = 0; a < p->top_k; a++) {
			int m = a;
			for (int j = a + 1; j < vocab; j++)
				if (sorted[j] > sorted[m])
					m = j;
			double t = sorted[a];
			sorted[a] = sorted[m];
			sorted[m] = t;
		}
		thr = fmax(thr, sorted[p->top_k - 1]);
	}
	if (p->top_p < 1) {
		double kept = 0;
		for (int i = 0; i < vocab; i++)
			if (pr[i] >= thr)
				kept += pr[i];
		const double target = fmax(p->top_p, 0) * kept;
		/* smallest set of the largest kept probabilities with mass >= target */
		double mass = 0, t = 1.0;
		int *order = malloc((size_t)vocab * sizeof(int)), n = 0;
		for (int i = 0; i < vocab; i++)
			if (pr[i] >= thr)
				order[n++] = i;
		for (int a = 0; a < n && mass < target; a++) {
			int m = a;
			for (int j = a + 1; j < n; j++)
				if (pr[order[j]] > pr[order[m]])
					m = j;
			int tmp = order[a];
			order[a] = order[m];
			order[m] = tmp;
			mass += pr[order[a]];
			t = pr[order[a]];
		}
		thr = fmax(thr, t);
		free(order);
	}
	double total = 0;
	for (int i = 0; i < vocab; i++)
		if (pr[i] >= thr)
			total += pr[i];
	const double target = uniform_of(p->seed, p->step) * total;
	double run = 0;
	int pick = best;
	for (int i = 0; i < vocab; i++)
		if (pr[i] >= thr) {
			run += pr[i];
			if (target < run) {
				pick = i;
				break;
			}
		}
	free(l);
	free(pr);
	free(sorted);
	return pick;
}

START_TEST(test_sample)
{
	const int vocab = 5000, n = 6;
	float *lg = frand_n((size_t)n * vocab, 4.0f);
	int32_t hist[3][2] = { { 10, 1 }, { 20, 3 }, { 30, 0 } };
	struct vk_sample_params p[6];
	memset(p, 0, sizeof(p));
	for (int r = 0; r < n; r++) {
		p[r].temperature = 0.8f;
		p[r].top_p = 1.0f;
		p[r].repetition_penalty = 1.0f;
		p[r].seed = 1234 + (uint64_t)r;
		p[r].step = 7;
	}
	p[0].temperature = 0.0f;                   /* greedy */
	p[1].top_k = 1;                            /* top-1 = greedy */
	p[2].top_k = 40;
	p[3].top_p = 0.9f;
	p[3].min_p = 0.05f;
	p[4].repetition_penalty = 1.3f;            /* penalties on a greedy row */
	p[4].presence_penalty = 0.5f;
	p[4].frequency_penalty = 0.2f;
	p[4].temperature = 0.0f;
	p[4].n_history = 3;
	p[4].history = &hist[0][0];
	lg[(size_t)4 * vocab + 20] = 100.0f;       /* penalised: 100 / 1.3 - 0.5 - 0.2 * 3 = 75.82 */
	lg[(size_t)4 * vocab + 21] = 76.0f;        /* so 21 wins the greedy pick */
	p[5].temperature = 1.5f;
	p[5].top_k = 100;
	p[5].top_p = 0.5f;
	int want[6];
	for (int r = 0; r < n; r++)
		want[r] = ref_sample(lg + (size_t)r * vocab, vocab, &p[r]);
	float *dl = dev_from(lg, (size_t)n * vocab * 4);
	int32_t ids[6];
	int rc = vk_cuda_sample(be, dl, n, vocab, p, ids);
	ck_assert_msg(rc == 0, "sample: %d %s", rc, be->error);
	for (int r = 0; r < n; r++)
		ck_assert_msg(ids[r] == want[r], "row %d: got %d want %d", r, ids[r], want[r]);
	ck_assert_int_eq(ids[4], 21);
	/* same seed and step, fresh logits: same tokens */
	ck_assert_int_eq(be->ops->upload(be, dl, lg, (size_t)n * vocab * 4), 0);
	int32_t again[6];
	ck_assert(be->ops->sample != NULL);   /* the same code through the ops table */
	ck_assert_int_eq(be->ops->sample(be, dl, n, vocab, p, again), 0);
	ck_assert_mem_eq(ids, again, sizeof(ids));
	/* a history token outside the vocabulary */
	hist[1][0] = vocab;
	ck_assert_int_eq(vk_cuda_sample(be, dl, n, vocab, p, again), -EINVAL);
	be->ops->free(be, dl);
	free(lg);
}
END_TEST

/* ---- decode-step CUDA graphs: replay equals eager ----------------------------------------- */

struct mini {
	int hidden, nh, nkv, hd, vocab;
	struct vk_weight table, norm, wq, wk, wv;
	struct vk_kv *kv;
	float *x, *h, *q, *k, *v, *o, *last;
};

static int mini_step(struct mini *m, const struct vk_batch *b)
{
	const struct vk_rope rope = { 1e6f, { 16, 8, 8 } };
	const int n = b->n_tokens;
	int rc;
	if ((rc = be->ops->embed(be, &m->table, b, m->x)) ||
	    (rc = be->ops->rmsnorm(be, m->x, &m->norm, 1e-6f, n, m->hidden, m->h)) ||
	    (rc = be->ops->matmul(be, m->h, &m->wq, NULL, n, m->q)) ||
	    (rc = be->ops->matmul(be, m->h, &m->wk, NULL, n, m->k)) ||
	    (rc = be->ops->matmul(be, m->h, &m->wv, NULL, n, m->v)) ||
	    (rc = be->ops->rope(be, m->q, m->k, b, m->nh, m->nkv, m->hd, &rope)) ||
	    (rc = be->ops->kv_store(be, m->kv, 0, m->k, m->v, b)) ||
	    (rc = be->ops->attention(be, m->kv, 0, m->q, b, m->nh, m->o)))
		return rc;
	int32_t rows[8];
	for (int i = 0; i < b->n_seqs; i++)
		rows[i] = b->seqs[i].first + b->seqs[i].n - 1;
	return be->ops->get_rows(be, m->o, rows, b->n_seqs, m->nh * m->hd, m->last);
}

START_TEST(test_graphs)
{
	struct mini m = { 256, 4, 2, 64, 500, { 0 }, { 0 }, { 0 }, { 0 }, { 0 }, NULL,
	                  NULL, NULL, NULL, NULL, NULL, NULL, NULL };
	const int B = 3, qw = m.nh * m.hd, kw = m.nkv * m.hd, bs = 16, steps = 4;
	uint16_t *tb = malloc((size_t)m.vocab * m.hidden * 2), *wb = malloc((size_t)qw * m.hidden * 2);
	for (int i = 0; i < m.vocab * m.hidden; i++)
		tb[i] = f2bf(frand());
	m.table = load_weight(tb, VK_DTYPE_BF16, m.vocab, m.hidden);
	float *nw = frand_n((size_t)m.hidden, 1.0f);
	m.norm = load_weight(nw, VK_DTYPE_F32, 1, m.hidden);
	for (int i = 0; i < qw * m.hidden; i++)
		wb[i] = f2bf(frand() * 0.1f);
	m.wq = load_weight(wb, VK_DTYPE_BF16, qw, m.hidden);
	m.wk = load_weight(wb, VK_DTYPE_BF16, kw, m.hidden);
	m.wv = load_weight(wb + kw * m.hidden, VK_DTYPE_BF16, kw, m.hidden);
	ck_assert_int_eq(be->ops->alloc(be, (size_t)8 * m.hidden * 4, (void **)&m.x), 0);
	ck_assert_int_eq(be->ops->alloc(be, (size_t)8 * m.hidden * 4, (void **)&m.h), 0);
	ck_assert_int_eq(be->ops->alloc(be, (size_t)8 * qw * 4, (void **)&m.q), 0);
	ck_assert_int_eq(be->ops->alloc(be, (size_t)8 * kw * 4, (void **)&m.k), 0);
	ck_assert_int_eq(be->ops->alloc(be, (size_t)8 * kw * 4, (void **)&m.v), 0);
	ck_assert_int_eq(be->ops->alloc(be, (size_t)8 * qw * 4, (void **)&m.o), 0);
	ck_assert_int_eq(be->ops->alloc(be, (size_t)8 * qw * 4, (void **)&m.last), 0);
	/* two caches: one driven eagerly, one through graphs, same blocks */
	struct vk_kv_shape shape = { 1, 64, bs, m.nkv, m.hd, VK_DTYPE_F32 };
	struct vk_kv *kv_e = NULL, *kv_g = NULL;
	ck_assert_int_eq(be->ops->kv_new(be, &shape, &kv_e), 0);
	ck_assert_int_eq(be->ops->kv_new(be, &shape, &kv_g), 0);

	int32_t blocks[3][4] = { { 5, 9, 1, 2 }, { 7, 3, 11, 12 }, { 0, 4, 13, 14 } };
	int32_t past[3] = { 10, 0, 15 };
	{   /* history positions [0, past) of every sequence, same values in both caches */
		const int hn = 25;
		float *hk = frand_n((size_t)hn * kw, 1.0f), *hv = frand_n((size_t)hn * kw, 1.0f);
		int32_t ht[25] = { 0 }, hp[75] = { 0 };
		struct vk_seq hs[2] = { { 0, 10, 0, 2, blocks[0] }, { 10, 15, 0, 2, blocks[2] } };
		struct vk_batch hb = { hn, 2, ht, hp, hs, 0, NULL };
		float *dhk = dev_from(hk, (size_t)hn * kw * 4), *dhv = dev_from(hv, (size_t)hn * kw * 4);
		ck_assert_int_eq(be->ops->kv_store(be, kv_e, 0, dhk, dhv, &hb), 0);
		ck_assert_int_eq(be->ops->kv_store(be, kv_g, 0, dhk, dhv, &hb), 0);
		be->ops->free(be, dhk);
		be->ops->free(be, dhv);
		free(hk);
		free(hv);
	}
	float *eager = malloc((size_t)B * qw * 4), *graph = malloc((size_t)B * qw * 4);
	int replays = 0;
	for (int s = 0; s < steps; s++) {
		int32_t tokens[3], pos[9];
		struct vk_seq seqs[3];
		for (int i = 0; i < B; i++) {
			tokens[i] = irand(m.vocab);
			pos[i] = pos[B + i] = pos[2 * B + i] = past[i] + s;
			/* block table of capacity 4 stays in the same graph bucket */
			seqs[i] = (struct vk_seq){ i, 1, past[i] + s, 2, blocks[i] };
		}
		struct vk_batch b = { B, B, tokens, pos, seqs, 0, NULL };
		m.kv = kv_e;
		int rc = mini_step(&m, &b);
		ck_assert_msg(rc == 0, "eager step: %d %s", rc, be->error);
		down(eager, m.last, (size_t)B * qw * 4);

		m.kv = kv_g;
		/* alternately the hook of backend.h (0 for capture and replay) and the extension
		 * (1 = replaying), which count the replays */
		rc = s % 2 ? vk_cuda_graph_begin(be, &b) : be->ops->step_begin(be, &b);
		ck_assert_msg(rc == 0 || rc == 1, "graph_begin: %d %s", rc, be->error);
		replays += rc;
		rc = mini_step(&m, &b);
		ck_assert_msg(rc == 0, "graph step: %d %s", rc, be->error);
		rc = be->ops->step_end(be);
		ck_assert_msg(rc == 0, "graph_end: %d %s", rc, be->error);
		down(graph, m.last, (size_t)B * qw * 4);
		double *ref = malloc((size_t)B * qw * sizeof(double));
		for (int i = 0; i < B * qw; i++)
			ref[i] = eager[i];
		expect_close(graph, ref, (size_t)B * qw, 1e-6, 1e-5, "graph replay vs eager");
		free(ref);
	}
	ck_assert_int_eq(replays, steps / 2);   /* steps 1 and 3 replayed via the extension */
	{   /* a step that is not a decode step is run eagerly: step_begin < 0 */
		int32_t tokens[2] = { 1, 2 }, pos[6] = { 0 };
		struct vk_seq seq = { 0, 2, 0, 1, blocks[0] };
		struct vk_batch pb = { 2, 1, tokens, pos, &seq, 0, NULL };
		ck_assert_int_lt(be->ops->step_begin(be, &pb), 0);
	}

	/* a replay whose op sequence differs is abandoned and the graph dropped */
	{
		int32_t tokens[3] = { 1, 2, 3 }, pos[9] = { 0 };
		struct vk_seq seqs[3];
		for (int i = 0; i < B; i++)
			seqs[i] = (struct vk_seq){ i, 1, past[i] + steps, 2, blocks[i] };
		struct vk_batch b = { B, B, tokens, pos, seqs, 0, NULL };
		ck_assert_int_eq(vk_cuda_graph_begin(be, &b), 1);
		ck_assert_int_eq(be->ops->embed(be, &m.table, &b, m.x), 0);
		/* not the captured op: skipped (0), the step abandoned, end says redo eagerly */
		ck_assert_int_eq(be->ops->swiglu(be, m.x, m.x, B, m.hidden, m.h), 0);
		ck_assert_ptr_nonnull(strstr(be->error, "differs"));
		ck_assert_int_eq(be->ops->rmsnorm(be, m.x, &m.norm, 1e-6f, B, m.hidden, m.h), 0);
		ck_assert_int_eq(vk_cuda_graph_end(be), -ECANCELED);
		ck_assert_int_eq(vk_cuda_graph_begin(be, &b), 0);   /* captured afresh */
		ck_assert_int_eq(mini_step(&m, &b), 0);
		ck_assert_int_eq(vk_cuda_graph_end(be), 0);
		ck_assert_int_eq(be->ops->sync(be), 0);
	}

	be->ops->kv_free(be, kv_e);
	be->ops->kv_free(be, kv_g);
	void *bufs[] = { m.x, m.h, m.q, m.k, m.v, m.o, m.last };
	for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
		be->ops->free(be, bufs[i]);
	struct vk_weight *ws[] = { &m.table, &m.norm, &m.wq, &m.wk, &m.wv };
	for (size_t i = 0; i < sizeof(ws) / sizeof(ws[0]); i++)
		be->ops->weight_free(be, ws[i]);
	free(tb);
	free(wb);
	free(nw);
	free(eager);
	free(graph);
}
END_TEST

#ifndef VK_CUDA_EMU   /* the CPU emulator has no sticky errors, and its GEMM is too slow to probe */
/* ---- sticky error: a faulting kernel (bogus device source) in a child process -------------- */

static int sticky_child(void)
{
	char err[256];
	struct vk_backend *b = NULL;
	if (vk_cuda_backend_open(&b, err, sizeof(err)) < 0)
		return 77;
	be = b;
	const int hidden = 64;
	uint16_t table[4 * 64] = { 0 };
	struct vk_weight tw;
	if (b->ops->weight_load(b, table, VK_DTYPE_BF16, 4, hidden, &tw))
		return 2;
	int32_t tokens[2] = { 0, 1 }, pos[6] = { 0 };
	struct vk_row_source src = { 0, 2, VK_DTYPE_F32, 1, hidden * 4, (const void *)(uintptr_t)0x10 };
	struct vk_seq seq = { 0, 2, 0, 0, NULL };
	struct vk_batch batch = { 2, 1, tokens, pos, &seq, 1, &src };
	float *x = NULL;
	if (b->ops->alloc(b, 2 * hidden * 4, (void **)&x))
		return 3;
	int rc = b->ops->embed(b, &tw, &batch, x);
	if (rc == 0)
		rc = b->ops->sync(b);
	if (rc != VK_CUDA_EDEVICE_LOST || !vk_cuda_backend_lost(b))
		return 4;
	if (b->ops->sync(b) != VK_CUDA_EDEVICE_LOST)   /* stays lost */
		return 5;
	if (!strstr(b->error, "lost"))
		return 6;
	return 0;
}

START_TEST(test_sticky)
{
	char *argv[] = { "/proc/self/exe", "--sticky-child", NULL };
	pid_t pid;
	ck_assert_int_eq(posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ), 0);
	int st = 0;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "sticky child: status %d", st);
	/* our own backend is unaffected */
	ck_assert_int_eq(vk_cuda_backend_lost(be), 0);
	ck_assert_int_eq(be->ops->sync(be), 0);
}
END_TEST

/* ---- probe ---------------------------------------------------------------------------------- */

START_TEST(test_probe)
{
	struct vk_probe p;
	int rc = be->ops->probe(be, &p);
	ck_assert_msg(rc == 0, "probe: %d %s", rc, be->error);
	ck_assert(p.copy_bandwidth_gbps > 1.0);
	ck_assert(p.read_bandwidth_gbps > 1.0);
	ck_assert(p.peak_gflops > 100.0);
	/* per instruction family: bf16 (tensor cores) is the matmul's bf16 path, fp32 its fp32 one */
	ck_assert(p.peak_bf16_gflops > 100.0);
	ck_assert(p.peak_f32_gflops > 1.0);
	ck_assert(p.peak_gflops >= p.peak_bf16_gflops && p.peak_gflops >= p.peak_f32_gflops);
	ck_assert_int_eq(p.threads, 0);
}
END_TEST

#endif /* VK_CUDA_EMU */

int main(int argc, char **argv)
{
#ifndef VK_CUDA_EMU
	if (argc > 1 && !strcmp(argv[1], "--sticky-child"))
		return sticky_child();
#endif
	char err[256];
	int rc = vk_cuda_backend_open(&be, err, sizeof(err));
	if (rc == -ENODEV) {
		printf("SKIP: %s\n", err);
		return 77;
	}
	if (rc < 0) {
		fprintf(stderr, "vk_cuda_backend_open: %d %s\n", rc, err);
		return 1;
	}
	size_t mem_free = 0, mem_total = 0;
	if (vk_cuda_backend_mem_info(be, &mem_free, &mem_total) != 0 || mem_free > mem_total ||
	    mem_total == 0) {
		fprintf(stderr, "vk_cuda_backend_mem_info: %zu of %zu\n", mem_free, mem_total);
		return 1;
	}
	if (!vk_cuda_backend_is(be)) {
		fprintf(stderr, "vk_cuda_backend_is() is false for the CUDA backend\n");
		return 1;
	}
	Suite *s = suite_create("cuda-ops");
	TCase *tc = tcase_create("ops");
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_embed, 0, 3);
	tcase_add_loop_test(tc, test_rmsnorm, 0, 4);
	tcase_add_loop_test(tc, test_matmul, 0, 6);
	tcase_add_loop_test(tc, test_rope, 0, 3);
#ifdef VK_CUDA_EMU   /* case 2 (4,000 positions of history) takes minutes on emulated threads */
	tcase_add_loop_test(tc, test_attention, 0, 2);
	tcase_add_loop_test(tc, test_attention, 3, 4);
#else
	tcase_add_loop_test(tc, test_attention, 0, 4);
#endif
	tcase_add_test(tc, test_swiglu_getrows_argmax);
	tcase_add_test(tc, test_sample);
	tcase_add_test(tc, test_graphs);
#ifndef VK_CUDA_EMU
	tcase_add_test(tc, test_sticky);
	tcase_add_test(tc, test_probe);
#endif
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	const int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	be->ops->destroy(be);
	return failed ? 1 : 0;
}
