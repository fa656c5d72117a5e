/*
 * shm/wire.c — computing and checking the segment layout described by struct vs_layout, and the
 * one check of generation parameters both sides run.
 *
 * The daemon computes the layout once per client; the client checks what it received against the
 * real sizes of the memfds it was given before it touches anything, so a confused or foreign
 * daemon yields -EPROTO instead of a wild pointer.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "shm/wire.h"

#define PAGE 4096u
#define HDR_BYTES 1024u /* control words, one VS_HOT_STRIDE line each */

enum { MIN_ENTRIES = 8, MAX_ENTRIES = 1u << 16 };
#define MIN_ARENA ((uint64_t)64 << 10)
#define MAX_ARENA ((uint64_t)4 << 30)

static uint32_t pow2_clamp(uint32_t v, uint32_t lo, uint32_t hi)
{
	uint32_t p = lo;

	while (p < v && p < hi)
		p <<= 1;
	return p;
}

static uint64_t round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

int vs_layout_compute(struct vs_layout *lay, uint32_t version, uint32_t sq_entries,
		      uint32_t cq_entries, uint64_t arena_bytes, uint32_t tick_ms)
{
	if (!lay)
		return -EINVAL;
	memset(lay, 0, sizeof(*lay));
	lay->size = sizeof(*lay);
	lay->version = version;
	lay->tick_ms = tick_ms;

	lay->cq_tail = 0 * VS_HOT_STRIDE;
	lay->sq_head = 1 * VS_HOT_STRIDE;
	lay->d_waiting = 2 * VS_HOT_STRIDE;
	lay->d_flags = 3 * VS_HOT_STRIDE;
	lay->d_heartbeat = 4 * VS_HOT_STRIDE;
	lay->cqes = HDR_BYTES;
	lay->cq_entries = pow2_clamp(cq_entries, MIN_ENTRIES, MAX_ENTRIES);
	lay->dseg_bytes = round_up(HDR_BYTES + (uint64_t)lay->cq_entries * sizeof(struct vs_cqe), PAGE);

	lay->sq_tail = 0 * VS_HOT_STRIDE;
	lay->cq_head = 1 * VS_HOT_STRIDE;
	lay->c_waiting = 2 * VS_HOT_STRIDE;
	lay->c_heartbeat = 3 * VS_HOT_STRIDE;
	lay->sqes = HDR_BYTES;
	lay->sq_entries = pow2_clamp(sq_entries, MIN_ENTRIES, MAX_ENTRIES);
	if (arena_bytes < MIN_ARENA)
		arena_bytes = MIN_ARENA;
	if (arena_bytes > MAX_ARENA)
		arena_bytes = MAX_ARENA;
	lay->arena = round_up(HDR_BYTES + (uint64_t)lay->sq_entries * sizeof(struct vs_sqe), PAGE);
	lay->arena_bytes = round_up(arena_bytes, PAGE);
	lay->cseg_bytes = lay->arena + lay->arena_bytes;

	lay->sqe_size = sizeof(struct vs_sqe);
	lay->cqe_size = sizeof(struct vs_cqe);
	lay->item_size = sizeof(struct vs_mm_item);
	return 0;
}

static int pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

static int word_ok(uint32_t off, uint64_t seg)
{
	return off % 4 == 0 && vs_range_ok(off, 4, seg);
}

int vs_layout_check(const struct vs_layout *lay, uint64_t dseg_bytes, uint64_t cseg_bytes)
{
	if (!lay || lay->size != sizeof(*lay) || lay->version < VS_PROTO_MIN ||
	    lay->version > VS_PROTO_MAX)
		return -EPROTO;
	if (lay->dseg_bytes != dseg_bytes || lay->cseg_bytes != cseg_bytes)
		return -EPROTO;
	if (lay->sqe_size != sizeof(struct vs_sqe) || lay->cqe_size != sizeof(struct vs_cqe) ||
	    lay->item_size != sizeof(struct vs_mm_item))
		return -EPROTO;
	if (!pow2(lay->sq_entries) || !pow2(lay->cq_entries))
		return -EPROTO;
	if (!word_ok(lay->cq_tail, dseg_bytes) || !word_ok(lay->sq_head, dseg_bytes) ||
	    !word_ok(lay->d_waiting, dseg_bytes) || !word_ok(lay->d_flags, dseg_bytes) ||
	    !word_ok(lay->d_heartbeat, dseg_bytes))
		return -EPROTO;
	if (!word_ok(lay->sq_tail, cseg_bytes) || !word_ok(lay->cq_head, cseg_bytes) ||
	    !word_ok(lay->c_waiting, cseg_bytes) || !word_ok(lay->c_heartbeat, cseg_bytes))
		return -EPROTO;
	if (lay->cqes % 64 || !vs_array_ok(lay->cqes, lay->cq_entries, sizeof(struct vs_cqe), dseg_bytes))
		return -EPROTO;
	if (lay->sqes % 64 || !vs_array_ok(lay->sqes, lay->sq_entries, sizeof(struct vs_sqe), cseg_bytes))
		return -EPROTO;
	if (lay->arena % 64 || !vs_range_ok(lay->arena, lay->arena_bytes, cseg_bytes))
		return -EPROTO;
	return 0;
}

static int say(char *why, size_t whylen, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int say(char *why, size_t whylen, int code, const char *fmt, ...)
{
	va_list ap;

	if (whylen) {
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return code;
}

int vs_gen_params_check(const struct vs_gen_params *p, uint32_t max_new_tokens, char *why,
			size_t whylen)
{
	if (p->max_tokens > max_new_tokens)
		return say(why, whylen, -E2BIG, "max_tokens %" PRIu32 " > limit %" PRIu32,
			   p->max_tokens, max_new_tokens);
	if (p->min_tokens > p->max_tokens && p->max_tokens)
		return say(why, whylen, -EINVAL, "min_tokens %" PRIu32 " > max_tokens %" PRIu32,
			   p->min_tokens, p->max_tokens);
	if (!isfinite(p->temperature) || p->temperature < 0)
		return say(why, whylen, -EINVAL, "temperature %g: need finite >= 0",
			   (double)p->temperature);
	if (!isfinite(p->top_p) || p->top_p < 0 || p->top_p > 1)
		return say(why, whylen, -EINVAL, "top_p %g: need 0..1", (double)p->top_p);
	if (!isfinite(p->min_p) || p->min_p < 0 || p->min_p > 1)
		return say(why, whylen, -EINVAL, "min_p %g: need 0..1", (double)p->min_p);
	if (!isfinite(p->repetition_penalty) || p->repetition_penalty < 0)
		return say(why, whylen, -EINVAL, "repetition_penalty %g: need finite >= 0",
			   (double)p->repetition_penalty);
	if (!isfinite(p->frequency_penalty) || !isfinite(p->presence_penalty))
		return say(why, whylen, -EINVAL, "frequency/presence penalty not finite");
	if (p->top_k < 0)
		return say(why, whylen, -EINVAL, "top_k %" PRId32 ": need >= 0", p->top_k);
	if (p->logprobs > VS_MAX_LOGPROBS)
		return say(why, whylen, -EINVAL, "logprobs %" PRIu32 " > %u", p->logprobs,
			   VS_MAX_LOGPROBS);
	if (p->flags & ~(VS_GEN_IGNORE_EOS | VS_GEN_HAS_SEED | VS_GEN_LOGPROBS))
		return say(why, whylen, -EINVAL, "unknown generation flags 0x%" PRIx32, p->flags);
	return 0;
}
