/*
 * daemon/model/mrope.h — rotary position ids of a prompt, computed by vlmd itself.
 *
 * Qwen2-VL's M-RoPE gives every token three ids (temporal, height, width). Text tokens have three
 * equal ids that advance by one per token; the tokens of an item with patch grid (t, h, w) and
 * spatial merge m form a (t, h/m, w/m) grid whose ids are the grid coordinates offset by the next
 * text id (the temporal axis scaled by the item's t_interval, truncated, as Qwen2.5-VL does), and
 * the text after the item continues at the largest id used + 1. This is the original Qwen2-VL /
 * vLLM rule (transformers 4.x get_rope_index); it equals transformers 5.x's for every grid with
 * t_interval * (t - 1) < max(h, w) / m, i.e. every image and every ordinary video.
 * The result is the per-request table of 3 ids per prompt token plus one integer, the rope delta:
 * a generated token at sequence index i gets id i + delta on all three axes.
 */
#ifndef VLM_DAEMON_MROPE_H
#define VLM_DAEMON_MROPE_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/model/mm_spans.h"
#include "daemon/model/model_config.h"

/* Fill pos (caller-allocated [3][n]: row 0 temporal, 1 height, 2 width) for a prompt of n tokens
 * whose placeholder runs are spans[0, n_spans) (from vd_mm_spans_find) for items. mrope = 0 gives
 * plain 1-D positions 0..n-1 on all three rows (Qwen2; grids are then ignored). *ret_delta gets the
 * rope delta (0 for 1-D). Returns 0, or -EINVAL with a message when an item's grid is missing, not
 * divisible by merge, or does not have exactly its run's length in merged cells. */
int vd_mrope_positions(int32_t n, const struct vd_mm_span *spans, int32_t n_spans,
                       const struct vd_mm_item *items, int32_t mrope, int32_t merge,
                       int32_t *pos, int32_t *ret_delta, char *err, size_t err_len);

/* The temporal position step of an item (struct vd_mm_item.t_interval): Qwen2.5-VL spaces video
 * frames by second_per_grid_t * tokens_per_second; Qwen2-VL (and every image) by 1. */
static inline float vd_mrope_t_interval(const struct vd_model_config *cfg, float second_per_grid_t)
{
	if (cfg->arch == VD_ARCH_QWEN2_5_VL && second_per_grid_t > 0)
		return second_per_grid_t * cfg->tokens_per_second;
	return 1.0f;
}

/* The position id of a generated token at sequence index i (>= prompt length). */
static inline int32_t vd_mrope_decode_pos(int32_t i, int32_t delta)
{
	return i + delta;
}

#endif /* VLM_DAEMON_MROPE_H */
