/*
 * daemon/model/mm_spans.c — placeholder runs ↔ multimodal items (see mm_spans.h).
 */
#include "daemon/model/errmsg.h"
#include "daemon/model/mm_spans.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>


static int is_placeholder(int32_t tok, const struct vd_mm_item *items, int32_t n_items,
                          const int32_t *extra, int32_t n_extra)
{
	for (int32_t i = 0; i < n_items; i++)
		if (items[i].placeholder == tok)
			return 1;
	for (int32_t i = 0; i < n_extra; i++)
		if (extra[i] == tok)
			return 1;
	return 0;
}

int vd_mm_spans_find(const int32_t *tokens, int32_t n, const struct vd_mm_item *items,
                     int32_t n_items, const int32_t *extra_ids, int32_t n_extra,
                     struct vd_mm_span *ret_spans, char *err, size_t err_len)
{
	int32_t k = 0;
	for (int32_t i = 0; i < n;) {
		if (!is_placeholder(tokens[i], items, n_items, extra_ids, n_extra)) {
			i++;
			continue;
		}
		int32_t j = i + 1;
		while (j < n && tokens[j] == tokens[i])
			j++;
		if (k >= n_items) {
			/* count all runs for the message */
			int32_t runs = k + 1;
			for (int32_t q = j; q < n;) {
				if (!is_placeholder(tokens[q], items, n_items, extra_ids, n_extra)) {
					q++;
					continue;
				}
				int32_t e = q + 1;
				while (e < n && tokens[e] == tokens[q])
					e++;
				runs++;
				q = e;
			}
			return vd_fail(err, err_len, -EINVAL, "%d placeholder run(s) but %d tensor(s)", runs,
			               n_items);
		}
		if (tokens[i] != items[k].placeholder)
			return vd_fail(err, err_len, -EINVAL, "run %d at %d is id %d, tensor %d wants %d", k,
			               i, tokens[i], k, items[k].placeholder);
		if (j - i != items[k].rows)
			return vd_fail(err, err_len, -EINVAL, "run %d at %d: %d tokens, tensor %d rows", k, i,
			               j - i, items[k].rows);
		ret_spans[k].start = i;
		ret_spans[k].len = j - i;
		ret_spans[k].item = k;
		k++;
		i = j;
	}
	if (k != n_items)
		return vd_fail(err, err_len, -EINVAL, "%d placeholder run(s) but %d tensor(s)", k, n_items);
	return 0;
}

int vd_mm_chunk_subs(const struct vd_mm_span *spans, int32_t n_spans,
                     const struct vk_row_source *item_src, int32_t chunk_start, int32_t chunk_n,
                     int32_t step_row, struct vk_row_source *out, int32_t max_out)
{
	int32_t m = 0;
	int64_t chunk_end = (int64_t)chunk_start + chunk_n;
	for (int32_t s = 0; s < n_spans; s++) {
		int64_t a = spans[s].start, b = (int64_t)spans[s].start + spans[s].len;
		if (a < chunk_start)
			a = chunk_start;
		if (b > chunk_end)
			b = chunk_end;
		if (a >= b)
			continue;
		if (m >= max_out)
			return -ENOSPC;
		const struct vk_row_source *src = &item_src[spans[s].item];
		out[m] = *src;
		out[m].row = step_row + (int32_t)(a - chunk_start);
		out[m].n_rows = (int32_t)(b - a);
		out[m].data = (const char *)src->data + (a - spans[s].start) * src->row_stride;
		m++;
	}
	return m;
}
