/*
 * kernels/cuda/sample.cu — token sampling on the GPU, so only token ids cross to the host.
 *
 * Why this way: one block per row does the whole pipeline (penalties, temperature softmax,
 * top-k / min-p / top-p thresholds, the draw) with block reductions and no sort: the thresholds
 * are found by bisection on the bit pattern of the (non-negative) probabilities, which is monotonic,
 * so top-k and top-p cost ~30 passes over the row each (L2-resident at vocab 151936) instead of a
 * full sort; ties at a threshold are all kept. The draw walks the kept probabilities in index order
 * (per-thread contiguous chunks + a prefix over the chunks), so a given (seed, step) gives the same
 * token on every run. The uniform number is computed on the host: no RNG state on the device.
 */
#include <math.h>
#include <string.h>

#include "kernels/cuda/sample.h"

namespace {

constexpr int NT = 1024;

__device__ float block_sum(float v, float *sh)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	__syncthreads();
	if ((threadIdx.x & 31) == 0)
		sh[threadIdx.x >> 5] = v;
	__syncthreads();
	v = (threadIdx.x & 31) < (blockDim.x >> 5) ? sh[threadIdx.x & 31] : 0.0f;
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

__device__ void block_argmax(float &bv, int32_t &bi, float *shv, int32_t *shi)
{
	for (int o = 16; o > 0; o >>= 1) {
		const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
		const int32_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
		if (ov > bv || (ov == bv && oi < bi)) {
			bv = ov;
			bi = oi;
		}
	}
	__syncthreads();
	if ((threadIdx.x & 31) == 0) {
		shv[threadIdx.x >> 5] = bv;
		shi[threadIdx.x >> 5] = bi;
	}
	__syncthreads();
	const int lane = threadIdx.x & 31;
	const bool in = lane < (int)(blockDim.x >> 5);
	bv = in ? shv[lane] : -INFINITY;
	bi = in ? shi[lane] : INT32_MAX;
	for (int o = 16; o > 0; o >>= 1) {
		const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
		const int32_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
		if (ov > bv || (ov == bv && oi < bi)) {
			bv = ov;
			bi = oi;
		}
	}
}

__global__ void __launch_bounds__(NT) sample_kernel(float *logits, int32_t vocab,
                                                    const vk_cuda_sample_row *rows,
                                                    const int32_t *hist, int32_t *ids)
{
	__shared__ float shf[32];
	__shared__ int32_t shi[32];
	__shared__ float prefix[NT];
	__shared__ int32_t chosen;
	const vk_cuda_sample_row r = rows[blockIdx.x];
	float *l = logits + (int64_t)blockIdx.x * vocab;   /* [vocab] */
	const int tid = threadIdx.x;

	/* 1. penalties (history token ids are distinct: no two threads touch one logit) */
	for (int i = tid; i < r.n_hist; i += blockDim.x) {
		const int32_t tok = hist[2 * (r.hist_off + i)], cnt = hist[2 * (r.hist_off + i) + 1];
		float v = l[tok];
		if (r.repetition != 1.0f)
			v = v > 0.0f ? v / r.repetition : v * r.repetition;
		v -= (cnt > 0 ? r.presence : 0.0f) + r.frequency * (float)cnt;
		l[tok] = v;
	}
	__syncthreads();

	/* 2. maximum (first index wins): the greedy answer and the softmax shift */
	float bv = -INFINITY;
	int32_t bi = INT32_MAX;
	for (int32_t i = tid; i < vocab; i += blockDim.x)
		if (l[i] > bv || (l[i] == bv && i < bi)) {
			bv = l[i];
			bi = i;
		}
	block_argmax(bv, bi, shf, shi);
	const int32_t imax = bi < vocab ? bi : 0;
	if (r.inv_temperature <= 0.0f || bv == -INFINITY) {
		if (tid == 0)
			ids[blockIdx.x] = imax;
		return;
	}

	/* 3. unnormalised probabilities in place: p = exp((l - max) / T), p[imax] = 1 */
	for (int32_t i = tid; i < vocab; i += blockDim.x)
		l[i] = expf((l[i] - bv) * r.inv_temperature);
	__syncthreads();

	float thr = r.min_p > 0.0f ? fminf(r.min_p, 1.0f) : 0.0f;
	if (r.top_k > 0 && r.top_k < vocab) {
		/* largest t with count(p >= t) >= k */
		uint32_t lo = 0, hi = 0x3f800001u;
		while (hi - lo > 1) {
			const uint32_t mid = lo + (hi - lo) / 2;
			const float t = __uint_as_float(mid);
			float cnt = 0.0f;
			for (int32_t i = tid; i < vocab; i += blockDim.x)
				cnt += l[i] >= t ? 1.0f : 0.0f;
			cnt = block_sum(cnt, shf);
			if (cnt >= (float)r.top_k)
				lo = mid;
			else
				hi = mid;
		}
		thr = fmaxf(thr, __uint_as_float(lo));
	}
	if (r.top_p < 1.0f) {
		float kept = 0.0f;
		for (int32_t i = tid; i < vocab; i += blockDim.x)
			kept += l[i] >= thr ? l[i] : 0.0f;
		const float target = fmaxf(r.top_p, 0.0f) * block_sum(kept, shf);
		/* largest t >= thr with sum(p >= t) >= target */
		uint32_t lo = __float_as_uint(thr), hi = 0x3f800001u;
		while (hi - lo > 1) {
			const uint32_t mid = lo + (hi - lo) / 2;
			const float t = __uint_as_float(mid);
			float mass = 0.0f;
			for (int32_t i = tid; i < vocab; i += blockDim.x)
				mass += l[i] >= t ? l[i] : 0.0f;
			mass = block_sum(mass, shf);
			if (mass >= target)
				lo = mid;
			else
				hi = mid;
		}
		thr = __uint_as_float(lo);
	}

	/* 4. draw: contiguous chunk per thread, prefix over the chunks, walk the one chunk */
	const int32_t chunk = (vocab + (int32_t)blockDim.x - 1) / (int32_t)blockDim.x;
	const int32_t begin = tid * chunk, end = min(begin + chunk, vocab);
	float local = 0.0f;
	for (int32_t i = begin; i < end; i++)
		if (l[i] >= thr)
			local += l[i];
	prefix[tid] = local;
	if (tid == 0)
		chosen = imax;   /* p[imax] = 1 >= thr always: a safe answer if rounding misses */
	__syncthreads();
	if (tid == 0) {
		float run = 0.0f;
		for (int i = 0; i < (int)blockDim.x; i++) {
			const float v = prefix[i];
			prefix[i] = run;   /* exclusive prefix */
			run += v;
		}
		shf[0] = run;
	}
	__syncthreads();
	const float total = shf[0];
	const float target = (float)(r.u * (double)total);
	const float before = prefix[tid];
	if (local > 0.0f && before <= target && target < before + local) {
		float run = before;
		for (int32_t i = begin; i < end; i++)
			if (l[i] >= thr) {
				run += l[i];
				if (target < run) {
					chosen = i;
					break;
				}
			}
	}
	__syncthreads();
	if (tid == 0)
		ids[blockIdx.x] = chosen;
}

uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

} /* namespace */

double vk_cuda_sample_uniform(uint64_t seed, uint64_t step)
{
	return (double)(splitmix64(seed ^ (step * 0x9e3779b97f4a7c15ULL)) >> 11) * 0x1.0p-53;
}

void vk_cuda_sample_row_fill(struct vk_cuda_sample_row *r, const struct vk_sample_params *p,
                             int32_t hist_off)
{
	memset(r, 0, sizeof(*r));
	r->inv_temperature = p->temperature > 0.0f ? 1.0f / p->temperature : 0.0f;
	r->top_k = p->top_k;
	r->top_p = p->top_p;
	r->min_p = p->min_p;
	r->repetition = p->repetition_penalty > 0.0f ? p->repetition_penalty : 1.0f;
	r->presence = p->presence_penalty;
	r->frequency = p->frequency_penalty;
	r->hist_off = hist_off;
	r->n_hist = p->n_history;
	r->u = vk_cuda_sample_uniform(p->seed, p->step);
}

cudaError_t vk_cuda_sample_launch(cudaStream_t s, float *logits, int32_t n, int32_t vocab,
                                  const struct vk_cuda_sample_row *rows, const int32_t *hist,
                                  int32_t *ids)
{
	if (n <= 0)
		return cudaSuccess;
	sample_kernel<<<n, NT, 0, s>>>(logits, vocab, rows, hist, ids);
	return cudaGetLastError();
}
