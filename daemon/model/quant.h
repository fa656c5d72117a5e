/*
 * daemon/model/quant.h — quantized Linear weights for the backend: GPTQ / AWQ tensors of a
 * checkpoint unpacked, or a float weight quantized at load (--quantize int8), into the one form
 * kernels/backend.h takes (struct vk_quant_src: values one per byte, group-wise scale and zero
 * along the input dimension, an optional input-column permutation).
 *
 * Why here and not in the backends: the checkpoint layouts (bit packing, AWQ's nibble order,
 * GPTQ's zero-minus-one and act-order g_idx) are facts of the file formats, read once in one
 * place; every backend gets the same unpacked source and repacks it for its kernels.
 * docs/QUANTIZATION.md states the layouts and where they were checked.
 */
#ifndef VLM_DAEMON_QUANT_H
#define VLM_DAEMON_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "daemon/model/model_config.h"
#include "daemon/model/weights.h"

/* A struct vk_quant_src with the memory it points at (owned). */
struct vd_qsrc {
	struct vk_quant_src src;
	uint8_t *q;             /* [rows, cols] */
	float *scale;           /* [rows, groups] */
	float *zero;            /* [rows, groups] */
	int32_t *perm;          /* [cols] or NULL */
	uint64_t file_bytes;    /* bytes of the checkpoint tensors it came from */
	int32_t n_tensors;      /* how many (1 for int8, 3-4 for GPTQ / AWQ) */
};

/* 1 if the checkpoint holds PREFIX.qweight (prefix: "layers.3.self_attn.q_proj", "lm_head"). */
int vd_quant_present(const struct vd_weights *w, const char *prefix);

/* Unpack PREFIX.qweight / qzeros / scales (/ g_idx for GPTQ) of a Linear of logical shape
 * [rows = out_features, cols = in_features] per qc. Returns 0, or -ENOENT (a tensor missing),
 * -EINVAL (a shape, dtype or g_idx inconsistent with qc and the layer), -ENOTSUP, -ENOMEM with
 * a message naming the tensor in err. */
int vd_quant_unpack(const struct vd_weights *w, const struct vd_quant_config *qc,
                    const char *prefix, int64_t rows, int64_t cols, struct vd_qsrc *ret,
                    char *err, size_t err_len);

/* --quantize int8: t (F32 / F16 / BF16 [rows, cols]) per output channel, symmetric:
 * scale = max|w| / 127 (1 for an all-zero row), q = round(w / scale) + 128, zero 128, one group
 * per row. Returns 0 or -ENOMEM / -ENOTSUP with err. */
int vd_quant_int8(const struct vd_tensor *t, int64_t rows, int64_t cols, struct vd_qsrc *ret,
                  char *err, size_t err_len);

/* Frees what ret owns and zeroes it; a zeroed struct is fine. */
void vd_qsrc_free(struct vd_qsrc *q);

/* Bytes a matmul step streams for a quantized weight, the floor's count: bits / 8 per value plus
 * an fp32 scale and an fp32 zero per (row, group). */
uint64_t vd_quant_step_bytes(const struct vk_quant_src *src);

#endif /* VLM_DAEMON_QUANT_H */
