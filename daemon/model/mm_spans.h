/*
 * daemon/model/mm_spans.h — where a prompt's multimodal items go.
 *
 * The placeholder contract (DESIGN §1): the k-th maximal run of placeholder tokens takes the k-th
 * item's tensor, and the run length must equal the tensor's rows. This module finds the runs once
 * per request, checks the contract with a precise error, and later cuts the matching embedding
 * row sources for any prefill chunk, so chunked prefill needs no second scan and a run split across
 * two chunks is handled in one place.
 */
#ifndef VLM_DAEMON_MM_SPANS_H
#define VLM_DAEMON_MM_SPANS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"

/* One multimodal item of a request, in prompt order. */
struct vd_mm_item {
	int32_t placeholder;    /* token id whose run its rows replace */
	int32_t rows;           /* rows of its embedding tensor */
	int32_t grid[3];        /* t, h, w of the vision patch grid before the spatial merge;
	                         * {0, 0, 0} when unknown (only allowed for 1-D RoPE models) */
	float t_interval;       /* temporal position step per grid frame: 1 for Qwen2-VL; Qwen2.5-VL
	                         * second_per_grid_t * tokens_per_second */
};

/* A placeholder run: prompt rows [start, start + len) take item's rows 0..len-1. */
struct vd_mm_span {
	int32_t start;
	int32_t len;
	int32_t item;
};

/* Find the placeholder runs of tokens[0, n) and match them to items[0, n_items) in order. A token
 * is a placeholder if it equals any item's placeholder id or any of extra_ids[0, n_extra) (the
 * model's image/video ids, so a stray image token without a tensor is caught too). Adjacent
 * placeholders with the same id form one run. On success writes n_items spans to ret_spans
 * (caller-allocated [n_items]) and returns 0; on a count or length mismatch returns -EINVAL with a
 * message in err. */
int vd_mm_spans_find(const int32_t *tokens, int32_t n, const struct vd_mm_item *items,
                     int32_t n_items, const int32_t *extra_ids, int32_t n_extra,
                     struct vd_mm_span *ret_spans, char *err, size_t err_len);

/* The row sources for the prefill chunk covering prompt rows [chunk_start, chunk_start + chunk_n),
 * placed at step rows starting at step_row. item_src[k] describes item k's whole tensor (its row
 * field is ignored; data points at tensor row 0). Writes at most max_out sources to out and returns
 * how many, or -ENOSPC if max_out is too small (n_spans always suffices). */
int vd_mm_chunk_subs(const struct vd_mm_span *spans, int32_t n_spans,
                     const struct vk_row_source *item_src, int32_t chunk_start, int32_t chunk_n,
                     int32_t step_row, struct vk_row_source *out, int32_t max_out);

#endif /* VLM_DAEMON_MM_SPANS_H */
