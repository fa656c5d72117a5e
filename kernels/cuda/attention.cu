/*
 * kernels/cuda/attention.cu — causal GQA attention over the paged KV cache, prefill and decode.
 *
 * Why this way: one kernel serves prefill chunks and decode. A block owns one KV head of one
 * sequence, a tile of that sequence's query rows (4 rows for prefill, 1 for decode) and one split
 * of the key range; its warps are the (row, query head) pairs of the GQA group, so every key/value
 * tile fetched from the paged pool into shared memory (converted to fp32 once) serves all of them.
 * Each warp keeps an online softmax (running max m, sum l, output accumulator): lane j scores key j
 * of the tile, lane d accumulates output dims d, d + 32, ... With several splits (decode of long
 * contexts, flash-decoding style) each block writes (acc, m, l) partials that a second kernel
 * merges exactly. fp32 throughout; scores use the HF scale 1/sqrt(head_dim) (applied to q).
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>

#include "kernels/backend.h"
#include "kernels/cuda/attention.h"

namespace {

constexpr int TK = 32;   /* keys per shared-memory tile (one per lane) */

struct attn_args {
	const float *q;
	int32_t head_dim;
	const void *kpool;
	const void *vpool;
	int kv_dtype;
	int32_t block_size;
	int32_t n_heads;
	int32_t n_kv_heads;
	int32_t group;
	int32_t rows_per_tile;
	int32_t max_tiles;
	int32_t n_splits;
	int32_t chunk;
	const int32_t *seq_first;
	const int32_t *seq_n;
	const int32_t *seq_past;
	const int32_t *blocks;
	int32_t max_blocks;
	float *partial;
	float *out;
};

__device__ __forceinline__ float load_kv(const void *p, int dtype, int64_t i)
{
	if (dtype == VK_DTYPE_BF16)
		return __uint_as_float((uint32_t)((const uint16_t *)p)[i] << 16);
	if (dtype == VK_DTYPE_F16)
		return __half2float(((const __half *)p)[i]);
	return ((const float *)p)[i];
}

__device__ __forceinline__ float warp_max(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

__device__ __forceinline__ float warp_sum(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

/* NC = ceil(head_dim / 32): output dims per lane (lane + 32 c). */
template <int NC>
__global__ void attn_kernel(attn_args a)
{
	extern __shared__ float smem[];
	const int HD = a.head_dim;
	const int nwarps = blockDim.x >> 5;
	float *qs = smem;                         /* [nwarps][HD] scaled query of each warp */
	float *ks = qs + nwarps * HD;             /* [TK][HD + 1] (padded: no bank conflicts) */
	float *vs = ks + TK * (HD + 1);           /* [TK][HD + 1] */

	const int32_t seq = blockIdx.x / a.max_tiles;
	const int32_t tile = blockIdx.x % a.max_tiles;
	const int32_t kvh = blockIdx.y;
	const int32_t split = blockIdx.z;
	const int32_t n = a.seq_n[seq];
	const int32_t row0 = tile * a.rows_per_tile;
	if (row0 >= n)
		return;   /* uniform for the block, before any barrier */
	const int32_t past = a.seq_past[seq];
	const int32_t rows_here = min(a.rows_per_tile, n - row0);
	const int32_t tile_ctx = past + row0 + rows_here;   /* keys [0, tile_ctx) */
	const int32_t k_begin = split * a.chunk;
	const int32_t k_end = min(k_begin + a.chunk, tile_ctx);

	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int r = warp / a.group;
	const bool active = r < rows_here;
	const int64_t row = (int64_t)a.seq_first[seq] + row0 + r;
	const int32_t head = kvh * a.group + warp % a.group;
	const int32_t p = past + row0 + r;                  /* this row sees keys [0, p] */
	const int32_t kw = a.n_kv_heads * HD;
	const int32_t *blocks = a.blocks + (int64_t)seq * a.max_blocks;

	if (active) {
		const float scale = 1.0f / sqrtf((float)HD);
		const float *qr = a.q + (row * a.n_heads + head) * (int64_t)HD;
		for (int d = lane; d < HD; d += 32)
			qs[warp * HD + d] = qr[d] * scale;
	}

	float m = -INFINITY, l = 0.0f;
	float acc[NC];
#pragma unroll
	for (int c = 0; c < NC; c++)
		acc[c] = 0.0f;

	for (int32_t t0 = k_begin; t0 < k_end; t0 += TK) {
		__syncthreads();   /* previous tile fully consumed (and qs written, first time) */
		for (int e = threadIdx.x; e < TK * HD; e += blockDim.x) {
			const int j = e / HD, d = e % HD;
			const int32_t kp = t0 + j;
			float kv = 0.0f, vv = 0.0f;
			if (kp < k_end) {
				const int32_t blk = blocks[kp / a.block_size];
				const int64_t off = ((int64_t)blk * a.block_size + kp % a.block_size) * kw +
				                    (int64_t)kvh * HD + d;
				kv = load_kv(a.kpool, a.kv_dtype, off);
				vv = load_kv(a.vpool, a.kv_dtype, off);
			}
			ks[j * (HD + 1) + d] = kv;
			vs[j * (HD + 1) + d] = vv;
		}
		__syncthreads();
		if (!active)
			continue;
		const int32_t kp = t0 + lane;
		float sc = -INFINITY;
		if (kp < k_end && kp <= p) {
			const float *qq = qs + warp * HD;
			const float *kk = ks + lane * (HD + 1);
			float dot = 0.0f;
#pragma unroll 8
			for (int d = 0; d < HD; d++)
				dot += qq[d] * kk[d];
			sc = dot;
		}
		const float mt = warp_max(sc);
		if (mt == -INFINITY)
			continue;   /* warp-uniform: every key of this tile is masked for this row */
		const float mn = fmaxf(m, mt);
		const float corr = expf(m - mn);   /* m = -inf on the first tile: 0 */
		const float pj = sc == -INFINITY ? 0.0f : expf(sc - mn);
		l = l * corr + warp_sum(pj);
#pragma unroll
		for (int c = 0; c < NC; c++)
			acc[c] *= corr;
		const int jmax = min(TK, k_end - t0);
		for (int j = 0; j < jmax; j++) {
			const float w = __shfl_sync(0xffffffffu, pj, j);
			const float *vr = vs + j * (HD + 1);
#pragma unroll
			for (int c = 0; c < NC; c++)
				if (lane + 32 * c < HD)
					acc[c] += w * vr[lane + 32 * c];
		}
		m = mn;
	}

	if (!active)
		return;
	if (a.n_splits == 1) {
		/* the range [0, tile_ctx) holds key 0 <= p, so l > 0 */
		float *o = a.out + (row * a.n_heads + head) * HD;
		const float inv = 1.0f / l;
#pragma unroll
		for (int c = 0; c < NC; c++)
			if (lane + 32 * c < HD)
				o[lane + 32 * c] = acc[c] * inv;
	} else {
		/* partial [n_tokens, n_heads, n_splits, HD + 2]: acc, m, l */
		float *pp = a.partial + ((row * a.n_heads + head) * a.n_splits + split) * (HD + 2);
#pragma unroll
		for (int c = 0; c < NC; c++)
			if (lane + 32 * c < HD)
				pp[lane + 32 * c] = acc[c];
		if (lane == 0) {
			pp[HD] = m;
			pp[HD + 1] = l;
		}
	}
}

/* Merge the splits of one (row, head): exact rescaling to the global max. */
__global__ void attn_combine_kernel(const float *partial, int32_t n_heads, int32_t head_dim,
                                    int32_t n_splits, float *out)
{
	const int64_t rh = (int64_t)blockIdx.x * n_heads + blockIdx.y;
	const float *pp = partial + rh * n_splits * (head_dim + 2);
	float gm = -INFINITY;
	for (int s = 0; s < n_splits; s++)
		gm = fmaxf(gm, pp[s * (head_dim + 2) + head_dim]);
	float gl = 0.0f;
	for (int s = 0; s < n_splits; s++) {
		const float ms = pp[s * (head_dim + 2) + head_dim];
		if (ms != -INFINITY)
			gl += pp[s * (head_dim + 2) + head_dim + 1] * expf(ms - gm);
	}
	const float inv = 1.0f / gl;
	for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
		float acc = 0.0f;
		for (int s = 0; s < n_splits; s++) {
			const float ms = pp[s * (head_dim + 2) + head_dim];
			if (ms != -INFINITY)
				acc += pp[s * (head_dim + 2) + d] * expf(ms - gm);
		}
		out[rh * head_dim + d] = acc * inv;
	}
}

size_t smem_bytes(int hd, int nwarps)
{
	return ((size_t)nwarps * hd + 2 * (size_t)TK * (hd + 1)) * sizeof(float);
}

template <int NC>
cudaError_t launch(cudaStream_t s, const attn_args &a, int32_t n_seqs)
{
	const int nwarps = a.rows_per_tile * a.group;
	const dim3 grid((unsigned)(n_seqs * a.max_tiles), (unsigned)a.n_kv_heads,
	                (unsigned)a.n_splits);
	attn_kernel<NC><<<grid, nwarps * 32, smem_bytes(a.head_dim, nwarps), s>>>(a);
	return cudaGetLastError();
}

} /* namespace */

void vk_cuda_attn_plan_make(struct vk_cuda_attn_plan *p, int32_t n_seqs, int32_t max_n,
                            int32_t max_ctx, int32_t n_kv_heads, int32_t group, int sm_count)
{
	/* warps per block = rows_per_tile * group <= 32 */
	int32_t r = 32 / (group > 0 ? group : 1);
	p->rows_per_tile = max_n <= 1 ? 1 : (r > 4 ? 4 : (r < 1 ? 1 : r));
	p->max_tiles = (max_n + p->rows_per_tile - 1) / p->rows_per_tile;
	if (p->max_tiles < 1)
		p->max_tiles = 1;
	int64_t blocks = (int64_t)n_seqs * p->max_tiles * n_kv_heads;
	int32_t splits = 1;
	const int64_t target = 2LL * (sm_count > 0 ? sm_count : 108);
	if (blocks < target && max_ctx > 512) {
		int64_t want = (target + blocks - 1) / blocks;
		int64_t by_len = (max_ctx + 255) / 256;
		splits = (int32_t)(want < by_len ? want : by_len);
		if (splits > 64)
			splits = 64;
		if (splits < 1)
			splits = 1;
	}
	int32_t chunk = (max_ctx + splits - 1) / splits;
	chunk = (chunk + TK - 1) / TK * TK;
	if (chunk < TK)
		chunk = TK;
	p->chunk = chunk;
	p->n_splits = (max_ctx + chunk - 1) / chunk;
	if (p->n_splits < 1)
		p->n_splits = 1;
}

int64_t vk_cuda_attn_scratch_floats(const struct vk_cuda_attn_plan *p, int32_t n_tokens,
                                    int32_t n_heads, int32_t head_dim)
{
	if (p->n_splits <= 1)
		return 0;
	return (int64_t)n_tokens * n_heads * p->n_splits * (head_dim + 2);
}

int vk_cuda_attn_supported(int32_t head_dim, int32_t group)
{
	return head_dim >= 1 && head_dim <= 256 && group >= 1 && group <= 32;
}

cudaError_t vk_cuda_attn_init(void)
{
	cudaError_t e;
	e = cudaFuncSetAttribute(attn_kernel<1>, cudaFuncAttributeMaxDynamicSharedMemorySize,
	                         (int)smem_bytes(32, 32));
	if (e == cudaSuccess)
		e = cudaFuncSetAttribute(attn_kernel<2>, cudaFuncAttributeMaxDynamicSharedMemorySize,
		                         (int)smem_bytes(64, 32));
	if (e == cudaSuccess)
		e = cudaFuncSetAttribute(attn_kernel<4>, cudaFuncAttributeMaxDynamicSharedMemorySize,
		                         (int)smem_bytes(128, 32));
	if (e == cudaSuccess)
		e = cudaFuncSetAttribute(attn_kernel<8>, cudaFuncAttributeMaxDynamicSharedMemorySize,
		                         (int)smem_bytes(256, 32));
	return e;
}

cudaError_t vk_cuda_attention(cudaStream_t s, const struct vk_cuda_attn_plan *plan,
                              const float *q, const void *kpool, const void *vpool, int kv_dtype,
                              int32_t block_size, int32_t n_heads, int32_t n_kv_heads,
                              int32_t head_dim, const int32_t *seq_first, const int32_t *seq_n,
                              const int32_t *seq_past, const int32_t *blocks, int32_t max_blocks,
                              int32_t n_seqs, int32_t n_tokens, float *partial, float *out)
{
	if (n_tokens <= 0 || n_seqs <= 0)
		return cudaSuccess;
	attn_args a;
	a.q = q;
	a.head_dim = head_dim;
	a.kpool = kpool;
	a.vpool = vpool;
	a.kv_dtype = kv_dtype;
	a.block_size = block_size;
	a.n_heads = n_heads;
	a.n_kv_heads = n_kv_heads;
	a.group = n_heads / n_kv_heads;
	a.rows_per_tile = plan->rows_per_tile;
	a.max_tiles = plan->max_tiles;
	a.n_splits = plan->n_splits;
	a.chunk = plan->chunk;
	a.seq_first = seq_first;
	a.seq_n = seq_n;
	a.seq_past = seq_past;
	a.blocks = blocks;
	a.max_blocks = max_blocks;
	a.partial = partial;
	a.out = out;
	cudaError_t e;
	if (head_dim <= 32)
		e = launch<1>(s, a, n_seqs);
	else if (head_dim <= 64)
		e = launch<2>(s, a, n_seqs);
	else if (head_dim <= 128)
		e = launch<4>(s, a, n_seqs);
	else if (head_dim <= 256)
		e = launch<8>(s, a, n_seqs);
	else
		return cudaErrorInvalidValue;
	if (e != cudaSuccess || plan->n_splits == 1)
		return e;
	attn_combine_kernel<<<dim3((unsigned)n_tokens, (unsigned)n_heads), 128, 0, s>>>(
		partial, n_heads, head_dim, plan->n_splits, out);
	return cudaGetLastError();
}
