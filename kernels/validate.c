/*
 * kernels/validate.c — see validate.h.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "kernels/validate.h"

int vk_validate_batch(struct vk_backend *be, const struct vk_batch *batch)
{
	int32_t row = 0;

	if (!batch || batch->n_tokens < 1 || batch->n_seqs < 1 || !batch->seqs)
		return vk_backend_set_error(be, -EINVAL, "batch: empty or missing sequences");
	for (int32_t s = 0; s < batch->n_seqs; s++) {
		const struct vk_seq *sq = &batch->seqs[s];
		if (sq->first != row || sq->n < 0 || sq->past < 0 || sq->n > batch->n_tokens - row)
			return vk_backend_set_error(be, -EINVAL,
				"batch: sequence %d (first %d, n %d, past %d) does not continue at row %d",
				s, sq->first, sq->n, sq->past, row);
		row += sq->n;
	}
	if (row != batch->n_tokens)
		return vk_backend_set_error(be, -EINVAL, "batch: sequences cover %d of %d rows",
		                            row, batch->n_tokens);
	return 0;
}

int vk_validate_kv_batch(struct vk_backend *be, const struct vk_batch *batch,
                         const struct vk_kv_shape *shape, int32_t layer)
{
	int r = vk_validate_batch(be, batch);
	if (r < 0)
		return r;
	if (layer < 0 || layer >= shape->n_layers)
		return vk_backend_set_error(be, -ERANGE, "kv: layer %d out of range [0, %d)", layer,
		                            shape->n_layers);
	for (int32_t s = 0; s < batch->n_seqs; s++) {
		const struct vk_seq *sq = &batch->seqs[s];
		int64_t end = (int64_t)sq->past + sq->n;
		int64_t need = (end + shape->block_size - 1) / shape->block_size;
		if (end == 0)
			continue;
		if (!sq->blocks || sq->n_blocks < need)
			return vk_backend_set_error(be, -ERANGE,
				"kv: sequence %d needs %lld blocks for %lld positions, has %d", s,
				(long long)need, (long long)end, sq->n_blocks);
		for (int64_t b = 0; b < need; b++)
			if (sq->blocks[b] < 0 || sq->blocks[b] >= shape->n_blocks)
				return vk_backend_set_error(be, -ERANGE,
					"kv: sequence %d block %lld is id %d, outside [0, %d)", s,
					(long long)b, sq->blocks[b], shape->n_blocks);
	}
	return 0;
}

int vk_validate_subs(struct vk_backend *be, const struct vk_batch *batch, int32_t hidden,
                     int allow_device)
{
	if (batch->n_subs < 0 || (batch->n_subs > 0 && !batch->subs))
		return vk_backend_set_error(be, -EINVAL, "embed: bad substitution list");
	for (int32_t i = 0; i < batch->n_subs; i++) {
		const struct vk_row_source *rs = &batch->subs[i];
		size_t esz = vk_dtype_size(rs->dtype);
		if (esz == 0)
			return vk_backend_set_error(be, -EINVAL, "embed: substitution %d: bad dtype %d", i,
			                            (int)rs->dtype);
		if (rs->row < 0 || rs->n_rows < 0 || rs->n_rows > batch->n_tokens - rs->row)
			return vk_backend_set_error(be, -EINVAL,
				"embed: substitution %d rows [%d, +%d) outside the step's %d rows", i,
				rs->row, rs->n_rows, batch->n_tokens);
		if (rs->n_rows > 0 && (!rs->data || rs->row_stride < (int64_t)(esz * (size_t)hidden)))
			return vk_backend_set_error(be, -EINVAL,
				"embed: substitution %d: no data or row stride %lld < %zu bytes", i,
				(long long)rs->row_stride, esz * (size_t)hidden);
		if (rs->is_device && !allow_device)
			return vk_backend_set_error(be, -EINVAL,
				"embed: substitution %d: device memory not readable by this backend", i);
	}
	return 0;
}

int vk_validate_rope(struct vk_backend *be, int32_t head_dim, const struct vk_rope *rope)
{
	if (!rope || head_dim < 2 || (head_dim & 1))
		return vk_backend_set_error(be, -EINVAL, "rope: bad head_dim %d", head_dim);
	if (rope->section[0] < 0 || rope->section[1] < 0 || rope->section[2] < 0 ||
	    rope->section[0] + rope->section[1] + rope->section[2] != head_dim / 2)
		return vk_backend_set_error(be, -EINVAL,
			"rope: sections %d+%d+%d must sum to head_dim/2 = %d", rope->section[0],
			rope->section[1], rope->section[2], head_dim / 2);
	return 0;
}

int vk_validate_quant_src(struct vk_backend *be, const struct vk_quant_src *s, const char *op,
                          int *ret_bits)
{
	if (!s)
		return vk_backend_set_error(be, -EINVAL, "%s: no source", op);
	if (s->dtype != VK_DTYPE_Q8 && s->dtype != VK_DTYPE_Q4)
		return vk_backend_set_error(be, -EINVAL, "%s: dtype %s is not q8 or q4", op,
		                            vk_dtype_name(s->dtype));
	int bits = s->dtype == VK_DTYPE_Q8 ? 8 : 4;
	if (s->rows < 1 || s->cols < 1 || s->rows > INT32_MAX || s->cols > INT32_MAX)
		return vk_backend_set_error(be, -EINVAL, "%s: bad shape [%lld, %lld]", op,
		                            (long long)s->rows, (long long)s->cols);
	if (s->group_size < 1 || s->cols % s->group_size)
		return vk_backend_set_error(be, -EINVAL, "%s: group_size %d does not divide %lld columns",
		                            op, s->group_size, (long long)s->cols);
	if (!s->q || !s->scale || !s->zero)
		return vk_backend_set_error(be, -EINVAL, "%s: missing values, scales or zeros", op);
	const size_t n = (size_t)s->rows * (size_t)s->cols;
	const size_t ng = (size_t)s->rows * (size_t)(s->cols / s->group_size);
	for (size_t i = 0; i < n; i++)
		if (s->q[i] >> bits)
			return vk_backend_set_error(be, -EINVAL,
				"%s: value %u at [%zu, %zu] is not below 2^%d", op, s->q[i],
				i / (size_t)s->cols, i % (size_t)s->cols, bits);
	for (size_t i = 0; i < ng; i++)
		if (!isfinite(s->scale[i]) || !isfinite(s->zero[i]))
			return vk_backend_set_error(be, -EINVAL, "%s: scale or zero %zu is not finite", op,
			                            i);
	if (s->perm) {
		unsigned char *seen = calloc((size_t)s->cols, 1);
		if (!seen)
			return vk_backend_set_error(be, -ENOMEM, "%s: out of memory", op);
		for (int64_t c = 0; c < s->cols; c++) {
			int32_t p = s->perm[c];
			if (p < 0 || p >= s->cols || seen[p]) {
				free(seen);
				return vk_backend_set_error(be, -EINVAL,
					"%s: perm[%lld] = %d: not a permutation of [0, %lld)", op,
					(long long)c, p, (long long)s->cols);
			}
			seen[p] = 1;
		}
		free(seen);
	}
	*ret_bits = bits;
	return 0;
}
