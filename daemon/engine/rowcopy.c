/*
 * daemon/engine/rowcopy.c — the single read of a client's tensor rows (see rowcopy.h).
 *
 * A value is non-finite when its exponent bits are all ones: f32 0x7f800000, bf16 0x7f80,
 * f16 0x7c00 (the mantissa then says NaN or Inf). A first pass looks at 8 bytes at a time
 * (SWAR: is any lane's masked exponent equal to the mask — the "has a zero lane" test on
 * (word & mask) ^ mask) and only a row it flags is scanned element by element, so the common
 * all-finite row costs a few integer operations per 8 bytes of data already in cache from the
 * copy.
 */
#include <errno.h>
#include <string.h>

#include "daemon/engine/rowcopy.h"

/* Any lane (width given by ones / highs: 0x0001.. / 0x8000.. for 16 bits) of the first
 * n_bytes / 8 words with (lane & mask) == mask? Lanes of (w & mask) ^ mask have their top bit
 * clear (no mask has the sign bit), so the classic zero-lane test is exact for "any". */
static int any_lane(const unsigned char *p, int64_t n_bytes, uint64_t mask, uint64_t ones,
                    uint64_t highs)
{
	uint64_t acc = 0;

	for (int64_t i = 0; i + 8 <= n_bytes; i += 8) {
		uint64_t w, t;

		memcpy(&w, p + i, 8);
		t = (w & mask) ^ mask;
		acc |= (t - ones) & ~t & highs;
	}
	return acc != 0;
}

static int64_t scan32(const uint32_t *v, int64_t n, int *inf)
{
	uint32_t any = 0;

	for (int64_t i = 0; i < n; i++)
		any |= (uint32_t)((v[i] & 0x7f800000u) == 0x7f800000u);
	if (!any)
		return -1;
	for (int64_t i = 0; i < n; i++)
		if ((v[i] & 0x7f800000u) == 0x7f800000u) {
			*inf = (v[i] & 0x007fffffu) == 0;
			return i;
		}
	return -1;
}

static int64_t scan16(const uint16_t *v, int64_t n, uint16_t exp, uint16_t man, int *inf)
{
	uint32_t any = 0;

	for (int64_t i = 0; i < n; i++)
		any |= (uint32_t)((v[i] & exp) == exp);
	if (!any)
		return -1;
	for (int64_t i = 0; i < n; i++)
		if ((v[i] & exp) == exp) {
			*inf = (v[i] & man) == 0;
			return i;
		}
	return -1;
}

int vd_rows_copy(void *dst, const void *src, int64_t rows, int64_t row_bytes, int64_t stride,
                 uint32_t dtype, struct vd_rows_bad *bad)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	bad->row = -1;
	bad->inf = 0;
	for (int64_t r = 0; r < rows; r++) {
		unsigned char *row = d + r * row_bytes;
		int64_t at;

		memcpy(row, s + r * stride, (size_t)row_bytes);
		if (row_bytes % 8 == 0 &&
		    !(dtype == 0 ? any_lane(row, row_bytes, 0x7f8000007f800000ull,
		                            0x0000000100000001ull, 0x8000000080000000ull) :
		      any_lane(row, row_bytes, dtype == 2 ? 0x7f807f807f807f80ull : 0x7c007c007c007c00ull,
		               0x0001000100010001ull, 0x8000800080008000ull)))
			continue;
		if (dtype == 0)
			at = scan32((const uint32_t *)(void *)row, row_bytes / 4, &bad->inf);
		else if (dtype == 2)
			at = scan16((const uint16_t *)(void *)row, row_bytes / 2, 0x7f80, 0x007f,
			            &bad->inf);
		else
			at = scan16((const uint16_t *)(void *)row, row_bytes / 2, 0x7c00, 0x03ff,
			            &bad->inf);
		if (at >= 0) {
			bad->row = r;
			return -EINVAL;
		}
	}
	return 0;
}
