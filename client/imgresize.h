/*
 * client/imgresize.h — Qwen2-VL's smart_resize target and the uint8 antialiased bicubic resize
 * transformers runs by default (torch/torchvision's integer resampler), bit for bit.
 */
#ifndef VLM_CLIENT_IMGRESIZE_H
#define VLM_CLIENT_IMGRESIZE_H

#include <stddef.h>
#include <stdint.h>

/*
 * transformers' smart_resize(height, width, factor, min_pixels, max_pixels): the target size, a
 * multiple of factor (28 = patch 14 x merge 2). Python's round() is half-to-even; the operations
 * keep HF's order in double precision. Returns 0 or -ERANGE (aspect ratio over 200, with
 * transformers' wording in vlm_last_error()), -EINVAL (a zero side or factor, or a target that
 * overflows).
 */
int vc_smart_resize(uint32_t height, uint32_t width, uint32_t factor, uint64_t min_pixels,
		    uint64_t max_pixels, uint32_t *out_h, uint32_t *out_w);

/*
 * Resizes packed RGB src [sh][sw][3] (rows src_stride bytes apart) into dst [dh][dw][3] (packed)
 * with bicubic (a = -0.5) antialiased filtering in two uint8 passes (horizontal first, each
 * rounded and clamped; a pass whose size is unchanged is skipped), int16-range coefficients with
 * torch's per-pass precision. Returns 0 or -ENOMEM.
 */
int vc_resize_rgb(const uint8_t *src, uint32_t sw, uint32_t sh, size_t src_stride, uint8_t *dst,
		  uint32_t dw, uint32_t dh);

/*
 * The same resize one output row at a time, so a consumer (patchify) can take the rows as they
 * come and no resized image (nor horizontally resized one) is ever materialised: only a ring of
 * the source rows the vertical filter needs. src must stay valid while the resizer lives.
 * Rows may be asked in any order; in increasing order each source row is filtered once.
 */
struct vc_resizer;
int vc_resizer_new(const uint8_t *src, uint32_t sw, uint32_t sh, size_t src_stride, uint32_t dw,
		   uint32_t dh, struct vc_resizer **ret);
/*
 * The same from source rows handed over in order by pull (0 and rows[0..n) = the next n source
 * rows [sw][3], n 1 or 2, valid until the next call; or a negative errno, which the resizer
 * returns): each row is filtered horizontally as it arrives (two at a time where they are
 * needed together), and rows are asked for once. Output rows must then be asked in increasing
 * order.
 */
typedef int (*vc_row_pull)(void *ctx, uint32_t n, const uint8_t **rows);
int vc_resizer_new_pull(vc_row_pull pull, void *ctx, uint32_t sw, uint32_t sh, uint32_t dw,
			uint32_t dh, struct vc_resizer **ret);
/* Output row y (0 <= y < dh) into dst [dw*3]. 0, or the pulled source's error (or -EINVAL for
 * a pulled row asked out of order). */
int vc_resizer_row(struct vc_resizer *rs, uint32_t y, uint8_t *dst);
void vc_resizer_free(struct vc_resizer *rs);

#endif /* VLM_CLIENT_IMGRESIZE_H */
