/*
 * kernels/cuda/sample.h — sampling kernels of the CUDA backend (private, C++).
 * The public entry is vk_cuda_sample() in cuda_backend.h.
 */
#ifndef VLM_KERNELS_CUDA_SAMPLE_H
#define VLM_KERNELS_CUDA_SAMPLE_H

#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/cuda/cuda_backend.h"

/* One row's parameters as the kernel reads them (device copy). */
struct vk_cuda_sample_row {
	float inv_temperature;     /* 0: greedy */
	int32_t top_k;             /* 0: off */
	float top_p;               /* >= 1: off */
	float min_p;               /* <= 0: off */
	float repetition;          /* 1: off */
	float presence;
	float frequency;
	int32_t hist_off;          /* first (token, count) pair of this row in the history array */
	int32_t n_hist;
	int32_t pad;
	double u;                  /* uniform in [0, 1) from (seed, step) */
};

/* Host: fills r from p (u from splitmix64(seed ^ step * golden ratio)). */
void vk_cuda_sample_row_fill(struct vk_cuda_sample_row *r, const struct vk_sample_params *p,
                             int32_t hist_off);

/* The uniform number of (seed, step), exposed for tests: splitmix64(...) / 2^64. */
double vk_cuda_sample_uniform(uint64_t seed, uint64_t step);

/* logits [n, vocab] (overwritten: penalised, then unnormalised probabilities), rows device [n],
 * hist device [pairs][2], ids device [n]. One block per row. */
cudaError_t vk_cuda_sample_launch(cudaStream_t s, float *logits, int32_t n, int32_t vocab,
                                  const struct vk_cuda_sample_row *rows, const int32_t *hist,
                                  int32_t *ids);

#endif /* VLM_KERNELS_CUDA_SAMPLE_H */
