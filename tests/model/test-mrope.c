/*
 * test-mrope — placeholder runs ↔ items, M-RoPE ids and the rope delta, on hand-worked examples
 * (expected values derived by hand from the Qwen2-VL rule, written out below), every contract
 * violation, and the row sources cut for prefill chunks. The comparison against transformers'
 * own get_rope_index over the fixture prompts lives in test-model-reference.
 */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "daemon/model/mm_spans.h"
#include "daemon/model/mrope.h"

enum { T = 10, VS = 248, VE = 249, IM = 250, VI = 251 };

START_TEST(image_positions)
{
	/* text text <vs> 6 image rows (grid 1 x 4 x 6, merge 2 -> 1 x 2 x 3) <ve> text */
	const int32_t tok[11] = { T, T, VS, IM, IM, IM, IM, IM, IM, VE, T };
	struct vd_mm_item it = { .placeholder = IM, .rows = 6, .grid = { 1, 4, 6 }, .t_interval = 1 };
	struct vd_mm_span sp;
	char err[256];
	int32_t extra[2] = { IM, VI };
	ck_assert_int_eq(vd_mm_spans_find(tok, 11, &it, 1, extra, 2, &sp, err, sizeof(err)), 0);
	ck_assert_int_eq(sp.start, 3);
	ck_assert_int_eq(sp.len, 6);
	ck_assert_int_eq(sp.item, 0);

	int32_t pos[33], delta;
	ck_assert_int_eq(vd_mrope_positions(11, &sp, 1, &it, 1, 2, pos, &delta, err, sizeof(err)), 0);
	/* text 0,1,2; image at offset 3: t = 3; h = 3 + row; w = 3 + col; then 6, 7 */
	const int32_t et[11] = { 0, 1, 2, 3, 3, 3, 3, 3, 3, 6, 7 };
	const int32_t eh[11] = { 0, 1, 2, 3, 3, 3, 4, 4, 4, 6, 7 };
	const int32_t ew[11] = { 0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7 };
	ck_assert_mem_eq(pos, et, sizeof(et));
	ck_assert_mem_eq(pos + 11, eh, sizeof(eh));
	ck_assert_mem_eq(pos + 22, ew, sizeof(ew));
	ck_assert_int_eq(delta, 8 - 11);
	/* the first generated token (index 11) continues at 8 */
	ck_assert_int_eq(vd_mrope_decode_pos(11, delta), 8);

	/* 1-D models ignore grids */
	ck_assert_int_eq(vd_mrope_positions(11, &sp, 1, &it, 0, 2, pos, &delta, err, sizeof(err)), 0);
	for (int i = 0; i < 11; i++)
		ck_assert(pos[i] == i && pos[11 + i] == i && pos[22 + i] == i);
	ck_assert_int_eq(delta, 0);
}
END_TEST

START_TEST(video_positions)
{
	/* text, 3 frames of a 2 x 2 grid (1 x 1 after merge), text: frame ids 1, 2, 3 on the
	 * temporal axis; the text after continues at the largest id + 1 = 4 (original Qwen2-VL rule) */
	const int32_t tok[5] = { T, VI, VI, VI, T };
	struct vd_mm_item it = { .placeholder = VI, .rows = 3, .grid = { 3, 2, 2 }, .t_interval = 1 };
	struct vd_mm_span sp;
	int32_t pos[15], delta;
	char err[256];
	ck_assert_int_eq(vd_mm_spans_find(tok, 5, &it, 1, NULL, 0, &sp, err, sizeof(err)), 0);
	ck_assert_int_eq(vd_mrope_positions(5, &sp, 1, &it, 1, 2, pos, &delta, err, sizeof(err)), 0);
	const int32_t e[15] = { 0, 1, 2, 3, 4,   0, 1, 1, 1, 4,   0, 1, 1, 1, 4 };
	ck_assert_mem_eq(pos, e, sizeof(e));
	ck_assert_int_eq(delta, 0);

	/* Qwen2.5-VL: temporal step 2 (second_per_grid_t 1 x tokens_per_second 2): frames at 1, 3 */
	const int32_t tok2[4] = { T, VI, VI, T };
	struct vd_mm_item it2 = { .placeholder = VI, .rows = 2, .grid = { 2, 2, 2 }, .t_interval = 2 };
	ck_assert_int_eq(vd_mm_spans_find(tok2, 4, &it2, 1, NULL, 0, &sp, err, sizeof(err)), 0);
	ck_assert_int_eq(vd_mrope_positions(4, &sp, 1, &it2, 1, 2, pos, &delta, err, sizeof(err)),
	                 0);
	const int32_t e2[12] = { 0, 1, 3, 4,   0, 1, 1, 4,   0, 1, 1, 4 };
	ck_assert_mem_eq(pos, e2, sizeof(e2));
	ck_assert_int_eq(delta, 1);
	/* a fractional step truncates per frame: 0.5 -> frames at 1 + 0, 1 + 0 */
	it2.t_interval = 0.5f;
	ck_assert_int_eq(vd_mrope_positions(4, &sp, 1, &it2, 1, 2, pos, &delta, err, sizeof(err)),
	                 0);
	ck_assert_int_eq(pos[1], 1);
	ck_assert_int_eq(pos[2], 1);
	ck_assert_int_eq(pos[3], 2);
}
END_TEST

START_TEST(two_images_back_to_back_with_separator)
{
	/* IM IM VE IM: two runs, the second starts after the first's largest id + 1 */
	const int32_t tok[4] = { IM, IM, VE, IM };
	struct vd_mm_item it[2] = {
		{ .placeholder = IM, .rows = 2, .grid = { 1, 2, 4 }, .t_interval = 1 },
		{ .placeholder = IM, .rows = 1, .grid = { 1, 2, 2 }, .t_interval = 1 },
	};
	struct vd_mm_span sp[2];
	int32_t pos[12], delta;
	char err[256];
	ck_assert_int_eq(vd_mm_spans_find(tok, 4, it, 2, NULL, 0, sp, err, sizeof(err)), 0);
	ck_assert_int_eq(sp[1].start, 3);
	ck_assert_int_eq(sp[1].item, 1);
	ck_assert_int_eq(vd_mrope_positions(4, sp, 2, it, 1, 2, pos, &delta, err, sizeof(err)), 0);
	/* image 0: t 0,0 h 0,0 w 0,1 -> next 2; VE 2; image 1 at 3 */
	const int32_t e[12] = { 0, 0, 2, 3,   0, 0, 2, 3,   0, 1, 2, 3 };
	ck_assert_mem_eq(pos, e, sizeof(e));
	ck_assert_int_eq(delta, 0);
}
END_TEST

#define EXPECT_SPANS(tok, n, items, n_items, extra, n_extra, needle) do { \
		struct vd_mm_span sp_[8]; \
		char err_[256] = ""; \
		ck_assert_int_eq(vd_mm_spans_find(tok, n, items, n_items, extra, n_extra, sp_, err_, \
		                                  sizeof(err_)), -EINVAL); \
		ck_assert_msg(strstr(err_, needle), "error '%s' lacks '%s'", err_, needle); \
	} while (0)

START_TEST(span_errors)
{
	const int32_t tok[8] = { T, IM, IM, T, IM, IM, IM, T };
	struct vd_mm_item it[2] = {
		{ .placeholder = IM, .rows = 2 }, { .placeholder = IM, .rows = 3 },
	};
	int32_t extra[1] = { IM };
	struct vd_mm_span sp[2];
	char err[256];
	ck_assert_int_eq(vd_mm_spans_find(tok, 8, it, 2, extra, 1, sp, err, sizeof(err)), 0);
	EXPECT_SPANS(tok, 8, it, 1, extra, 1, "2 placeholder run(s) but 1 tensor(s)");
	EXPECT_SPANS(tok, 4, it, 2, extra, 1, "1 placeholder run(s) but 2 tensor(s)");
	struct vd_mm_item bad_rows[2] = { it[0], { .placeholder = IM, .rows = 4 } };
	EXPECT_SPANS(tok, 8, bad_rows, 2, extra, 1,
	             "run 1 at 4: 3 tokens, tensor 4 rows");
	struct vd_mm_item video_first[2] = { { .placeholder = VI, .rows = 2 }, it[1] };
	EXPECT_SPANS(tok, 8, video_first, 2, extra, 1, "run 0 at 1 is id 250, tensor 0 wants 251");
	/* an image token with no tensor at all: the model's id in extra catches it */
	EXPECT_SPANS(tok, 8, NULL, 0, extra, 1, "2 placeholder run(s) but 0 tensor(s)");
	/* without extra ids, a text-only request ignores the id entirely */
	ck_assert_int_eq(vd_mm_spans_find(tok, 8, NULL, 0, NULL, 0, sp, err, sizeof(err)), 0);
}
END_TEST

START_TEST(position_errors)
{
	const int32_t tok[5] = { T, IM, IM, IM, T };
	struct vd_mm_item it = { .placeholder = IM, .rows = 3, .grid = { 1, 2, 6 }, .t_interval = 1 };
	struct vd_mm_span sp;
	int32_t pos[15], delta;
	char err[256];
	ck_assert_int_eq(vd_mm_spans_find(tok, 5, &it, 1, NULL, 0, &sp, err, sizeof(err)), 0);
	ck_assert_int_eq(vd_mrope_positions(5, &sp, 1, &it, 1, 2, pos, &delta, err, sizeof(err)), 0);
	it.grid[2] = 5;
	ck_assert_int_eq(vd_mrope_positions(5, &sp, 1, &it, 1, 2, pos, &delta, err, sizeof(err)),
	                 -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "grid 1x2x5 not divisible by 2"));
	it.grid[2] = 4;
	ck_assert_int_eq(vd_mrope_positions(5, &sp, 1, &it, 1, 2, pos, &delta, err, sizeof(err)),
	                 -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "item 0: grid gives 2 positions, run 3"));
	it.grid[0] = it.grid[1] = it.grid[2] = 0;
	ck_assert_int_eq(vd_mrope_positions(5, &sp, 1, &it, 1, 2, pos, &delta, err, sizeof(err)),
	                 -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "item 0: no grid t,h,w (M-RoPE model)"));
}
END_TEST

START_TEST(chunk_subs)
{
	/* one 6-row item at prompt rows [3, 9); rows are 16 bytes apart */
	struct vd_mm_span sp = { .start = 3, .len = 6, .item = 0 };
	static const char data[6 * 16];
	struct vk_row_source src = { .dtype = VK_DTYPE_F32, .row_stride = 16, .data = data };
	struct vk_row_source out[2];
	/* chunk [0, 5) placed at step row 10: item rows 0..1 at step rows 13..14 */
	ck_assert_int_eq(vd_mm_chunk_subs(&sp, 1, &src, 0, 5, 10, out, 2), 1);
	ck_assert_int_eq(out[0].row, 13);
	ck_assert_int_eq(out[0].n_rows, 2);
	ck_assert_ptr_eq(out[0].data, data);
	/* chunk [5, 11) at step row 0: item rows 2..5 at step rows 0..3 */
	ck_assert_int_eq(vd_mm_chunk_subs(&sp, 1, &src, 5, 6, 0, out, 2), 1);
	ck_assert_int_eq(out[0].row, 0);
	ck_assert_int_eq(out[0].n_rows, 4);
	ck_assert_ptr_eq(out[0].data, data + 2 * 16);
	/* a chunk inside the text */
	ck_assert_int_eq(vd_mm_chunk_subs(&sp, 1, &src, 9, 4, 0, out, 2), 0);
	ck_assert_int_eq(vd_mm_chunk_subs(&sp, 1, &src, 0, 3, 0, out, 2), 0);
	ck_assert_int_eq(vd_mm_chunk_subs(&sp, 1, &src, 0, 5, 0, out, 0), -ENOSPC);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mrope");
	TCase *tc = tcase_create("positions");
	tcase_add_test(tc, image_positions);
	tcase_add_test(tc, video_positions);
	tcase_add_test(tc, two_images_back_to_back_with_separator);
	tcase_add_test(tc, span_errors);
	tcase_add_test(tc, position_errors);
	tcase_add_test(tc, chunk_subs);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
