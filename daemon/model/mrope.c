/*
 * daemon/model/mrope.c — M-RoPE position ids and rope delta (see mrope.h for the rule).
 */
#include "daemon/model/errmsg.h"
#include "daemon/model/mrope.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>


int vd_mrope_positions(int32_t n, const struct vd_mm_span *spans, int32_t n_spans,
                       const struct vd_mm_item *items, int32_t mrope, int32_t merge,
                       int32_t *pos, int32_t *ret_delta, char *err, size_t err_len)
{
	int32_t *pt = pos, *ph = pos + n, *pw = pos + 2 * (size_t)n;

	*ret_delta = 0;
	if (!mrope) {
		for (int32_t i = 0; i < n; i++)
			pt[i] = ph[i] = pw[i] = i;
		return 0;
	}
	if (merge < 1)
		return vd_fail(err, err_len, -EINVAL, "spatial merge size %d", merge);

	int64_t next = 0;   /* id of the next text token */
	int32_t i = 0;
	for (int32_t s = 0; s <= n_spans; s++) {
		int32_t end = s < n_spans ? spans[s].start : n;
		for (; i < end; i++, next++)
			pt[i] = ph[i] = pw[i] = (int32_t)next;
		if (s == n_spans)
			break;
		const struct vd_mm_item *it = &items[spans[s].item];
		int32_t t = it->grid[0], h = it->grid[1], w = it->grid[2];
		if (t < 1 || h < 1 || w < 1)
			return vd_fail(err, err_len, -EINVAL, "item %d: no grid t,h,w (M-RoPE model)",
			               spans[s].item);
		if (h % merge || w % merge)
			return vd_fail(err, err_len, -EINVAL, "item %d: grid %dx%dx%d not divisible by %d",
			               spans[s].item, t, h, w, merge);
		int32_t gh = h / merge, gw = w / merge;
		if ((int64_t)t * gh * gw != spans[s].len)
			return vd_fail(err, err_len, -EINVAL, "item %d: grid gives %lld positions, run %d",
			               spans[s].item, (long long)t * gh * gw, spans[s].len);
		float step = it->t_interval > 0 ? it->t_interval : 1.0f;
		int64_t top = next;
		for (int32_t a = 0; a < t; a++) {
			/* (arange(t) * interval).long(): truncation of the float product */
			int64_t tv = next + (int64_t)((float)a * step);
			for (int32_t b = 0; b < gh; b++)
				for (int32_t c = 0; c < gw; c++, i++) {
					int64_t hv = next + b, wv = next + c;
					if (tv > INT32_MAX - 1 || hv > INT32_MAX - 1 || wv > INT32_MAX - 1)
						return vd_fail(err, err_len, -EOVERFLOW, "position ids overflow");
					pt[i] = (int32_t)tv;
					ph[i] = (int32_t)hv;
					pw[i] = (int32_t)wv;
					if (tv > top)
						top = tv;
					if (hv > top)
						top = hv;
					if (wv > top)
						top = wv;
				}
		}
		next = top + 1;
	}
	if (next - n > INT32_MAX || next - n < INT32_MIN)
		return vd_fail(err, err_len, -EOVERFLOW, "rope delta overflows");
	*ret_delta = (int32_t)(next - n);
	return 0;
}
