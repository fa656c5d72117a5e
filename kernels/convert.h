/*
 * kernels/convert.h — scalar conversions between fp32 and the 16-bit storage types.
 *
 * Why header-only and scalar: every backend (ref, CPU fallback paths, tests) needs the same exact
 * rounding rules, and these are two-line functions the compiler inlines. The SIMD paths of the
 * CPU backend do the same conversions with vector instructions and are tested against these.
 * bf16 -> fp32 is exact (a shift); fp32 -> bf16/fp16 rounds to nearest even, NaN stays NaN.
 */
#ifndef VLM_KERNELS_CONVERT_H
#define VLM_KERNELS_CONVERT_H

#include <stdint.h>
#include <string.h>

#include "kernels/backend.h"

static inline float vk_bf16_to_f32(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
}

static inline uint16_t vk_f32_to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof(u));
	if ((u & 0x7fffffffu) > 0x7f800000u)      /* NaN: keep it quiet and a NaN */
		return (uint16_t)((u >> 16) | 0x40u);
	u += 0x7fffu + ((u >> 16) & 1u);          /* round to nearest even */
	return (uint16_t)(u >> 16);
}

static inline float vk_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu;
	uint32_t man = h & 0x3ffu;
	uint32_t u;

	if (exp == 0) {
		if (man == 0) {
			u = sign;
		} else {                          /* subnormal: normalise */
			exp = 127 - 15 + 1;
			while (!(man & 0x400u)) {
				man <<= 1;
				exp--;
			}
			man &= 0x3ffu;
			u = sign | (exp << 23) | (man << 13);
		}
	} else if (exp == 0x1f) {
		u = sign | 0x7f800000u | (man << 13);
	} else {
		u = sign | ((exp + 127 - 15) << 23) | (man << 13);
	}
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
}

static inline uint16_t vk_f32_to_f16(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof(u));
	uint32_t sign = (u >> 16) & 0x8000u;
	uint32_t absu = u & 0x7fffffffu;

	if (absu > 0x7f800000u)                   /* NaN */
		return (uint16_t)(sign | 0x7e00u);
	if (absu >= 0x477ff000u)                  /* rounds to >= 65520: infinity */
		return (uint16_t)(sign | 0x7c00u);
	if (absu < 0x38800000u) {                 /* below the smallest normal: subnormal or 0 */
		if (absu < 0x33000000u)           /* < 2^-25: rounds to 0 */
			return (uint16_t)sign;
		uint32_t e = absu >> 23;
		uint32_t m = (absu & 0x7fffffu) | 0x800000u;
		uint32_t shift = 126 - e;         /* 14 + (113 - e) */
		uint32_t r = m >> shift;
		uint32_t rem = m & ((1u << shift) - 1);
		uint32_t half = 1u << (shift - 1);
		if (rem > half || (rem == half && (r & 1u)))
			r++;
		return (uint16_t)(sign | r);
	}
	uint32_t r = absu - 0x38000000u;          /* rebias 127 -> 15 */
	r += 0xfffu + ((r >> 13) & 1u);
	return (uint16_t)(sign | (r >> 13));
}

/* Element i of a row of dtype as fp32. */
static inline float vk_load_elem(const void *row, enum vk_dtype dtype, int64_t i)
{
	switch (dtype) {
	case VK_DTYPE_F32: return ((const float *)row)[i];
	case VK_DTYPE_F16: return vk_f16_to_f32(((const uint16_t *)row)[i]);
	case VK_DTYPE_BF16: return vk_bf16_to_f32(((const uint16_t *)row)[i]);
	case VK_DTYPE_Q8:
	case VK_DTYPE_Q4: break;   /* not element-addressable (struct vk_quant_src) */
	}
	return 0.0f;
}

static inline void vk_store_elem(void *row, enum vk_dtype dtype, int64_t i, float v)
{
	switch (dtype) {
	case VK_DTYPE_F32: ((float *)row)[i] = v; break;
	case VK_DTYPE_F16: ((uint16_t *)row)[i] = vk_f32_to_f16(v); break;
	case VK_DTYPE_BF16: ((uint16_t *)row)[i] = vk_f32_to_bf16(v); break;
	case VK_DTYPE_Q8:
	case VK_DTYPE_Q4: break;   /* not element-addressable */
	}
}

#endif /* VLM_KERNELS_CONVERT_H */
