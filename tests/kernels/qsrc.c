/*
 * tests/kernels/qsrc.c — random quantized matrices and their matmul error bound (qsrc.h).
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "qsrc.h"

uint64_t qs_rng_next(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return *s >> 33;
}

float qs_rng_unit(uint64_t *s)
{
	return (float)((double)qs_rng_next(s) / 2147483648.0 * 2.0 - 1.0);
}

void qsrc_free(struct qsrc *m)
{
	free(m->q);
	free(m->scale);
	free(m->zero);
	free(m->perm);
	m->q = NULL;
	m->scale = m->zero = NULL;
	m->perm = NULL;
}

int qsrc_make(struct qsrc *m, enum vk_dtype dt, int64_t rows, int64_t cols, int32_t gs,
              int with_perm, int frac_zero, uint64_t *seed)
{
	const int bits = dt == VK_DTYPE_Q8 ? 8 : 4;
	const int64_t ng = rows * (cols / gs);

	m->q = malloc((size_t)(rows * cols));
	m->scale = malloc(sizeof(float) * (size_t)ng);
	m->zero = malloc(sizeof(float) * (size_t)ng);
	m->perm = with_perm ? malloc(sizeof(int32_t) * (size_t)cols) : NULL;
	if (!m->q || !m->scale || !m->zero || (with_perm && !m->perm)) {
		qsrc_free(m);
		return -ENOMEM;
	}
	for (int64_t i = 0; i < rows * cols; i++)
		m->q[i] = (uint8_t)(qs_rng_next(seed) & ((1u << bits) - 1));
	for (int64_t g = 0; g < ng; g++) {
		m->scale[g] = (0.2f + 0.8f * (qs_rng_unit(seed) + 1.0f)) / (float)(1 << bits);
		float z = (float)(qs_rng_next(seed) % (1u << bits));
		if (frac_zero)
			z += (qs_rng_unit(seed) + 1.0f) * 0.5f;
		m->zero[g] = z;
	}
	if (with_perm) {
		for (int64_t c = 0; c < cols; c++)
			m->perm[c] = (int32_t)c;
		for (int64_t c = cols - 1; c > 0; c--) {
			int64_t o = (int64_t)(qs_rng_next(seed) % (uint64_t)(c + 1));
			int32_t t = m->perm[c];
			m->perm[c] = m->perm[o];
			m->perm[o] = t;
		}
	}
	m->s = (struct vk_quant_src){ dt, rows, cols, gs, m->q, m->scale, m->zero, m->perm };
	return 0;
}

double qsrc_bound(const struct qsrc *m, const float *x, int64_t r, const float *bias)
{
	const struct vk_quant_src *s = &m->s;
	double acc = bias ? fabs(bias[r]) : 0.0;

	for (int64_t c = 0; c < s->cols; c++) {
		size_t g = (size_t)r * (size_t)(s->cols / s->group_size) + (size_t)(c / s->group_size);
		/* the zero term as either backend may hold it: scale * zero or scale * (zero - 128) */
		double sz = fabs((double)s->scale[g] * s->zero[g]) + 128.0 * fabs((double)s->scale[g]);
		double w = fabs(((double)s->q[(size_t)(r * s->cols + c)] - s->zero[g]) * s->scale[g]);
		acc += fabs((double)x[s->perm ? s->perm[c] : c]) * (w + sz);
	}
	return ((double)s->cols / 8.0 + 32.0) * FLT_EPSILON * acc + 1e-30;
}
