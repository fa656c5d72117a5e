/*
 * kernels/validate.c — see validate.h.
 */
#include <errno.h>

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
