/*
 * tests/kernels/test-kernels-quant.c — quantized weights (VK_DTYPE_Q8 / Q4, weight_load_quant):
 * every CPU path against the scalar reference backend.
 *
 * The reference evaluates the contract's formula (backend.h, struct vk_quant_src) in double, so
 * it is checked first against a hand-built matrix with known products. Then random quantized
 * matrices — both widths, group sizes 32 / 64 / 128 / cols (and ones the SIMD kernels do not
 * take), with and without an act-order permutation, integer and fractional zeros, row counts
 * that are not a multiple of any tile, 1..9 and 40 activation rows — go through matmul (with
 * and without bias) and embed on every instruction-set path of the CPU backend and several thread
 * counts. The CPU results must be within fp32 rounding of the reference, bound derived below;
 * matmul rows must be bit-identical alone and in a batch; malformed sources must be refused with
 * -EINVAL and a message by both backends.
 *
 * On a CPU with AVX512_BF16 the AVX-512 configurations run the bf16 dot-product path for the
 * weights it takes (integer zeros, groups of a multiple of 32 or one group): it rounds the
 * activations to bf16, so there the reference runs on the same rounded activations (same fp32
 * bound), and the case must show the rounding (some output off the unrounded reference by more
 * than the bound: proof the path ran). "avx512-fp32" is the same ISA with VLM_CPU_BF16DOT=0,
 * checked against the unrounded reference. "avx2" runs kern_q_avx2.c where the groups fit it
 * (group % 16 for Q8, % 32 for Q4): besides the reference bound, its outputs are compared with the
 * portable path's (generic backend, same inputs) within twice the bound, and must differ from
 * them in the last bits somewhere (proof it is not the portable loop itself).
 */
#include <check.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "qsrc.h"

static const struct {
	const char *isa;
	const char *threads;
	int dot;            /* may take the bf16 dot-product path (AVX512_BF16) */
} configs[] = {
	{ "avx512", "2", 1 },
	{ "avx512", "3", 1 },
	{ "avx512-fp32", "2", 0 },
	{ "avx2", "2", 0 },
	{ "generic", "1", 0 },
};

static struct vk_backend *open_be(const char *name, const char *isa, const char *threads)
{
	struct vk_backend *be = NULL;
	char err[256];
	if (isa && strcmp(isa, "avx512-fp32") == 0) {
		setenv("VLM_CPU_BF16DOT", "0", 1);
		isa = "avx512";
	}
	if (isa)
		setenv("VLM_CPU_ISA", isa, 1);
	if (threads)
		setenv("VLM_THREADS", threads, 1);
	int r = vk_backend_open(name, &be, err, sizeof(err));
	unsetenv("VLM_CPU_ISA");
	unsetenv("VLM_THREADS");
	unsetenv("VLM_CPU_BF16DOT");
	if (r == -EINVAL && strstr(err, "lacks"))
		return NULL;
	ck_assert_msg(r == 0, "open %s (%s, %s threads): %d %s", name, isa ? isa : "-",
	              threads ? threads : "-", r, err);
	return be;
}

/* The reference against a matrix worked out by hand: rows [2, 4], groups of 2, perm (1 3 0 2). */
START_TEST(test_ref_closed_form)
{
	struct vk_backend *ref = open_be("ref", NULL, NULL);
	uint8_t q[8] = { 3, 1, 0, 15,   8, 8, 2, 6 };
	float scale[4] = { 0.5f, 2.0f,   1.0f, 0.25f };
	float zero[4] = { 1.0f, 7.5f,   8.0f, 4.0f };
	int32_t perm[4] = { 1, 3, 0, 2 };
	/* row 0 storage: (3-1)*.5 = 1, (1-1)*.5 = 0, (0-7.5)*2 = -15, (15-7.5)*2 = 15
	 * -> logical [perm[c]]: W0 = [-15 at 0, 1 at 1, 15 at 2, 0 at 3]
	 * row 1 storage: 0, 0, (2-4)*.25 = -0.5, (6-4)*.25 = 0.5 -> W1 = [-0.5, 0, 0.5, 0] */
	struct vk_quant_src src = { VK_DTYPE_Q4, 2, 4, 2, q, scale, zero, perm };
	struct vk_weight w;
	float x[4] = { 1.0f, 10.0f, 100.0f, 1000.0f }, out[2];
	ck_assert_int_eq(ref->ops->weight_load_quant(ref, &src, &w), 0);
	ck_assert_int_eq(w.dtype, VK_DTYPE_Q4);
	ck_assert_int_eq(w.rows, 2);
	ck_assert_int_eq(w.cols, 4);
	ck_assert_int_eq(ref->ops->matmul(ref, x, &w, NULL, 1, out), 0);
	ck_assert_float_eq(out[0], -15.0f + 10.0f + 1500.0f);
	ck_assert_float_eq(out[1], -0.5f + 50.0f);
	int32_t tok[2] = { 1, 0 };
	struct vk_seq sq = { 0, 2, 0, 0, NULL };
	struct vk_batch b = { 2, 1, tok, NULL, &sq, 0, NULL };
	float e[8];
	ck_assert_int_eq(ref->ops->embed(ref, &w, &b, e), 0);
	const float want[8] = { -0.5f, 0, 0.5f, 0,   -15, 1, 15, 0 };
	for (int i = 0; i < 8; i++)
		ck_assert_float_eq(e[i], want[i]);
	ref->ops->weight_free(ref, &w);
	vk_backend_free(ref);
}
END_TEST

struct qcase {
	enum vk_dtype dt;
	int64_t rows, cols;
	int32_t gs;         /* 0: cols */
};

static const struct qcase qcases[] = {
	{ VK_DTYPE_Q8, 37, 256, 32 },   { VK_DTYPE_Q8, 70, 384, 64 },   { VK_DTYPE_Q8, 53, 512, 128 },
	{ VK_DTYPE_Q8, 41, 896, 0 },    { VK_DTYPE_Q8, 19, 100, 0 },    { VK_DTYPE_Q8, 33, 120, 40 },
	{ VK_DTYPE_Q4, 37, 256, 32 },   { VK_DTYPE_Q4, 70, 384, 64 },   { VK_DTYPE_Q4, 53, 512, 128 },
	{ VK_DTYPE_Q4, 41, 896, 0 },    { VK_DTYPE_Q4, 21, 96, 48 },    { VK_DTYPE_Q4, 17, 75, 0 },
	{ VK_DTYPE_Q8, 300, 256, 128 }, { VK_DTYPE_Q4, 300, 256, 64 },
};
static const int ns[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 40 };

/* Whether configuration ci runs weight m on the bf16 dot-product path (cpu_quant.h). */
static int dot_path(int ci, const struct qsrc *m)
{
	int has = 0;
#if defined(__x86_64__) || defined(__i386__)
	has = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
	      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#endif
	const struct vk_quant_src *s = &m->s;
	int ok = configs[ci].dot && has && (s->group_size % 32 == 0 || s->group_size == s->cols);
	for (int64_t g = 0; ok && g < s->rows * (s->cols / s->group_size); g++)
		ok = m->zero[g] == floorf(m->zero[g]) && m->zero[g] >= 0.0f && m->zero[g] <= 256.0f;
	return ok;
}

/* x rounded to bf16 (round to nearest even), as the dot path rounds its activations. */
static void round_bf16(const float *x, float *xr, int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, &x[i], 4);
		u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
		memcpy(&xr[i], &u, 4);
	}
}

/* A copy of m's storage as a new source (loaded, then clobbered: backends must not keep it). */
static void qsrc_dup(const struct qsrc *m, struct qsrc *d)
{
	const struct vk_quant_src *s = &m->s;
	size_t nq = (size_t)(s->rows * s->cols), ng = (size_t)(s->rows * (s->cols / s->group_size));
	d->q = malloc(nq);
	d->scale = malloc(sizeof(float) * ng);
	d->zero = malloc(sizeof(float) * ng);
	d->perm = s->perm ? malloc(sizeof(int32_t) * (size_t)s->cols) : NULL;
	ck_assert(d->q && d->scale && d->zero && (!s->perm || d->perm));
	memcpy(d->q, s->q, nq);
	memcpy(d->scale, s->scale, sizeof(float) * ng);
	memcpy(d->zero, s->zero, sizeof(float) * ng);
	if (s->perm)
		memcpy(d->perm, s->perm, sizeof(int32_t) * (size_t)s->cols);
	d->s = *s;
	d->s.q = d->q;
	d->s.scale = d->scale;
	d->s.zero = d->zero;
	d->s.perm = d->perm;
}

static void qsrc_clobber_free(struct qsrc *d)
{
	const struct vk_quant_src *s = &d->s;
	memset(d->q, 0xff, (size_t)(s->rows * s->cols));
	memset(d->scale, 0xff, sizeof(float) * (size_t)(s->rows * (s->cols / s->group_size)));
	if (d->perm)
		memset(d->perm, 0xff, sizeof(int32_t) * (size_t)s->cols);
	qsrc_free(d);
}

/* matmul (with and without bias, every n of ns[]) and embed of every case, four variants each
 * (perm or not, integer or fractional zeros), on one CPU configuration against ref. */
START_TEST(test_parity)
{
	struct vk_backend *cpu = open_be("cpu", configs[_i].isa, configs[_i].threads);
	struct vk_backend *ref = open_be("ref", NULL, NULL);
	uint64_t seed = 1234 + (uint64_t)_i;
	long rounded = 0, dot_cases = 0;   /* dot path: outputs off the unrounded reference */
	long simd2 = 0, differs2 = 0;      /* avx2: kernel cases, outputs != the portable path's */
	struct vk_backend *gen = strcmp(configs[_i].isa, "avx2") == 0 && cpu ?
	                         open_be("cpu", "generic", "1") : NULL;
	if (!cpu) {
		fprintf(stderr, "cpu lacks %s: skipped\n", configs[_i].isa);
		vk_backend_free(ref);
		return;
	}
	for (size_t c = 0; c < sizeof(qcases) / sizeof(qcases[0]); c++)
		for (int variant = 0; variant < 4; variant++) {
			const struct qcase *qc = &qcases[c];
			const int with_perm = variant & 1, frac = variant >> 1;
			const int64_t R = qc->rows, K = qc->cols;
			struct qsrc m, d;
			struct vk_weight wc, wr, bc, br;
			char what[160];
			snprintf(what, sizeof(what), "[%s x%s] %s [%lld, %lld] group %d perm %d frac %d",
			         configs[_i].isa, configs[_i].threads, vk_dtype_name(qc->dt), (long long)R,
			         (long long)K, qc->gs ? qc->gs : (int)K, with_perm, frac);
			ck_assert(qsrc_make(&m, qc->dt, R, K, qc->gs ? qc->gs : (int32_t)K, with_perm,
			                    frac, &seed) == 0);
			qsrc_dup(&m, &d);
			struct vk_weight wg;
			ck_assert_int_eq(cpu->ops->weight_load_quant(cpu, &d.s, &wc), 0);
			ck_assert_int_eq(ref->ops->weight_load_quant(ref, &d.s, &wr), 0);
			if (gen)
				ck_assert_int_eq(gen->ops->weight_load_quant(gen, &d.s, &wg), 0);
			const int simd = m.s.group_size % (qc->dt == VK_DTYPE_Q8 ? 16 : 32) == 0;
			simd2 += gen && simd;
			qsrc_clobber_free(&d);
			ck_assert_int_eq(wc.dtype, qc->dt);
			ck_assert(wc.rows == R && wc.cols == K);

			const int dot = dot_path(_i, &m);
			float *x = malloc(sizeof(float) * (size_t)(40 * K));
			float *xr = malloc(sizeof(float) * (size_t)(40 * K));
			float *ou = malloc(sizeof(float) * (size_t)(40 * R));
			float *og = malloc(sizeof(float) * (size_t)(40 * R));
			const size_t olen = (size_t)(40 * R > 5 * K ? 40 * R : 5 * K);   /* matmul, embed */
			float *oc = malloc(sizeof(float) * olen);
			float *orf = malloc(sizeof(float) * olen);
			float *bias = malloc(sizeof(float) * (size_t)R);
			ck_assert(x && xr && ou && og && oc && orf && bias);
			for (int64_t i = 0; i < 40 * K; i++)
				x[i] = qs_rng_unit(&seed) * 3.0f;
			if (dot)
				round_bf16(x, xr, 40 * K);
			else
				memcpy(xr, x, sizeof(float) * (size_t)(40 * K));
			for (int64_t i = 0; i < R; i++)
				bias[i] = qs_rng_unit(&seed);
			ck_assert_int_eq(cpu->ops->weight_load(cpu, bias, VK_DTYPE_F32, 1, R, &bc), 0);
			ck_assert_int_eq(ref->ops->weight_load(ref, bias, VK_DTYPE_F32, 1, R, &br), 0);
			for (size_t t = 0; t < sizeof(ns) / sizeof(ns[0]); t++)
				for (int ub = 0; ub < 2; ub++) {
					const int n = ns[t];
					for (int64_t i = 0; i < n * R; i++)
						oc[i] = NAN;
					ck_assert_int_eq(cpu->ops->matmul(cpu, x, &wc, ub ? &bc : NULL, n, oc), 0);
					ck_assert_int_eq(ref->ops->matmul(ref, xr, &wr, ub ? &br : NULL, n, orf), 0);
					if (dot)
						ck_assert_int_eq(ref->ops->matmul(ref, x, &wr, ub ? &br : NULL, n, ou), 0);
					if (gen)   /* the bias as fp32 is the same vector the cpu backend got */
						ck_assert_int_eq(gen->ops->matmul(gen, x, &wg, NULL, n, og), 0);
					for (int i = 0; i < n; i++)
						for (int64_t r = 0; r < R; r++) {
							double got = oc[i * R + r], want = orf[i * R + r];
							double tol = qsrc_bound(&m, xr + i * K, r, ub ? bias : NULL);
							rounded += dot && fabs(got - ou[i * R + r]) > tol;
							if (gen) {
								double g2 = og[i * R + r] + (ub ? bias[r] : 0.0f);
								ck_assert_msg(fabs(got - g2) <= 2.0 * tol, "%s n %d: avx2 %.9g, "
								              "portable %.9g", what, n, got, g2);
								differs2 += simd && !ub && oc[i * R + r] != og[i * R + r];
							}
							ck_assert_msg(fabs(got - want) <= tol,
							              "%s n %d bias %d: out[%d][%lld] = %.9g, ref %.9g "
							              "(tolerance %.3g)", what, n, ub, i, (long long)r,
							              got, want, tol);
						}
				}
			/* embed: the table rows dequantized (tokens in range, one substitution) */
			int32_t tok[5] = { 0, (int32_t)(R - 1), 0, (int32_t)(R / 2), 3 };
			struct vk_seq sq = { 0, 5, 0, 0, NULL };
			float sub[2 * 1024];
			for (int64_t i = 0; i < 2 * K; i++)
				sub[i] = qs_rng_unit(&seed);
			struct vk_row_source rs = { 2, 1, VK_DTYPE_F32, 0, (int64_t)(K * 4), sub };
			struct vk_batch b = { 5, 1, tok, NULL, &sq, 1, &rs };
			tok[2] = -7;   /* substituted: never looked up */
			ck_assert_int_eq(cpu->ops->embed(cpu, &wc, &b, oc), 0);
			ck_assert_int_eq(ref->ops->embed(ref, &wr, &b, orf), 0);
			for (int64_t i = 0; i < 5 * K; i++) {
				/* the weight is fma(q, s, -(s * z)): two fp32 roundings of |w| + |s z| */
				int64_t t = i / K, col = i % K;
				double tol = 0.0;
				if (t == 2) {
					ck_assert_float_eq(oc[i], sub[col]);
					continue;
				}
				for (int64_t cc = 0; cc < K; cc++)
					if ((m.perm ? m.perm[cc] : cc) == col) {
						size_t g = (size_t)tok[t] * (size_t)(K / m.s.group_size) +
						           (size_t)(cc / m.s.group_size);
						tol = 2.0 * FLT_EPSILON * (fabs((double)orf[i]) +
						                           fabs((double)m.scale[g] * m.zero[g]) +
						                           128.0 * fabs((double)m.scale[g]));
					}
				ck_assert_msg(fabs((double)oc[i] - orf[i]) <= tol,
				              "%s embed row %lld col %lld: %.9g, ref %.9g", what,
				              (long long)t, (long long)col, oc[i], orf[i]);
			}
			dot_cases += dot;
			qsrc_free(&m);
			free(x);
			free(xr);
			free(ou);
			free(og);
			if (gen)
				gen->ops->weight_free(gen, &wg);
			free(oc);
			free(orf);
			free(bias);
			cpu->ops->weight_free(cpu, &wc);
			ref->ops->weight_free(ref, &wr);
			cpu->ops->weight_free(cpu, &bc);
			ref->ops->weight_free(ref, &br);
		}
	ck_assert_msg(!dot_cases || rounded > 0, "[%s x%s]: the bf16 dot path did not run (no output "
	              "differs from the unrounded reference)", configs[_i].isa, configs[_i].threads);
	ck_assert_msg(!simd2 || differs2 > 0, "avx2: %ld cases, no output differs from the portable "
	              "path's (the AVX2 kernel did not run)", simd2);
	if (gen)
		vk_backend_free(gen);
	if (dot_cases)
		fprintf(stderr, "[%s x%s]: %ld cases on the bf16 dot path, %ld outputs off the unrounded "
		        "reference\n", configs[_i].isa, configs[_i].threads, dot_cases, rounded);
	vk_backend_free(cpu);
	vk_backend_free(ref);
}
END_TEST

/* Each row's outputs are bit-identical alone and in batches of 2..40 rows (the serving engine's
 * promise), on the single-threaded and threaded paths, both widths, with act-order. */
START_TEST(test_batch_invariance)
{
	static const struct qcase shapes[] = {
		{ VK_DTYPE_Q8, 37, 256, 64 }, { VK_DTYPE_Q4, 333, 512, 128 }, { VK_DTYPE_Q8, 300, 896, 0 },
		{ VK_DTYPE_Q4, 45, 96, 48 },
	};
	static const int rows[] = { 2, 3, 5, 8, 9, 16, 17, 33, 40 };
	struct vk_backend *cpu = open_be("cpu", configs[_i].isa, configs[_i].threads);
	uint64_t seed = 77;
	if (!cpu)
		return;
	for (size_t s = 0; s < 2 * sizeof(shapes) / sizeof(shapes[0]); s++) {
		const struct qcase *sh = &shapes[s / 2];
		const int64_t R = sh->rows, K = sh->cols;
		struct qsrc m;
		struct vk_weight w;
		/* fractional zeros (fp32 path), integer zeros (the dot path where the CPU has it) */
		ck_assert(qsrc_make(&m, sh->dt, R, K, sh->gs ? sh->gs : (int32_t)K, 1, !(s & 1),
		                    &seed) == 0);
		ck_assert_int_eq(cpu->ops->weight_load_quant(cpu, &m.s, &w), 0);
		float *x = malloc(sizeof(float) * (size_t)(40 * K));
		float *one = malloc(sizeof(float) * (size_t)(40 * R));
		float *all = malloc(sizeof(float) * (size_t)(40 * R));
		ck_assert(x && one && all);
		for (int64_t i = 0; i < 40 * K; i++)
			x[i] = qs_rng_unit(&seed);
		for (int i = 0; i < 40; i++)
			ck_assert_int_eq(cpu->ops->matmul(cpu, x + i * K, &w, NULL, 1, one + i * R), 0);
		for (size_t t = 0; t < sizeof(rows) / sizeof(rows[0]); t++) {
			ck_assert_int_eq(cpu->ops->matmul(cpu, x, &w, NULL, rows[t], all), 0);
			for (int i = 0; i < rows[t]; i++)
				ck_assert_msg(!memcmp(one + i * R, all + i * R, sizeof(float) * (size_t)R),
				              "%s/%s: %s [%lld x %lld] dot %d: row %d of %d differs from the row "
				              "alone", configs[_i].isa, configs[_i].threads,
				              vk_dtype_name(sh->dt), (long long)R, (long long)K,
				              dot_path(_i, &m), i, rows[t]);
		}
		cpu->ops->weight_free(cpu, &w);
		qsrc_free(&m);
		free(x);
		free(one);
		free(all);
	}
	vk_backend_free(cpu);
}
END_TEST

/* Malformed sources: -EINVAL and a message naming the fault, on ref and cpu; nothing loaded. */
START_TEST(test_malformed)
{
	struct vk_backend *be = _i == 0 ? open_be("ref", NULL, NULL) : open_be("cpu", NULL, "2");
	uint64_t seed = 5;
	struct qsrc m;
	struct vk_weight w;
	struct vk_quant_src s;

	ck_assert(qsrc_make(&m, VK_DTYPE_Q4, 4, 64, 32, 1, 0, &seed) == 0);
	ck_assert_int_eq(be->ops->weight_load_quant(be, &m.s, &w), 0);   /* the good one loads */
	be->ops->weight_free(be, &w);

	m.q[77] = 16;                                                     /* value >= 2^4 */
	ck_assert_int_eq(be->ops->weight_load_quant(be, &m.s, &w), -EINVAL);
	ck_assert_ptr_nonnull(strstr(vk_backend_error(be), "2^4"));
	m.q[77] = 15;

	s = m.s;
	s.group_size = 48;                                                /* does not divide 64 */
	ck_assert_int_eq(be->ops->weight_load_quant(be, &s, &w), -EINVAL);
	ck_assert_ptr_nonnull(strstr(vk_backend_error(be), "group_size"));
	s.group_size = 0;
	ck_assert_int_eq(be->ops->weight_load_quant(be, &s, &w), -EINVAL);

	int32_t p = m.perm[5];
	m.perm[5] = m.perm[6];                                            /* a duplicate */
	ck_assert_int_eq(be->ops->weight_load_quant(be, &m.s, &w), -EINVAL);
	ck_assert_ptr_nonnull(strstr(vk_backend_error(be), "permutation"));
	m.perm[5] = 64;                                                   /* out of range */
	ck_assert_int_eq(be->ops->weight_load_quant(be, &m.s, &w), -EINVAL);
	ck_assert_ptr_nonnull(strstr(vk_backend_error(be), "permutation"));
	m.perm[5] = p;

	s = m.s;
	s.dtype = VK_DTYPE_BF16;                                          /* not a quantized dtype */
	ck_assert_int_eq(be->ops->weight_load_quant(be, &s, &w), -EINVAL);
	ck_assert_ptr_nonnull(strstr(vk_backend_error(be), "bf16"));
	s = m.s;
	s.q = NULL;
	ck_assert_int_eq(be->ops->weight_load_quant(be, &s, &w), -EINVAL);
	s = m.s;
	s.rows = 0;
	ck_assert_int_eq(be->ops->weight_load_quant(be, &s, &w), -EINVAL);
	m.scale[3] = INFINITY;
	ck_assert_int_eq(be->ops->weight_load_quant(be, &m.s, &w), -EINVAL);
	ck_assert_ptr_nonnull(strstr(vk_backend_error(be), "finite"));
	m.scale[3] = 1.0f;
	ck_assert_int_eq(be->ops->weight_load_quant(be, NULL, &w), -EINVAL);

	/* Q8 accepts 255 where Q4 refuses 16 */
	qsrc_free(&m);
	ck_assert(qsrc_make(&m, VK_DTYPE_Q8, 3, 32, 32, 0, 0, &seed) == 0);
	m.q[10] = 255;
	ck_assert_int_eq(be->ops->weight_load_quant(be, &m.s, &w), 0);
	/* a quantized weight is no norm vector on the cpu backend */
	if (_i == 1) {
		float xin[32] = { 1 }, out[32];
		struct vk_weight w1;
		qsrc_free(&m);
		ck_assert(qsrc_make(&m, VK_DTYPE_Q8, 1, 32, 32, 0, 0, &seed) == 0);
		ck_assert_int_eq(be->ops->weight_load_quant(be, &m.s, &w1), 0);
		ck_assert_int_eq(be->ops->rmsnorm(be, xin, &w1, 1e-6f, 1, 32, out), -EINVAL);
		be->ops->weight_free(be, &w1);
	}
	be->ops->weight_free(be, &w);
	qsrc_free(&m);
	vk_backend_free(be);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("kernels-quant");
	TCase *tc = tcase_create("quant");
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_ref_closed_form);
	tcase_add_loop_test(tc, test_malformed, 0, 2);
	tcase_add_loop_test(tc, test_parity, 0, (int)(sizeof(configs) / sizeof(configs[0])));
	tcase_add_loop_test(tc, test_batch_invariance, 0, (int)(sizeof(configs) / sizeof(configs[0])));
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
