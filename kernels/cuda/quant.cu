/*
 * kernels/cuda/quant.cu — quantized matmul and embedding kernels of the CUDA backend (layout and
 * contract in quant.h).
 *
 * Why so: decode (n <= 8) is bandwidth-bound, so one warp streams a weight row once (4 bytes per
 * lane per step: 4 Q8 or 8 Q4 values), dequantizes in registers with the CPU backend's formula
 * and multiplies all n rows; prefill dequantizes 64-row x 16-column weight tiles into shared
 * memory and runs an fp32 tiled GEMM (4 x 4 outputs per thread). Products and sums are fp32
 * with fp32 activations, like the CPU backend; a bf16 tensor-core path for large n (the weights
 * q - zero are exact in bf16 when zeros are integers) would be the next step.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/quant.h"

/* ---------------------------------------------------------------- host: check, pack */

int vk_cuda_quant_check(const struct vk_quant_src *s, char *err, size_t err_len)
{
	if (!s || (s->dtype != VK_DTYPE_Q8 && s->dtype != VK_DTYPE_Q4)) {
		snprintf(err, err_len, "weight_load_quant: no source or dtype %d is not q8 or q4",
		         s ? (int)s->dtype : -1);
		return -EINVAL;
	}
	const int bits = s->dtype == VK_DTYPE_Q8 ? 8 : 4;
	if (s->rows < 1 || s->cols < 1 || s->rows > INT32_MAX || s->cols > INT32_MAX / 2 ||
	    s->group_size < 1 || s->cols % s->group_size || !s->q || !s->scale || !s->zero) {
		snprintf(err, err_len, "weight_load_quant: bad shape [%lld, %lld], group_size %d or "
		         "missing arrays", (long long)s->rows, (long long)s->cols, s->group_size);
		return -EINVAL;
	}
	const size_t n = (size_t)s->rows * (size_t)s->cols;
	const size_t ng = (size_t)s->rows * (size_t)(s->cols / s->group_size);
	for (size_t i = 0; i < n; i++)
		if (s->q[i] >> bits) {
			snprintf(err, err_len, "weight_load_quant: value %u at %zu is not below 2^%d",
			         s->q[i], i, bits);
			return -EINVAL;
		}
	for (size_t i = 0; i < ng; i++)
		if (!isfinite(s->scale[i]) || !isfinite(s->zero[i])) {
			snprintf(err, err_len, "weight_load_quant: scale or zero %zu is not finite", i);
			return -EINVAL;
		}
	if (s->perm) {
		unsigned char *seen = (unsigned char *)calloc((size_t)s->cols, 1);
		if (!seen) {
			snprintf(err, err_len, "weight_load_quant: out of host memory");
			return -ENOMEM;
		}
		for (int64_t c = 0; c < s->cols; c++) {
			const int32_t p = s->perm[c];
			if (p < 0 || p >= s->cols || seen[p]) {
				free(seen);
				snprintf(err, err_len, "weight_load_quant: perm[%lld] = %d: not a permutation",
				         (long long)c, p);
				return -EINVAL;
			}
			seen[p] = 1;
		}
		free(seen);
	}
	return 0;
}

static size_t up16(size_t v)
{
	return (v + 15) & ~(size_t)15;
}

int vk_cuda_quant_pack(const struct vk_quant_src *s, void **ret_img, size_t *ret_bytes,
                       struct vk_cuda_qw *qw)
{
	const int bits = s->dtype == VK_DTYPE_Q8 ? 8 : 4;
	const int64_t R = s->rows, K = s->cols;
	const size_t ng = (size_t)(K / s->group_size);
	const size_t rb = ((bits == 8 ? (size_t)K : (size_t)(K + 1) / 2) + 3) & ~(size_t)3;
	const size_t off_s = up16(rb * (size_t)R);
	const size_t off_z = off_s + up16(sizeof(float) * ng * (size_t)R);
	const size_t off_p = off_z + up16(sizeof(float) * ng * (size_t)R);
	const size_t bytes = off_p + (s->perm ? up16(sizeof(int32_t) * (size_t)K) : 0);
	unsigned char *img = (unsigned char *)calloc(bytes, 1);
	if (!img)
		return -ENOMEM;
	for (int64_t r = 0; r < R; r++) {
		const uint8_t *src = s->q + (size_t)r * (size_t)K;
		uint8_t *d = img + (size_t)r * rb;
		if (bits == 8)
			memcpy(d, src, (size_t)K);
		else
			for (int64_t c = 0; c < K; c++)
				d[c / 2] |= (uint8_t)(src[c] << (4 * (c & 1)));
	}
	float *sc = (float *)(img + off_s), *nz = (float *)(img + off_z);
	for (size_t g = 0; g < ng * (size_t)R; g++) {
		sc[g] = s->scale[g];
		nz[g] = -(s->scale[g] * s->zero[g]);
	}
	if (s->perm)
		memcpy(img + off_p, s->perm, sizeof(int32_t) * (size_t)K);
	qw->bits = bits;
	qw->rows = (int32_t)R;
	qw->cols = (int32_t)K;
	qw->group_size = s->group_size;
	qw->n_groups = (int32_t)ng;
	qw->row_bytes = (int32_t)rb;
	qw->q = (const uint8_t *)0;
	qw->scale = (const float *)(uintptr_t)off_s;
	qw->nsz = (const float *)(uintptr_t)off_z;
	qw->perm = s->perm ? (const int32_t *)(uintptr_t)off_p : NULL;
	*ret_img = img;
	*ret_bytes = bytes;
	return 0;
}

void vk_cuda_quant_rebase(struct vk_cuda_qw *qw, const void *base)
{
	const uintptr_t b = (uintptr_t)base;
	qw->q = (const uint8_t *)(b + (uintptr_t)qw->q);
	qw->scale = (const float *)(b + (uintptr_t)qw->scale);
	qw->nsz = (const float *)(b + (uintptr_t)qw->nsz);
	if (qw->perm)
		qw->perm = (const int32_t *)(b + (uintptr_t)qw->perm);
}

/* ---------------------------------------------------------------- device helpers */

/* Weight (r, storage column c) as fp32. */
__device__ __forceinline__ float qweight(const vk_cuda_qw &w, int32_t r, int32_t c)
{
	const uint8_t *row = w.q + (int64_t)r * w.row_bytes;
	const unsigned v = w.bits == 8 ? row[c] : (row[c >> 1] >> (4 * (c & 1))) & 15u;
	const int64_t g = (int64_t)r * w.n_groups + c / w.group_size;
	return fmaf((float)v, w.scale[g], w.nsz[g]);
}

/* ---------------------------------------------------------------- GEMV (n <= 8) */

constexpr int QGEMV_WARPS = 8;

template <int NR>
__global__ void __launch_bounds__(QGEMV_WARPS * 32) qgemv_kernel(const float *x, vk_cuda_qw w,
                                                                 const float *bias, int32_t n,
                                                                 float *out)
{
	const int lane = threadIdx.x & 31;
	const int32_t o = (int32_t)blockIdx.x * QGEMV_WARPS + (int32_t)(threadIdx.x >> 5);
	if (o >= w.rows)
		return;   /* warp-uniform; no block barrier in this kernel */
	const int32_t k = w.cols;
	const uint32_t *row = (const uint32_t *)(w.q + (int64_t)o * w.row_bytes);
	const int32_t per = w.bits == 8 ? 4 : 8;           /* values per 4-byte word */
	const int32_t words = (k + per - 1) / per;
	const float *sc = w.scale + (int64_t)o * w.n_groups, *nz = w.nsz + (int64_t)o * w.n_groups;
	float acc[NR];
#pragma unroll
	for (int r = 0; r < NR; r++)
		acc[r] = 0.0f;
#pragma unroll 2
	for (int32_t wd = lane; wd < words; wd += 32) {
		const uint32_t u = row[wd];
		for (int e = 0; e < per; e++) {
			const int32_t c = wd * per + e;
			if (c >= k)
				break;
			const unsigned v = per == 4 ? (u >> (8 * e)) & 255u : (u >> (4 * e)) & 15u;
			const int32_t g = c / w.group_size;
			const float wf = fmaf((float)v, sc[g], nz[g]);
			const int32_t xc = w.perm ? w.perm[c] : c;
#pragma unroll
			for (int r = 0; r < NR; r++)
				if (r < n)
					acc[r] = fmaf(x[(int64_t)r * k + xc], wf, acc[r]);
		}
	}
#pragma unroll
	for (int r = 0; r < NR; r++) {
		if (r >= n)
			break;
		float v = acc[r];
		for (int off = 16; off > 0; off >>= 1)
			v += __shfl_xor_sync(0xffffffffu, v, off);
		if (lane == 0)
			out[(int64_t)r * w.rows + o] = v + (bias ? bias[o] : 0.0f);
	}
}

/* ---------------------------------------------------------------- tiled GEMM (n > 8) */

constexpr int QT_M = 64;    /* weight rows (outputs) per block */
constexpr int QT_N = 64;    /* activation rows per block */
constexpr int QT_K = 16;

/* 256 threads, 16 x 16; thread (ty, tx) computes activation rows ty + 16 i and weight rows
 * tx + 16 j, i, j < 4. */
__global__ void __launch_bounds__(256) qgemm_kernel(const float *x, vk_cuda_qw w,
                                                    const float *bias, int32_t n, float *out)
{
	__shared__ float xs[QT_K][QT_N + 1];
	__shared__ float ws[QT_K][QT_M + 1];
	const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
	const int32_t m0 = (int32_t)blockIdx.x * QT_M, n0 = (int32_t)blockIdx.y * QT_N;
	const int32_t k = w.cols;
	float acc[4][4];
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 4; j++)
			acc[i][j] = 0.0f;
	for (int32_t k0 = 0; k0 < k; k0 += QT_K) {
		/* 1024 elements of each tile, 4 per thread: element e = threadIdx.x + 256 t is
		 * (row e / 16, column e % 16) */
		for (int t = 0; t < 4; t++) {
			const int e = (int)threadIdx.x + 256 * t;
			const int rr = e >> 4, cc = e & 15;
			const int32_t c = k0 + cc;
			float xv = 0.0f, wv = 0.0f;
			if (c < k) {
				if (n0 + rr < n)
					xv = x[(int64_t)(n0 + rr) * k + (w.perm ? w.perm[c] : c)];
				if (m0 + rr < w.rows)
					wv = qweight(w, m0 + rr, c);
			}
			xs[cc][rr] = xv;
			ws[cc][rr] = wv;
		}
		__syncthreads();
#pragma unroll
		for (int kk = 0; kk < QT_K; kk++) {
			float a[4], b[4];
			for (int i = 0; i < 4; i++)
				a[i] = xs[kk][ty + 16 * i];
			for (int j = 0; j < 4; j++)
				b[j] = ws[kk][tx + 16 * j];
			for (int i = 0; i < 4; i++)
				for (int j = 0; j < 4; j++)
					acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
		}
		__syncthreads();
	}
	for (int i = 0; i < 4; i++) {
		const int32_t r = n0 + ty + 16 * i;
		if (r >= n)
			continue;
		for (int j = 0; j < 4; j++) {
			const int32_t o = m0 + tx + 16 * j;
			if (o < w.rows)
				out[(int64_t)r * w.rows + o] = acc[i][j] + (bias ? bias[o] : 0.0f);
		}
	}
}

cudaError_t vk_cuda_qmatmul(cudaStream_t s, const float *x, const struct vk_cuda_qw *w,
                            const float *bias, int32_t n, float *out)
{
	if (n <= 0 || w->rows <= 0)
		return cudaSuccess;
	if (n <= 8) {
		const unsigned grid = (unsigned)((w->rows + QGEMV_WARPS - 1) / QGEMV_WARPS);
		if (n <= 2)
			qgemv_kernel<2><<<grid, QGEMV_WARPS * 32, 0, s>>>(x, *w, bias, n, out);
		else if (n <= 4)
			qgemv_kernel<4><<<grid, QGEMV_WARPS * 32, 0, s>>>(x, *w, bias, n, out);
		else
			qgemv_kernel<8><<<grid, QGEMV_WARPS * 32, 0, s>>>(x, *w, bias, n, out);
		return cudaGetLastError();
	}
	const dim3 grid((unsigned)((w->rows + QT_M - 1) / QT_M), (unsigned)((n + QT_N - 1) / QT_N));
	qgemm_kernel<<<grid, 256, 0, s>>>(x, *w, bias, n, out);
	return cudaGetLastError();
}

/* ---------------------------------------------------------------- embed */

__device__ __forceinline__ float src_elem(const void *p, int dtype, int64_t i)
{
	if (dtype == VK_DTYPE_F32)
		return ((const float *)p)[i];
	if (dtype == VK_DTYPE_BF16)
		return __uint_as_float((unsigned)((const uint16_t *)p)[i] << 16);
	return __half2float(((const __half *)p)[i]);
}

__global__ void qembed_kernel(vk_cuda_qw w, const int32_t *tokens, const int32_t *row_sub,
                              const vk_cuda_sub *subs, float *x)
{
	const int32_t t = (int32_t)blockIdx.x, hidden = w.cols;
	float *dst = x + (int64_t)t * hidden;   /* [hidden] */
	const int32_t si = row_sub[t];
	if (si >= 0) {
		const vk_cuda_sub sub = subs[si];
		const char *src = (const char *)sub.data + (int64_t)(t - sub.row) * sub.row_stride;
		for (int32_t c = threadIdx.x; c < hidden; c += blockDim.x)
			dst[c] = src_elem(src, sub.dtype, c);
		return;
	}
	const int32_t tok = tokens[t];
	for (int32_t c = threadIdx.x; c < hidden; c += blockDim.x)
		dst[w.perm ? w.perm[c] : c] = qweight(w, tok, c);
}

cudaError_t vk_cuda_qembed(cudaStream_t s, const struct vk_cuda_qw *w, const int32_t *tokens,
                           const int32_t *row_sub, const struct vk_cuda_sub *subs,
                           int32_t n_tokens, float *x)
{
	if (n_tokens <= 0)
		return cudaSuccess;
	qembed_kernel<<<n_tokens, 256, 0, s>>>(*w, tokens, row_sub, subs, x);
	return cudaGetLastError();
}
