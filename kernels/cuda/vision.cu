/*
 * kernels/cuda/vision.cu — the vision-tower CUDA kernels (see vision.h).
 *
 * Straightforward first versions, written for correctness (the tower's time is in its GEMMs,
 * which go through gemm.cu): LayerNorm is one block per row with two-pass block reductions;
 * activations and the rotary are element-wise; attention is one warp per (query row, head) with
 * an online softmax over the row's own segment, keys read from global memory, each lane holding
 * head_dim / 32 output accumulators. Nothing is ever sized by the square of a segment.
 */
#include <math.h>

#include "kernels/cuda/vision.h"

namespace {

constexpr int LN_THREADS = 256;

__device__ float block_sum(float v, float *sh)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
	__syncthreads();   /* sh may still be read by a previous call */
	if (lane == 0)
		sh[wid] = v;
	__syncthreads();
	float t = 0.0f;
	for (int i = 0; i < (int)(blockDim.x >> 5); i++)
		t += sh[i];
	return t;
}

__global__ void layernorm_kernel(float *x, const float *delta, const float *w, const float *b,
                                 float eps, int32_t dim, float *out)
{
	__shared__ float sh[32];
	const size_t off = (size_t)blockIdx.x * (size_t)dim;
	float *xr = x + off;
	float s = 0.0f;
	for (int32_t d = threadIdx.x; d < dim; d += blockDim.x) {
		float v = xr[d];
		if (delta) {
			v += delta[off + d];
			xr[d] = v;
		}
		s += v;
	}
	const float mean = block_sum(s, sh) / (float)dim;
	float q = 0.0f;
	for (int32_t d = threadIdx.x; d < dim; d += blockDim.x) {
		float c = xr[d] - mean;
		q += c * c;
	}
	const float inv = 1.0f / sqrtf(block_sum(q, sh) / (float)dim + eps);
	for (int32_t d = threadIdx.x; d < dim; d += blockDim.x) {
		float y = (xr[d] - mean) * inv * w[d];
		out[off + d] = b ? y + b[d] : y;
	}
}

__global__ void activate_kernel(int act, const float *x, int64_t count, float *out)
{
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
	     i += (int64_t)gridDim.x * blockDim.x) {
		float v = x[i];
		if (act == VK_ACT_GELU_ERF)
			out[i] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
		else if (act == VK_ACT_QUICK_GELU)
			out[i] = v / (1.0f + expf(-1.702f * v));
		else
			out[i] = v / (1.0f + expf(-v));
	}
}

/* one thread per (row, head, rotary pair) */
__global__ void rope_2d_kernel(float *x, int64_t ld, int32_t n, int32_t n_heads, int32_t head_dim,
                               const int32_t *pos, float theta)
{
	const int32_t half = head_dim / 2, q = head_dim / 4;
	const int64_t total = (int64_t)n * n_heads * half;
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
	     i += (int64_t)gridDim.x * blockDim.x) {
		const int32_t p = (int32_t)(i % half);
		const int64_t rh = i / half;
		const int32_t h = (int32_t)(rh % n_heads), r = (int32_t)(rh / n_heads);
		const int32_t k = p < q ? p : p - q;
		const float inv = 1.0f / powf(theta, (float)(2 * k) / (float)half);
		const float ang = (float)pos[(p < q ? 0 : (size_t)n) + (size_t)r] * inv;
		const float sn = sinf(ang), cs = cosf(ang);
		float *v = x + (size_t)r * (size_t)ld + (size_t)h * (size_t)head_dim;
		const float a = v[p], b = v[p + half];
		v[p] = a * cs - b * sn;
		v[p + half] = b * cs + a * sn;
	}
}

constexpr int SA_MAX_PER_LANE = 8;   /* head_dim <= 256 */

/* one warp per (row, head) */
__global__ void seg_attention_kernel(const float *q, const float *k, const float *v, int64_t ld,
                                     int32_t n, int32_t n_heads, int32_t head_dim,
                                     const int32_t *seg, const int32_t *row_seg, float scale,
                                     float *out)
{
	const int lane = threadIdx.x & 31;
	const int64_t item = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
	if (item >= (int64_t)n * n_heads)
		return;
	const int32_t row = (int32_t)(item / n_heads), h = (int32_t)(item % n_heads);
	const int32_t s = row_seg[row], s0 = seg[s], s1 = seg[s + 1];
	const size_t hoff = (size_t)h * (size_t)head_dim;
	float qv[SA_MAX_PER_LANE], acc[SA_MAX_PER_LANE];
	for (int e = 0; e < SA_MAX_PER_LANE; e++) {
		const int d = lane + 32 * e;
		qv[e] = d < head_dim ? q[(size_t)row * ld + hoff + d] : 0.0f;
		acc[e] = 0.0f;
	}
	float m = -INFINITY, l = 0.0f;
	for (int32_t t = s0; t < s1; t++) {
		const float *kt = k + (size_t)t * ld + hoff;
		float dot = 0.0f;
		for (int e = 0; e < SA_MAX_PER_LANE; e++) {
			const int d = lane + 32 * e;
			if (d < head_dim)
				dot += qv[e] * kt[d];
		}
		for (int o = 16; o > 0; o >>= 1)
			dot += __shfl_xor_sync(0xffffffffu, dot, o);
		const float sc = dot * scale;
		const float m_new = fmaxf(m, sc);
		const float alpha = expf(m - m_new), p = expf(sc - m_new);
		l = l * alpha + p;
		const float *vt = v + (size_t)t * ld + hoff;
		for (int e = 0; e < SA_MAX_PER_LANE; e++) {
			const int d = lane + 32 * e;
			acc[e] = acc[e] * alpha + (d < head_dim ? p * vt[d] : 0.0f);
		}
		m = m_new;
	}
	float *o = out + ((size_t)row * n_heads + h) * (size_t)head_dim;
	for (int e = 0; e < SA_MAX_PER_LANE; e++) {
		const int d = lane + 32 * e;
		if (d < head_dim)
			o[d] = acc[e] / l;
	}
}

int grid_for(int64_t count, int threads)
{
	int64_t g = (count + threads - 1) / threads;
	return (int)(g < 65535 * 16 ? (g < 1 ? 1 : g) : 65535 * 16);
}

}  // namespace

cudaError_t vk_cuda_layernorm(cudaStream_t s, float *x, const float *delta, const float *w,
                              const float *b, float eps, int32_t n, int32_t dim, float *out)
{
	if (n < 1)
		return cudaSuccess;
	layernorm_kernel<<<n, LN_THREADS, 0, s>>>(x, delta, w, b, eps, dim, out);
	return cudaGetLastError();
}

cudaError_t vk_cuda_activate(cudaStream_t s, int act, const float *x, int64_t count, float *out)
{
	activate_kernel<<<grid_for(count, 256), 256, 0, s>>>(act, x, count, out);
	return cudaGetLastError();
}

cudaError_t vk_cuda_rope_2d(cudaStream_t s, float *x, int64_t ld, int32_t n, int32_t n_heads,
                            int32_t head_dim, const int32_t *pos, float theta)
{
	const int64_t total = (int64_t)n * n_heads * (head_dim / 2);
	rope_2d_kernel<<<grid_for(total, 256), 256, 0, s>>>(x, ld, n, n_heads, head_dim, pos, theta);
	return cudaGetLastError();
}

cudaError_t vk_cuda_seg_attention(cudaStream_t s, const float *q, const float *k, const float *v,
                                  int64_t ld, int32_t n, int32_t n_heads, int32_t head_dim,
                                  const int32_t *seg, const int32_t *row_seg, float *out)
{
	const int64_t threads = (int64_t)n * n_heads * 32;
	const int64_t blocks = (threads + 255) / 256;
	seg_attention_kernel<<<(unsigned)blocks, 256, 0, s>>>(q, k, v, ld, n, n_heads, head_dim, seg,
	                                                      row_seg, 1.0f / sqrtf((float)head_dim),
	                                                      out);
	return cudaGetLastError();
}
