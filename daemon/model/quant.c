/*
 * daemon/model/quant.c — GPTQ / AWQ unpacking and load-time int8 quantization (see quant.h).
 *
 * Layouts, W the HF Linear weight [N = out, K = in], pf = 32 / bits values per int32 word,
 * G groups of gs input columns (docs/QUANTIZATION.md has the sources):
 *   GPTQ  qweight [K / pf, N]   q(k, n) = qweight[k / pf][n] >> (bits * (k % pf)) & mask
 *         qzeros  [G, N / pf]   z(g, n) = (qzeros[g][n / pf] >> (bits * (n % pf)) & mask)
 *                                         + zero_offset (1 in the v1 format)
 *         scales  [G, N]        g_idx [K]: group of input k (default k / gs)
 *         W[n][k] = scales[g][n] * (q(k, n) - z(g, n)),  g = g_idx[k]
 *   AWQ   qweight [K, N / 8]    q(k, n) = qweight[k][n / 8] >> (4 * pos[n % 8]) & 15, with
 *                               pos = {0, 4, 1, 5, 2, 6, 3, 7} (the inverse of AWQ's pack order
 *                               {0, 2, 4, 6, 1, 3, 5, 7})
 *         qzeros  [G, N / 8]    same packing; scales [G, N]; g = k / gs
 * Act-order (g_idx not k / gs) becomes the source's perm: input columns sorted by group (stable),
 * so each group is gs contiguous storage columns, as struct vk_quant_src wants.
 */
#include "daemon/model/errmsg.h"
#include "daemon/model/quant.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/convert.h"

void vd_qsrc_free(struct vd_qsrc *q)
{
	free(q->q);
	free(q->scale);
	free(q->zero);
	free(q->perm);
	memset(q, 0, sizeof(*q));
}

int vd_quant_present(const struct vd_weights *w, const char *prefix)
{
	char rel[256];

	if (snprintf(rel, sizeof(rel), "%s.qweight", prefix) >= (int)sizeof(rel))
		return 0;
	return vd_weights_has(w, rel);
}

uint64_t vd_quant_step_bytes(const struct vk_quant_src *s)
{
	uint64_t bits = s->dtype == VK_DTYPE_Q4 ? 4 : 8;
	uint64_t groups = (uint64_t)(s->cols / s->group_size);

	return (uint64_t)s->rows * (uint64_t)s->cols * bits / 8 + (uint64_t)s->rows * groups * 8;
}

static float to_float(const struct vd_tensor *t, size_t i)
{
	switch (t->dtype) {
	case VD_ST_F32: return ((const float *)t->data)[i];
	case VD_ST_F16: return vk_f16_to_f32(((const uint16_t *)t->data)[i]);
	default: return vk_bf16_to_f32(((const uint16_t *)t->data)[i]);
	}
}

static int alloc_src(struct vd_qsrc *r, enum vk_dtype dt, int64_t rows, int64_t cols, int32_t gs,
                     char *err, size_t err_len)
{
	size_t groups = (size_t)(cols / gs);

	memset(r, 0, sizeof(*r));
	r->q = malloc((size_t)rows * (size_t)cols);
	r->scale = malloc((size_t)rows * groups * sizeof(float));
	r->zero = malloc((size_t)rows * groups * sizeof(float));
	if (!r->q || !r->scale || !r->zero) {
		vd_qsrc_free(r);
		return vd_fail(err, err_len, -ENOMEM, "out of memory");
	}
	r->src = (struct vk_quant_src){ .dtype = dt, .rows = rows, .cols = cols, .group_size = gs,
	                                .q = r->q, .scale = r->scale, .zero = r->zero };
	return 0;
}

int vd_quant_int8(const struct vd_tensor *t, int64_t rows, int64_t cols, struct vd_qsrc *ret,
                  char *err, size_t err_len)
{
	int rc = alloc_src(ret, VK_DTYPE_Q8, rows, cols, (int32_t)cols, err, err_len);

	if (rc < 0)
		return rc;
	if (t->dtype != VD_ST_F32 && t->dtype != VD_ST_F16 && t->dtype != VD_ST_BF16) {
		vd_qsrc_free(ret);
		return vd_fail(err, err_len, -ENOTSUP, "tensor '%s': cannot quantize dtype %d", t->name,
		            (int)t->dtype);
	}
	for (int64_t r = 0; r < rows; r++) {
		size_t base = (size_t)r * (size_t)cols;
		float amax = 0;

		for (int64_t c = 0; c < cols; c++) {
			float a = fabsf(to_float(t, base + (size_t)c));
			if (a > amax)
				amax = a;
		}
		float s = amax > 0 ? amax / 127.0f : 1.0f;
		for (int64_t c = 0; c < cols; c++) {
			float v = nearbyintf(to_float(t, base + (size_t)c) / s);
			v = v < -127 ? -127 : v > 127 ? 127 : v;
			ret->q[base + (size_t)c] = (uint8_t)(int)(v + 128);
		}
		ret->scale[r] = s;
		ret->zero[r] = 128;
	}
	ret->file_bytes = t->bytes;
	ret->n_tensors = 1;
	return 0;
}

/* t = PREFIX.WHAT, I32 [d0, d1] (d1 = 0: a vector [d0]). */
static int get_i32(const struct vd_weights *w, const char *prefix, const char *what, int64_t d0,
                   int64_t d1, struct vd_tensor *t, char *err, size_t err_len)
{
	char rel[256];
	int64_t shape[2] = { d0, d1 };

	snprintf(rel, sizeof(rel), "%s.%s", prefix, what);
	return vd_weights_get_typed(w, rel, VD_ST_I32, d1 ? 2 : 1, shape, t, err, err_len);
}

int vd_quant_unpack(const struct vd_weights *w, const struct vd_quant_config *qc,
                    const char *prefix, int64_t rows, int64_t cols, struct vd_qsrc *ret,
                    char *err, size_t err_len)
{
	const int64_t N = rows, K = cols;
	const int bits = qc->bits, pf = 32 / bits;
	const uint32_t mask = (1u << bits) - 1;
	const int awq = qc->method == VD_QUANT_AWQ;
	struct vd_tensor tq, tz, ts, tg = { 0 };
	char rel[256];
	int rc;

	memset(ret, 0, sizeof(*ret));
	if (qc->method != VD_QUANT_GPTQ && !awq)
		return vd_fail(err, err_len, -EINVAL, "%s: not a GPTQ / AWQ checkpoint", prefix);
	int64_t gs = qc->group_size == -1 ? K : qc->group_size;
	if (K % gs || N % pf || (!awq && K % pf))
		return vd_fail(err, err_len, -EINVAL, "%s: [%lld, %lld] does not split into %d-bit "
		            "words and groups of %lld input columns", prefix, (long long)N, (long long)K,
		            bits, (long long)gs);
	const int64_t G = K / gs;
	if (awq) {
		if ((rc = get_i32(w, prefix, "qweight", K, N / 8, &tq, err, err_len)) < 0 ||
		    (rc = get_i32(w, prefix, "qzeros", G, N / 8, &tz, err, err_len)) < 0)
			return rc;
	} else {
		if ((rc = get_i32(w, prefix, "qweight", K / pf, N, &tq, err, err_len)) < 0 ||
		    (rc = get_i32(w, prefix, "qzeros", G, N / pf, &tz, err, err_len)) < 0)
			return rc;
		snprintf(rel, sizeof(rel), "%s.g_idx", prefix);
		if (vd_weights_has(w, rel) &&
		    (rc = get_i32(w, prefix, "g_idx", K, 0, &tg, err, err_len)) < 0)
			return rc;
	}
	int64_t sshape[2] = { G, N };
	snprintf(rel, sizeof(rel), "%s.scales", prefix);
	if ((rc = vd_weights_get(w, rel, 2, sshape, &ts, err, err_len)) < 0)
		return rc;
	rc = alloc_src(ret, bits == 4 ? VK_DTYPE_Q4 : VK_DTYPE_Q8, N, K, (int32_t)gs, err, err_len);
	if (rc < 0)
		return rc;
	ret->file_bytes = tq.bytes + tz.bytes + ts.bytes + tg.bytes;
	ret->n_tensors = tg.data ? 4 : 3;

	/* storage order of the input columns: sorted by group when g_idx is not k / gs */
	const int32_t *gidx = tg.data;
	int identity = 1;
	for (int64_t k = 0; gidx && k < K; k++) {
		if (gidx[k] < 0 || gidx[k] >= G) {
			rc = vd_fail(err, err_len, -EINVAL, "tensor '%s': g_idx[%lld] = %d is not a group "
			          "in [0, %lld)", tg.name, (long long)k, gidx[k], (long long)G);
			goto fail;
		}
		identity &= gidx[k] == k / gs;
	}
	if (!identity) {
		int64_t *fill = calloc((size_t)G, sizeof(*fill));
		ret->perm = malloc((size_t)K * sizeof(int32_t));
		if (!fill || !ret->perm) {
			free(fill);
			rc = vd_fail(err, err_len, -ENOMEM, "out of memory");
			goto fail;
		}
		for (int64_t k = 0; k < K; k++)
			fill[gidx[k]]++;
		for (int64_t g = 0; g < G; g++)
			if (fill[g] != gs) {
				rc = vd_fail(err, err_len, -EINVAL, "tensor '%s': group %lld has %lld input "
				          "columns, group_size is %lld", tg.name, (long long)g,
				          (long long)fill[g], (long long)gs);
				free(fill);
				goto fail;
			}
		for (int64_t g = 0; g < G; g++)
			fill[g] = g * gs;
		for (int64_t k = 0; k < K; k++)
			ret->perm[fill[gidx[k]]++] = (int32_t)k;
		free(fill);
		ret->src.perm = ret->perm;
	}

	const uint32_t *qw = tq.data, *qz = tz.data;
	static const int awq_pos[8] = { 0, 4, 1, 5, 2, 6, 3, 7 };
	for (int64_t n = 0; n < N; n++) {
		uint8_t *dst = ret->q + (size_t)n * (size_t)K;
		for (int64_t c = 0; c < K; c++) {
			int64_t k = ret->perm ? ret->perm[c] : c;
			uint32_t word, shift;
			if (awq) {
				word = qw[(size_t)k * (size_t)(N / 8) + (size_t)(n / 8)];
				shift = 4u * (uint32_t)awq_pos[n % 8];
			} else {
				word = qw[(size_t)(k / pf) * (size_t)N + (size_t)n];
				shift = (uint32_t)(bits * (k % pf));
			}
			dst[c] = (uint8_t)((word >> shift) & mask);
		}
		for (int64_t g = 0; g < G; g++) {
			uint32_t zw, shift;
			if (awq) {
				zw = qz[(size_t)g * (size_t)(N / 8) + (size_t)(n / 8)];
				shift = 4u * (uint32_t)awq_pos[n % 8];
			} else {
				zw = qz[(size_t)g * (size_t)(N / pf) + (size_t)(n / pf)];
				shift = (uint32_t)(bits * (n % pf));
			}
			ret->zero[n * G + g] = (float)((zw >> shift) & mask) + (float)qc->zero_offset;
			float s = to_float(&ts, (size_t)g * (size_t)N + (size_t)n);
			if (!isfinite(s)) {
				rc = vd_fail(err, err_len, -EINVAL, "tensor '%s': scale [%lld, %lld] is not "
				          "finite", ts.name, (long long)g, (long long)n);
				goto fail;
			}
			ret->scale[n * G + g] = s;
		}
	}
	return 0;
fail:
	vd_qsrc_free(ret);
	return rc;
}
