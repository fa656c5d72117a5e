/*
 * kernels/backend.h — the one interface every compute backend implements.
 *
 * Why this shape: the model forward (daemon/model/model.c) is written once against this table, and the
 * CPU backend (always present, the correctness baseline), the CUDA backend and the naive scalar
 * reference (tests only) plug in behind it, in the manner of ggml-backend: a versioned table of
 * function pointers plus a private context. A NULL entry means "optional, not provided".
 *
 * Conventions
 *  - Every op returns 0 or a negative errno; on failure the backend leaves a message that
 *    vk_backend_error() returns. Backends never log or exit.
 *  - "Backend memory" is memory from ops->alloc (a host pointer on CPU, a device pointer on CUDA).
 *    Activations are fp32 in backend memory. Step descriptors (token ids, positions, block tables,
 *    row sources) are host memory; a device backend copies what it needs.
 *  - Ops are ordered on the backend's stream; results are visible to the host after ops->sync
 *    (or download, which synchronises).
 *  - Shapes are written [rows, cols], row-major; HF Linear weights are [out_features, in_features].
 *  - ops->alloc returns memory aligned to at least 64 bytes. Buffers passed to one op must not
 *    overlap unless the op says so ("out may equal x").
 *  - Thread-safety: one backend instance is driven by one thread at a time (the backend may use
 *    its own worker threads inside an op). Different instances are independent.
 *  - Bad arguments (token id >= table rows, position beyond a sequence's blocks, block id out of
 *    range, unsupported dtype) give -EINVAL / -ERANGE / -ENOTSUP and an error text, never a crash.
 *  - Any op of a device backend may return VK_EDEVICE_LOST: the device hit a sticky error and the
 *    backend is unusable; fail every in-flight request and exit non-zero (systemd restarts us).
 *
 * This header is compiled as C and as C++ (nvcc).
 */
#ifndef VLM_KERNELS_BACKEND_H
#define VLM_KERNELS_BACKEND_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Version of struct vk_backend_ops: vk_backend_open refuses a backend whose table says another
 * (a backend built against an older header would be read past its end). 2: import_tensor,
 * release_tensor, import_count. 3: quantized weights (VK_DTYPE_Q8 / Q4, weight_load_quant),
 * per-instruction peaks in struct vk_probe. */
#define VK_BACKEND_ABI 3

/* Returned by any op of a backend whose device is gone (see the conventions above). */
#define VK_EDEVICE_LOST (-ENOTRECOVERABLE)

enum vk_dtype {
	VK_DTYPE_F32 = 0,
	VK_DTYPE_F16 = 1,
	VK_DTYPE_BF16 = 2,
	/* Quantized weights (struct vk_weight only, never activations, KV or row sources; made by
	 * ops->weight_load_quant from a struct vk_quant_src; vk_dtype_size() is 0 for them). */
	VK_DTYPE_Q8 = 3,        /* 8-bit values, group-wise scale and zero point */
	VK_DTYPE_Q4 = 4,        /* 4-bit values, group-wise scale and zero point */
};

/* A quantized matrix as the model loader hands it to ops->weight_load_quant: the logical weight
 * is [rows, cols] (HF Linear: [out_features, in_features]) with
 *     W[r][perm ? perm[c] : c] = (q[r * cols + c] - zero[r][g]) * scale[r][g],  g = c / group_size
 * i.e. values are unpacked, one per byte, in the range [0, 2^bits); groups run along cols (the
 * input dimension) in storage order; perm (NULL: identity) is the input-column order of storage
 * (GPTQ act-order: storage column c holds input column perm[c]; the backend permutes x, or its
 * own repacked weight, accordingly). Formats map onto it as follows (the loader does the
 * unpacking, the backend repacks to whatever its kernels want and may drop the source):
 *   --quantize int8  bits 8, group_size = cols, zero 128 (symmetric per output channel)
 *   GPTQ Int4/Int8   bits 4/8, group_size from quantization_config (-1: cols), zeros from qzeros
 *                    (+1 for checkpoints in the GPTQ v1 zero format), perm from g_idx when desc_act
 *   AWQ (GEMM)       bits 4, group_size from quantization_config, zeros from qzeros */
struct vk_quant_src {
	enum vk_dtype dtype;    /* VK_DTYPE_Q8 (bits 8) or VK_DTYPE_Q4 (bits 4) */
	int64_t rows;
	int64_t cols;
	int32_t group_size;     /* columns per group; cols % group_size == 0 */
	const uint8_t *q;       /* host [rows, cols] unsigned values < 2^bits, one per byte */
	const float *scale;     /* host [rows, cols / group_size] */
	const float *zero;      /* host [rows, cols / group_size], in units of q (may be fractional) */
	const int32_t *perm;    /* host [cols], a permutation of [0, cols), or NULL */
};

/* A weight: a matrix [rows, cols] (a vector is rows = 1) in the backend's preferred layout.
 * data points at backend memory (CPU: may be the mmap'd file itself); priv is the backend's own
 * packing (NULL if none). Created by ops->weight_load, released by ops->weight_free. */
struct vk_weight {
	enum vk_dtype dtype;
	int64_t rows;
	int64_t cols;
	void *data;
	void *priv;
};

/* Rows that replace word embeddings (multimodal substitution): token rows [row, row + n_rows) of the
 * step take the source rows in order, converted from dtype to fp32 on the way. data is memory the
 * backend can read directly: host memory for CPU (e.g. the client's arena), device memory for CUDA
 * (e.g. a CUDA IPC mapping); is_device says which. */
struct vk_row_source {
	int32_t row;            /* first step row (index into the step's [n_tokens]) */
	int32_t n_rows;         /* rows to substitute */
	enum vk_dtype dtype;    /* source element type */
	int32_t is_device;      /* 1: data is device memory of this backend; 0: host memory */
	int64_t row_stride;     /* bytes between source rows (>= hidden * dtype size) */
	const void *data;       /* source row 0: [n_rows, hidden] with row_stride */
};

/* One sequence's slice of a step: n tokens (a prefill chunk, or 1 for decode) whose KV goes to
 * positions [past, past + n) of the sequence's paged cache. */
struct vk_seq {
	int32_t first;          /* first row of this sequence in the step's token arrays */
	int32_t n;              /* rows of this sequence in this step */
	int32_t past;           /* tokens already in the KV cache before this step */
	int32_t n_blocks;       /* entries in blocks (>= ceil((past + n) / block_size)) */
	const int32_t *blocks;  /* host [n_blocks]: KV block ids, logical order */
};

/* Everything one forward step needs. All pointers are host memory. */
struct vk_batch {
	int32_t n_tokens;
	int32_t n_seqs;
	const int32_t *tokens;                /* [n_tokens] token ids */
	const int32_t *pos;                   /* [3][n_tokens]: M-RoPE t, h, w ids (equal for text);
	                                       * [1][n_tokens] is enough for 1-D RoPE */
	const struct vk_seq *seqs;            /* [n_seqs], rows in order, covering [0, n_tokens) */
	int32_t n_subs;
	const struct vk_row_source *subs;     /* [n_subs] embedding substitutions */
};

/* Paged KV cache: per layer, K and V pools of [n_blocks, block_size, n_kv_heads, head_dim]. */
struct vk_kv_shape {
	int32_t n_layers;
	int32_t n_blocks;
	int32_t block_size;     /* tokens per block */
	int32_t n_kv_heads;
	int32_t head_dim;
	enum vk_dtype dtype;    /* storage type chosen by the caller among what the backend supports */
};

/* What the backend measures of its own machine, for benchmark floors (vlm-bench). */
struct vk_probe {
	double read_bandwidth_gbps;   /* streaming read of a buffer much larger than the caches */
	double copy_bandwidth_gbps;   /* device-to-device (or memory-to-memory) copy, bytes read+written */
	double peak_gflops;           /* multiply-add rate of the matmul path at its best, GFLOP/s */
	/* Peaks per instruction family, 2 ops per multiply-add, 0 where the machine (or the probe)
	 * has none: fp32 FMA; bf16 dot product (vdpbf16ps; tensor cores on a GPU); int8 dot product
	 * (VNNI vpdpbusd; int8 tensor cores), in GOP/s. Benchmarks report each kernel against the
	 * peak of the instructions it can use. */
	double peak_f32_gflops;
	double peak_bf16_gflops;
	double peak_int8_gops;
	int32_t threads;              /* CPU worker threads (0 for a device backend) */
};

/* Per-row sampling parameters of ops->sample. */
struct vk_sample_params {
	float temperature;          /* <= 0: greedy */
	int32_t top_k;              /* <= 0: none */
	float top_p;                /* >= 1: none */
	float min_p;                /* <= 0: none */
	float repetition_penalty;   /* 1 = none */
	float presence_penalty;     /* 0 = none */
	float frequency_penalty;    /* 0 = none */
	uint64_t seed;
	uint64_t step;              /* advances per generated token */
	int32_t n_history;          /* pairs in history */
	const int32_t *history;     /* host [n_history][2]: (token id, count), token ids distinct */
};

/* Elementwise activations of ops->activate. */
enum vk_act {
	VK_ACT_GELU_ERF = 0,    /* x * 0.5 * (1 + erf(x / sqrt(2))) (HF "gelu", nn.GELU()) */
	VK_ACT_QUICK_GELU = 1,  /* x * sigmoid(1.702 x) (HF "quick_gelu") */
	VK_ACT_SILU = 2,        /* x * sigmoid(x) */
};

/* Another process's device memory, for ops->import_tensor (the client's GPU embedding rows). */
#define VK_IMPORT_HANDLE_BYTES 64   /* sizeof(cudaIpcMemHandle_t) */
enum vk_import_kind {
	VK_IMPORT_CUDA_IPC = 1,     /* legacy IPC handle of the allocation's base */
	VK_IMPORT_CUDA_VMM = 2,     /* cuMemCreate allocation exported as a POSIX fd */
};
struct vk_import {
	enum vk_import_kind kind;
	const void *handle;         /* CUDA_IPC: [VK_IMPORT_HANDLE_BYTES] */
	int fd;                     /* CUDA_VMM: the descriptor (borrowed: the caller closes it) */
	uint64_t alloc_bytes;       /* CUDA_VMM: size of the exported allocation */
	uint64_t offset, bytes;     /* the tensor's range inside the allocation */
};

struct vk_kv;               /* backend-private */
struct vk_backend;

/* Rotary embedding. Frequency pair j (0 <= j < head_dim / 2, inv_freq = theta^(-2j / head_dim))
 * rotates dims (j, j + head_dim / 2) by angle pos[axis][t] * inv_freq, where axis = 0 (t) for
 * j < section[0], 1 (h) for j < section[0] + section[1], else 2 (w) — exactly HF's
 * apply_multimodal_rotary_pos_emb with mrope_section. The sections must sum to head_dim / 2.
 * 1-D RoPE (plain Qwen2) = {head_dim / 2, 0, 0}, which reads only pos[0]. */
struct vk_rope {
	float theta;            /* rope_theta */
	int32_t section[3];     /* mrope_section in rotary pairs: t, h, w */
};

struct vk_backend_ops {
	uint32_t abi;           /* VK_BACKEND_ABI */
	const char *name;       /* "cpu", "cuda", "ref" */

	/* Frees the private context and be itself (a backend's open function allocates both). */
	void (*destroy)(struct vk_backend *be);

	/* memory */
	int (*alloc)(struct vk_backend *be, size_t bytes, void **ret_ptr);
	void (*free)(struct vk_backend *be, void *ptr);
	int (*upload)(struct vk_backend *be, void *dst, const void *src_host, size_t bytes);
	int (*download)(struct vk_backend *be, void *dst_host, const void *src, size_t bytes);
	int (*sync)(struct vk_backend *be);   /* optional */
	int (*probe)(struct vk_backend *be, struct vk_probe *ret);   /* optional; slow (seconds) */

	/* weights: src is host memory that stays valid until weight_free (the mmap'd checkpoint),
	 * [rows, cols] of dtype, row-major. The backend may reference it, repack it or copy it. */
	int (*weight_load)(struct vk_backend *be, const void *src, enum vk_dtype dtype,
	                   int64_t rows, int64_t cols, struct vk_weight *ret);
	void (*weight_free)(struct vk_backend *be, struct vk_weight *w);

	/* KV cache. -ENOTSUP if shape->dtype is not supported (every backend supports F32; CPU and
	 * ref also BF16 and F16). Block contents start undefined. */
	int (*kv_new)(struct vk_backend *be, const struct vk_kv_shape *shape, struct vk_kv **ret);
	void (*kv_free)(struct vk_backend *be, struct vk_kv *kv);

	/* ops */

	/* x[t] = table[tokens[t]] for every row, then rows covered by batch->subs are overwritten
	 * with the converted source rows. table [vocab, hidden]; x [n_tokens, hidden].
	 * Token ids of substituted rows are not looked up (they may be any value). */
	int (*embed)(struct vk_backend *be, const struct vk_weight *table, const struct vk_batch *batch,
	             float *x);

	/* out = x / rms(x) * w, per row. x, out [n, dim]; w [dim]. out may equal x. */
	int (*rmsnorm)(struct vk_backend *be, const float *x, const struct vk_weight *w, float eps,
	               int32_t n, int32_t dim, float *out);

	/* residual += delta; out = rmsnorm(residual) * w. residual, delta, out [n, dim].
	 * out may equal delta. */
	int (*add_rmsnorm)(struct vk_backend *be, float *residual, const float *delta,
	                   const struct vk_weight *w, float eps, int32_t n, int32_t dim, float *out);

	/* out = x @ w^T (+ bias). x [n, w->cols]; w [out_dim = w->rows, w->cols]; bias [out_dim] or
	 * NULL (a weight with rows = 1, cols = out_dim); out [n, out_dim], not overlapping x.
	 * Decode (small n) streams each weight row once for all n rows. */
	int (*matmul)(struct vk_backend *be, const float *x, const struct vk_weight *w,
	              const struct vk_weight *bias, int32_t n, float *out);

	/* Rotate q [n_tokens, n_heads, head_dim] and k [n_tokens, n_kv_heads, head_dim] in place
	 * (rotate-half convention of HF Qwen2), with batch->pos and rope->section. */
	int (*rope)(struct vk_backend *be, float *q, float *k, const struct vk_batch *batch,
	            int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, const struct vk_rope *rope);

	/* Write k, v [n_tokens, n_kv_heads * head_dim] into layer's pools at each row's position. */
	int (*kv_store)(struct vk_backend *be, struct vk_kv *kv, int32_t layer, const float *k,
	                const float *v, const struct vk_batch *batch);

	/* Causal GQA attention of q [n_tokens, n_heads * head_dim] over each sequence's cached
	 * positions [0, past + i] (the step's own K/V must be stored first); scale 1/sqrt(head_dim).
	 * out [n_tokens, n_heads * head_dim]. */
	int (*attention)(struct vk_backend *be, struct vk_kv *kv, int32_t layer, const float *q,
	                 const struct vk_batch *batch, int32_t n_heads, float *out);

	/* out = silu(gate) * up. gate, up, out [n, dim]. out may equal gate. */
	int (*swiglu)(struct vk_backend *be, const float *gate, const float *up, int32_t n,
	              int32_t dim, float *out);

	/* out[i] = x[rows[i]]. x [*, dim]; rows host [n]; out [n, dim]. The caller guarantees
	 * 0 <= rows[i] < rows of x (a host backend checks rows[i] >= 0 only; on a device an
	 * out-of-range row is an illegal address, i.e. VK_EDEVICE_LOST). */
	int (*get_rows)(struct vk_backend *be, const float *x, const int32_t *rows, int32_t n,
	                int32_t dim, float *out);

	/* ret_ids (host) [n] = argmax of each row of logits [n, vocab] (first index wins ties). */
	int (*argmax)(struct vk_backend *be, const float *logits, int32_t n, int32_t vocab,
	              int32_t *ret_ids);

	/* ---- added after the 05:15 interface freeze; all optional (NULL) ---- */

	/* Sampling on the backend so only token ids cross to the host (NULL: the caller downloads
	 * the logits and samples on the host). logits [n, vocab] are clobbered; params host [n];
	 * ret_ids host [n]. Semantics per row r, with params[r]:
	 *  1. penalties over the row's (token, count) history: repetition (HF: a positive logit is
	 *     divided by the penalty, a negative one multiplied), presence (minus presence_penalty
	 *     if count > 0), frequency (minus frequency_penalty * count);
	 *  2. temperature <= 0: greedy (first index of the maximum);
	 *  3. else p = softmax(logits / temperature) restricted to tokens with p >= the top_k-th
	 *     largest (ties kept; top_k <= 0 or >= vocab: no top-k), p >= min_p * max p (min_p <= 0:
	 *     none), then to the smallest threshold whose kept mass is >= top_p of the remaining
	 *     mass (top_p >= 1: none);
	 *  4. one token drawn from the renormalised remainder with the uniform number
	 *     u = splitmix64(seed ^ (step * 0x9e3779b97f4a7c15)) / 2^64. */
	int (*sample)(struct vk_backend *be, float *logits, int32_t n, int32_t vocab,
	              const struct vk_sample_params *params, int32_t *ret_ids);

	/* Step hooks (NULL: nothing to do), e.g. CUDA graph capture/replay of a decode step.
	 * The forward calls step_begin before the step's first op and step_end after its last;
	 * between them it issues the same op sequence on the same buffers every step and no
	 * download / argmax / sample. step_begin < 0: run the step eagerly (call no step_end);
	 * step_end == -ECANCELED: the step did not run, redo it eagerly. */
	int (*step_begin)(struct vk_backend *be, const struct vk_batch *batch);
	int (*step_end)(struct vk_backend *be);

	/* ---- vision tower ops (daemon/model/vision.c); optional: NULL = no vision tower ---- */

	/* LayerNorm per row, HF nn.LayerNorm: if delta is not NULL, x += delta first (x is the
	 * residual stream and is updated); then out = (x - mean) / sqrt(var + eps) * w (+ b), with
	 * the biased variance. x, delta, out [n, dim]; w [dim]; b [dim] or NULL. out may equal delta,
	 * not x. */
	int (*layernorm)(struct vk_backend *be, float *x, const float *delta,
	                 const struct vk_weight *w, const struct vk_weight *b, float eps, int32_t n,
	                 int32_t dim, float *out);

	/* out[i] = act(x[i]) for i < n (enum vk_act). out may equal x. */
	int (*activate)(struct vk_backend *be, enum vk_act act, const float *x, int64_t n,
	                float *out);

	/* 2-D rotary embedding of the vision tower (HF VisionRotaryEmbedding + rotate-half), in
	 * place. Rows r < n of x are ld floats apart; heads h < n_heads of head_dim floats each start
	 * at x + r * ld + h * head_dim. With q = head_dim / 4 and inv[k] = theta^(-k / q)
	 * (= theta^(-2k / (head_dim / 2))), pair j < head_dim / 2 rotates dims (j, j + head_dim / 2)
	 * by angle pos[0][r] * inv[j] for j < q (row id), pos[1][r] * inv[j - q] otherwise (column
	 * id). pos is host [2][n]. head_dim must be a multiple of 4. Angles in fp32 like HF
	 * (inv in fp32, product in fp32). Rotating q and k of a fused qkv row = n_heads * 2. */
	int (*rope_2d)(struct vk_backend *be, float *x, int64_t ld, int32_t n, int32_t n_heads,
	               int32_t head_dim, const int32_t *pos, float theta);

	/* Non-causal multi-head attention inside segments: rows [seg[s], seg[s + 1]) attend to each
	 * other and to nothing else (block-diagonal, cu_seqlens style). q, k, v: rows ld floats
	 * apart, head h at column h * head_dim (they may be views of one fused qkv buffer); out
	 * [n, n_heads * head_dim] contiguous, not overlapping them. seg host [n_seg + 1]: seg[0] = 0,
	 * strictly increasing, seg[n_seg] = n. Scale 1 / sqrt(head_dim). Never materialises more
	 * than a tile of scores: a segment may have thousands of rows. */
	int (*seg_attention)(struct vk_backend *be, const float *q, const float *k, const float *v,
	                     int64_t ld, int32_t n, int32_t n_heads, int32_t head_dim,
	                     const int32_t *seg, int32_t n_seg, float *out);
	/* Device memory free and in total, in bytes, now (for sizing the KV cache from a fraction
	 * of what is left after the weights). NULL: the backend's memory is host memory (the
	 * caller reads MemAvailable). Returns 0 or -errno. */
	int (*mem_info)(struct vk_backend *be, uint64_t *ret_free, uint64_t *ret_total);
	/* Device memory of other processes (optional, all three or none; NULL: the backend reads
	 * no foreign device memory and such tensors are refused). import_tensor maps im, checking
	 * its range against the real allocation: *ret_ptr is the device address of byte offset,
	 * usable as a device vk_row_source until release_tensor(*ret_ref). Any thread. Returns 0,
	 * -EINVAL (handle refused), -ERANGE (range outside the allocation), -EBADF, -ENOTSUP,
	 * -ENODEV (no usable driver), -ENOMEM, with err. import_count: distinct allocations
	 * mapped now (metrics). */
	int (*import_tensor)(struct vk_backend *be, const struct vk_import *im, void **ret_ref,
	                     const void **ret_ptr, char *err, size_t err_len);
	void (*release_tensor)(struct vk_backend *be, void *ref);
	int (*import_count)(struct vk_backend *be);

	/* ---- ABI 3 ---- */

	/* Quantized weight from src (see struct vk_quant_src; host memory, only read during the
	 * call). ret->dtype = src->dtype, ret->rows / cols the logical shape. -EINVAL for a
	 * malformed src (value out of range, group_size not dividing cols, perm not a permutation),
	 * -ENOTSUP for a format this backend does not run. NULL: no quantized weights here. */
	int (*weight_load_quant)(struct vk_backend *be, const struct vk_quant_src *src,
	                         struct vk_weight *ret);
};

/* A backend instance. The table plus the backend's private context. */
struct vk_backend {
	const struct vk_backend_ops *ops;
	void *ctx;
	char error[256];        /* last error text, set by the backend */
	int32_t threads;        /* host threads ops run on, the caller's included, for a backend with
	                         * a worker pool (cpu); 0 otherwise. Set at open. */
};

/* For backend implementations: format the error text into be->error and return err (a negative
 * errno), so an op can `return vk_backend_set_error(be, -EINVAL, "...", ...);`. */
int vk_backend_set_error(struct vk_backend *be, int err, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(printf, 3, 4)))
#endif
	;

/* For host-memory backends (cpu, ref): ops->alloc / free / upload / download over malloc'd
 * 64-byte-aligned memory, so each backend's table can point at them. */
int vk_host_alloc(struct vk_backend *be, size_t bytes, void **ret_ptr);
void vk_host_free(struct vk_backend *be, void *ptr);
int vk_host_copy(struct vk_backend *be, void *dst, const void *src, size_t bytes);

/* Registry. name: "auto" (CUDA if a device is usable, else CPU), "cpu", "cuda", "ref".
 * NULL or "auto" defer to the VLM_BACKEND environment variable when it is set and non-empty (an
 * explicit name wins over the environment). "cuda" without a usable device, or in a build without
 * CUDA, is -ENODEV; "auto" falls back to CPU on any CUDA failure. An unknown name is -ENOENT.
 * The CPU backend uses all online CPUs unless VLM_THREADS sets a count. Returns 0 and a new
 * backend in *ret (free with vk_backend_free), or -ENODEV / -ENOENT / -ENOMEM with a message in
 * err. The CPU backend is always present and is the last resort of "auto". */
int vk_backend_open(const char *name, struct vk_backend **ret, char *err, size_t err_len);
/* 0 when be's table is of this build's VK_BACKEND_ABI, else -EPROTO with err (vk_backend_open
 * runs it on every backend it opens). */
int vk_backend_check_abi(const struct vk_backend *be, char *err, size_t err_len);
/* Destroys the backend (ops->destroy) and everything it owns; NULL is a no-op. Weights and KV
 * caches must be freed before. */
void vk_backend_free(struct vk_backend *be);
/* The last error text of be ("" if none); valid until the next op on be. */
const char *vk_backend_error(const struct vk_backend *be);
/* Bytes per element (0 for an unknown dtype) and a short name ("f32", "f16", "bf16", "?"). */
size_t vk_dtype_size(enum vk_dtype dtype);
const char *vk_dtype_name(enum vk_dtype dtype);

#ifdef __cplusplus
}
#endif

#endif /* VLM_KERNELS_BACKEND_H */
