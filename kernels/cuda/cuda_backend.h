/*
 * kernels/cuda/cuda_backend.h — the CUDA backend: entry point and its optional extensions.
 *
 * vk_cuda_backend_open() returns a struct vk_backend implementing every op of kernels/backend.h on
 * one GPU (bf16/fp16/fp32 weights, fp32 activations, cuBLASLt GEMMs with fp32 accumulation, fused
 * kernels, paged attention). The registry (kernels/registry) calls it for "cuda" and "auto"; when
 * no usable GPU exists it returns -ENODEV with a message, and the caller falls back to the CPU.
 *
 * The optional ops of the table are all provided: sample (GPU sampling) and step_begin/step_end
 * (decode-step CUDA graphs, = vk_cuda_graph_begin/_end below). The functions here are callable
 * only on a backend that vk_cuda_backend_open() returned (they check be->ops).
 *
 * Sticky errors: after an illegal address / launch failure / ECC error the CUDA context is dead.
 * Every op then returns VK_CUDA_EDEVICE_LOST (a distinct code): the daemon must fail in-flight
 * requests and exit non-zero so that systemd restarts it.
 *
 * This header is compiled as C and as C++ (nvcc).
 */
#ifndef VLM_KERNELS_CUDA_BACKEND_H
#define VLM_KERNELS_CUDA_BACKEND_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Returned by every op once the CUDA context hit a sticky (unrecoverable) error. */
#define VK_CUDA_EDEVICE_LOST VK_EDEVICE_LOST

/*
 * Open the CUDA backend on device 0 (or the device named by VLM_CUDA_DEVICE).
 * Returns 0 and a new backend in *ret (release it with ret->ops->destroy, which frees everything
 * including the struct itself), or:
 *   -ENODEV  no usable GPU / driver (message in err; fall back to the CPU backend),
 *   -ENOMEM  out of host or device memory while creating streams, handles or buffers,
 *   -EIO     another CUDA or cuBLAS failure.
 * err (err_len bytes, may be NULL) receives a one-line reason on failure. Not thread-safe with
 * respect to the returned backend: one thread drives a backend at a time.
 */
int vk_cuda_backend_open(struct vk_backend **ret, char *err, size_t err_len);

/* 1 if be is a CUDA backend from vk_cuda_backend_open(), else 0. */
int vk_cuda_backend_is(const struct vk_backend *be);

/* 1 once the backend has seen a sticky error (all further ops fail with VK_CUDA_EDEVICE_LOST). */
int vk_cuda_backend_lost(const struct vk_backend *be);

/* Free and total device memory in bytes (cudaMemGetInfo), for sizing the KV pool from a memory
 * fraction after the weights are loaded. Returns 0, -EINVAL, or VK_CUDA_EDEVICE_LOST. */
int vk_cuda_backend_mem_info(struct vk_backend *be, size_t *ret_free, size_t *ret_total);

/*
 * Reserve scratch for steps of up to max_tokens rows whose widest activation is max_dim floats
 * (the GEMM input conversion buffer, attention partials, substitution staging). Call once after
 * loading the model so that no step allocates; a step that needs more grows the scratch (and
 * drops captured graphs). Returns 0, -ENOMEM (clear message), or VK_CUDA_EDEVICE_LOST.
 */
int vk_cuda_reserve(struct vk_backend *be, int32_t max_tokens, int32_t max_dim, int32_t n_heads,
                    int32_t head_dim, int32_t max_context);

/*
 * Decode-step CUDA graphs (ops->step_begin / ops->step_end of the table).
 *
 * How the model forward uses them: a decode step (every sequence has n = 1, no substitutions)
 * is wrapped as
 *
 *     r = vk_cuda_graph_begin(be, batch);          // r < 0: error; run the step without graphs
 *     ...the same op calls as without graphs, with the same batch pointer and the same
 *        device buffers (activations allocated once), and no op that returns data to the host...
 *     r = vk_cuda_graph_end(be);                    // launches the graph
 *     argmax / vk_cuda_sample / download after end.
 *
 * Graphs are keyed by (n_seqs, block-table capacity rounded up to a power of two); the first step
 * of a key captures (the ops are recorded, then the graph is launched), later steps replay: the ops
 * only copy their host arguments (token ids, positions, block tables, row lists) into the graph's
 * pinned staging buffer, and end launches the instantiated graph. Every op checks that it matches
 * the captured call (same op, same device pointers and sizes); on a mismatch (e.g. another KV
 * cache) the rest of the step is skipped (ops return 0), vk_cuda_graph_end returns -ECANCELED and
 * drops the graph, and the caller redoes the step eagerly. A real op error (bad argument) inside
 * the section is returned by the op as usual; step_end then also returns -ECANCELED. To keep the number of graphs small the model may pad a batch to a bucket
 * size (1, 2, 4, 8, 16, 32, 64, 128…) with dummy sequences that write a reserved KV block.
 * Returns 0 (1 from begin means "replaying"), -EINVAL, -ENOSPC (graph table full: run eagerly),
 * -ENOMEM, or VK_CUDA_EDEVICE_LOST. Setting VLM_CUDA_GRAPHS=0 makes begin return -ENOSYS.
 */
int vk_cuda_graph_begin(struct vk_backend *be, const struct vk_batch *batch);
int vk_cuda_graph_end(struct vk_backend *be);

/*
 * Sampling on the GPU so that only token ids cross to the host: ops->sample of the table (struct
 * vk_sample_params and the semantics are in kernels/backend.h). Implementation notes: one block
 * per row, no sort (top-k / top-p thresholds by bisection on the probabilities' bit patterns, ties
 * at a threshold kept), the draw walks the kept tokens in index order, so (seed, step) gives the
 * same token every run; logits are clobbered (penalised, then unnormalised probabilities).
 */
int vk_cuda_sample(struct vk_backend *be, float *logits, int32_t n, int32_t vocab,
                   const struct vk_sample_params *params, int32_t *ret_ids);

#ifdef __cplusplus
}
#endif

#endif /* VLM_KERNELS_CUDA_BACKEND_H */
