/*
 * fuzz-validate — libFuzzer target for submission validation (daemon/io/validate.c), the first code
 * that reads what a client wrote. Input: a struct vs_sqe (128 bytes, zero-padded when shorter)
 * followed by the arena bytes. On success every copied array is read end to end and checked
 * against the arena (the copies must be what the arena held), every item's arena range is read
 * at its first and last byte, and the generation parameters pass the shared check: a range the
 * validator wrongly accepted is an out-of-bounds read under ASan or an abort here.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/io/validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vs_sqe sqe;
	struct vd_limits lim;
	struct vd_request *r = NULL;
	char why[VS_CQE_MESSAGE_LEN];
	size_t n = size < sizeof(sqe) ? size : sizeof(sqe);
	size_t an = size - n;
	unsigned char *arena = malloc(an ? an : 1); /* exact size: ASan sees its end */
	volatile unsigned char sink = 0;
	int e;

	if (!arena)
		return 0;
	memset(&sqe, 0, sizeof(sqe));
	memcpy(&sqe, data, n);
	memcpy(arena, data + n, an);
	vd_limits_default(&lim);
	lim.max_tokens = 4096; /* keep copies small: the limits themselves are not the target */
	e = vd_validate_sqe(&sqe, arena, an, &lim, &r, why, sizeof(why));
	if (e == 0) {
		if (!r || memcmp(&r->sqe, &sqe, sizeof(sqe)))
			abort();
		if (r->sqe.n_tokens && memcmp(r->tokens, arena + sqe.tokens_off, (size_t)sqe.n_tokens * 4))
			abort();
		if (r->sqe.n_stop_ids &&
		    memcmp(r->stop_ids, arena + sqe.stop_ids_off, (size_t)sqe.n_stop_ids * 4))
			abort();
		if (sqe.opcode != VS_OP_CANCEL && sqe.opcode != VS_OP_NOP &&
		    vs_gen_params_check(&sqe.params, lim.max_new_tokens, NULL, 0))
			abort();
		for (uint32_t k = 0; k < r->sqe.n_items; k++) {
			const struct vs_mm_item *it = &r->items[k];

			if (it->device == VS_DEV_ARENA) {
				sink ^= r->arena[it->data_off];
				sink ^= r->arena[it->data_off + it->data_bytes - 1];
			}
		}
		vd_request_free(r);
	} else if (r || !why[0]) {
		abort(); /* a refusal leaves nothing behind and says why */
	}
	(void)sink;
	free(arena);
	return 0;
}
