/*
 * tests/tokenizer/test-tokenizer.c — the tokenizer against Hugging Face's own outputs.
 *
 * Every expected id and string comes from the JSON files in tests/tokenizer/data, written by
 * gen_fixtures.py with Hugging Face `tokenizers` / `transformers` — never from this code.
 * Usage: test-tokenizer DATA_DIR
 */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm/tokenizer.h"

static const char *g_data;

static char *path_of(const char *name)
{
	static char buf[4096];
	snprintf(buf, sizeof(buf), "%s/%s", g_data, name);
	return buf;
}

static struct vlm_tokenizer *load(const char *name)
{
	struct vlm_tokenizer *t = NULL;
	char err[256];
	int r = vlm_tokenizer_load(path_of(name), &t, err, sizeof(err));
	ck_assert_msg(r == 0, "load %s: %d %s", name, r, err);
	return t;
}

static json_t *load_json(const char *name)
{
	json_error_t je;
	json_t *j = json_load_file(path_of(name), JSON_ALLOW_NUL, &je);
	ck_assert_msg(j, "%s: %s", name, je.text);
	return j;
}

static void expect_ids(json_t *want, const int32_t *ids, size_t n, const char *what,
		       const char *text)
{
	size_t wn = json_array_size(want);
	size_t i = 0;
	while (i < n && i < wn && json_integer_value(json_array_get(want, i)) == ids[i])
		i++;
	ck_assert_msg(i == n && i == wn, "%s: \"%s\": %zu ids (want %zu), first difference at %zu",
		      what, text, n, wn, i);
}

/* Decodes ids one by one through the streaming decoder and returns the concatenation. */
static char *stream_decode(const struct vlm_tokenizer *t, const int32_t *ids, size_t n,
			   unsigned flags)
{
	struct vlm_detok *d;
	ck_assert_int_eq(vlm_detok_new(t, flags, &d), 0);
	size_t cap = 64, len = 0;
	char *acc = malloc(cap);
	for (size_t i = 0; i <= n; i++) {
		const char *s;
		size_t k;
		int r = i < n ? vlm_detok_feed(d, ids[i], &s, &k) : vlm_detok_flush(d, &s, &k);
		ck_assert_int_ge(r, 0);
		ck_assert_uint_eq((size_t)r, k);
		/* Only complete characters come out: never a dangling lead byte at the end. */
		if (i < n && k > 0) {
			unsigned char last = (unsigned char)s[k - 1];
			ck_assert_msg(last < 0x80 || (last & 0xC0) == 0x80, "partial char emitted");
		}
		while (len + k + 1 > cap)
			cap *= 2;
		acc = realloc(acc, cap);
		memcpy(acc + len, s, k);
		len += k;
	}
	acc[len] = '\0';
	vlm_detok_free(d);
	return acc;
}

static void check_encode_cases(const char *file, json_t *cases)
{
	struct vlm_tokenizer *t = load(file);
	size_t i;
	json_t *c;
	json_array_foreach(cases, i, c) {
		json_t *jt = json_object_get(c, "text");
		const char *text = json_string_value(jt);
		size_t len = json_string_length(jt);
		int32_t *ids;
		size_t n;
		int r = vlm_tokenizer_encode(t, text, len, 0, &ids, &n);
		ck_assert_msg(r >= 0, "encode \"%s\": %d", text, r);
		expect_ids(json_object_get(c, "ids"), ids, n, file, text);

		int32_t *ids2;
		size_t n2;
		r = vlm_tokenizer_encode(t, text, len, VLM_ENCODE_SPECIAL_AS_TEXT, &ids2, &n2);
		ck_assert_int_ge(r, 0);
		expect_ids(json_object_get(c, "ids_special_as_text"), ids2, n2, "special-as-text", text);
		vlm_tokens_free(ids2);

		static const struct { const char *key; unsigned flags; } dec[] = {
			{"decoded", 0}, {"decoded_skip_special", VLM_DECODE_SKIP_SPECIAL},
		};
		for (size_t k = 0; k < 2; k++) {
			json_t *want = json_object_get(c, dec[k].key);
			char *s;
			size_t sl;
			ck_assert_int_eq(vlm_tokenizer_decode(t, ids, n, dec[k].flags, &s, &sl), 0);
			ck_assert_msg(sl == json_string_length(want) &&
				      !memcmp(s, json_string_value(want), sl),
				      "%s %s of \"%s\": got \"%s\"", file, dec[k].key, text, s);
			char *st = stream_decode(t, ids, n, dec[k].flags);
			ck_assert_str_eq(st, s);
			free(st);
			vlm_text_free(s);
		}
		vlm_tokens_free(ids);
	}
	vlm_tokenizer_free(t);
}

static void check_decode_cases(const char *file, json_t *cases)
{
	struct vlm_tokenizer *t = load(file);
	size_t i;
	json_t *c;
	json_array_foreach(cases, i, c) {
		json_t *jids = json_object_get(c, "ids");
		size_t n = json_array_size(jids);
		int32_t *ids = malloc((n + 1) * sizeof(*ids));
		for (size_t k = 0; k < n; k++)
			ids[k] = (int32_t)json_integer_value(json_array_get(jids, k));
		static const struct { const char *key; unsigned flags; } dec[] = {
			{"decoded", 0}, {"decoded_skip_special", VLM_DECODE_SKIP_SPECIAL},
		};
		for (size_t k = 0; k < 2; k++) {
			json_t *want = json_object_get(c, dec[k].key);
			char *s;
			size_t sl;
			ck_assert_int_eq(vlm_tokenizer_decode(t, ids, n, dec[k].flags, &s, &sl), 0);
			ck_assert_msg(sl == json_string_length(want) &&
				      !memcmp(s, json_string_value(want), sl),
				      "%s decode case %zu (%s) differs: got \"%s\"", file, i,
				      dec[k].key, s);
			char *st = stream_decode(t, ids, n, dec[k].flags);
			ck_assert_str_eq(st, s);
			free(st);
			vlm_text_free(s);
		}
		free(ids);
	}
	vlm_tokenizer_free(t);
}

START_TEST(test_hf_cases)
{
	json_t *all = load_json("cases.json");
	const char *file;
	json_t *v;
	size_t n_files = 0;
	json_object_foreach(all, file, v) {
		ck_assert_int_gt(json_array_size(json_object_get(v, "encode")), 0);
		check_encode_cases(file, json_object_get(v, "encode"));
		check_decode_cases(file, json_object_get(v, "decode"));
		n_files++;
	}
	ck_assert_uint_eq(n_files, 3);
	json_decref(all);
}
END_TEST

START_TEST(test_chat_template)
{
	struct vlm_tokenizer *t = load("tokenizer.json");
	json_t *all = load_json("chat.json");
	uint32_t merge = (uint32_t)json_integer_value(json_object_get(all, "merge_size"));
	int32_t ipad = vlm_tokenizer_token_to_id(t, "<|image_pad|>");
	int32_t vpad = vlm_tokenizer_token_to_id(t, "<|video_pad|>");
	ck_assert_int_ge(ipad, 0);
	ck_assert_int_ge(vpad, 0);
	size_t i;
	json_t *conv;
	json_array_foreach(json_object_get(all, "conversations"), i, conv) {
		char *msgs = json_dumps(json_object_get(conv, "messages"), 0);
		struct vlm_chat *chat;
		char err[256];
		ck_assert_msg(vlm_chat_from_json(msgs, strlen(msgs), &chat, err, sizeof(err)) == 0,
			      "%s", err);
		struct vlm_chat_options o = {
			.merge_size = merge,
			.add_generation_prompt = json_is_true(json_object_get(conv,
									      "add_generation_prompt")),
			.add_vision_id = json_is_true(json_object_get(conv, "add_vision_id")),
		};
		struct vlm_chat_result res;
		int r = vlm_chat_encode(t, chat, &o, &res);
		ck_assert_msg(r >= 0, "chat %zu: %d", i, r);
		ck_assert_uint_eq((size_t)r, res.n_ids);
		expect_ids(json_object_get(conv, "ids"), res.ids, res.n_ids, "chat", msgs);

		/* Items: one per image/video part, in order, each covering exactly its run. */
		size_t k = 0, j;
		json_t *m;
		json_array_foreach(json_object_get(conv, "messages"), j, m) {
			json_t *content = json_object_get(m, "content");
			size_t q;
			json_t *p;
			json_array_foreach(content, q, p) {
				json_t *g = json_object_get(p, "grid_thw");
				if (!g)
					continue;
				ck_assert_uint_lt(k, res.n_items);
				const struct vlm_chat_item *it = &res.items[k++];
				uint32_t gt = (uint32_t)json_integer_value(json_array_get(g, 0));
				uint32_t gh = (uint32_t)json_integer_value(json_array_get(g, 1));
				uint32_t gw = (uint32_t)json_integer_value(json_array_get(g, 2));
				bool img = !strcmp(json_string_value(json_object_get(p, "type")), "image");
				ck_assert_int_eq(it->placeholder_id, img ? ipad : vpad);
				ck_assert_uint_eq(it->length, gt * gh * gw / (merge * merge));
				ck_assert_uint_eq(it->grid_t, gt);
				ck_assert_uint_eq(it->grid_h, gh);
				ck_assert_uint_eq(it->grid_w, gw);
				ck_assert_uint_le(it->offset + it->length, res.n_ids);
				for (uint32_t x = 0; x < it->length; x++)
					ck_assert_int_eq(res.ids[it->offset + x], it->placeholder_id);
				ck_assert_int_ne(res.ids[it->offset - 1], it->placeholder_id);
				ck_assert_int_ne(res.ids[it->offset + it->length], it->placeholder_id);
			}
		}
		ck_assert_uint_eq(k, res.n_items);
		vlm_chat_result_fini(&res);
		vlm_chat_free(chat);
		free(msgs);
	}
	json_decref(all);
	vlm_tokenizer_free(t);
}
END_TEST

START_TEST(test_chat_builder)
{
	struct vlm_tokenizer *t = load("tokenizer.json");
	struct vlm_chat *a, *b;
	ck_assert_int_eq(vlm_chat_new(&a), 0);
	ck_assert_int_eq(vlm_chat_add_text(a, "x", 1), -EINVAL); /* no message yet */
	ck_assert_int_eq(vlm_chat_add_message(a, "user"), 0);
	ck_assert_int_eq(vlm_chat_add_media(a, VLM_CHAT_IMAGE, 1, 0, 4), -EINVAL);
	ck_assert_int_eq(vlm_chat_add_media(a, VLM_CHAT_IMAGE, 1, 4, 6), 0);
	ck_assert_int_eq(vlm_chat_add_text(a, "Describe this image.", 20), 0);
	const char *js = "[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"grid_thw\":[1,4,6]},"
			 "{\"type\":\"text\",\"text\":\"Describe this image.\"}]}]";
	ck_assert_int_eq(vlm_chat_from_json(js, strlen(js), &b, NULL, 0), 0);
	struct vlm_chat_options o = {.add_generation_prompt = true};
	struct vlm_chat_result ra, rb;
	ck_assert_int_gt(vlm_chat_encode(t, a, &o, &ra), 0);
	ck_assert_int_gt(vlm_chat_encode(t, b, &o, &rb), 0);
	ck_assert_uint_eq(ra.n_ids, rb.n_ids);
	ck_assert_mem_eq(ra.ids, rb.ids, ra.n_ids * sizeof(int32_t));
	ck_assert_uint_eq(ra.n_items, 1);
	ck_assert_uint_eq(ra.items[0].length, 6);
	vlm_chat_result_fini(&ra);
	vlm_chat_result_fini(&rb);
	vlm_chat_result_fini(&ra); /* zeroed: no-op */

	/* A grid not divisible by merge_size^2 is refused. */
	ck_assert_int_eq(vlm_chat_add_media(a, VLM_CHAT_VIDEO, 1, 3, 3), 0);
	ck_assert_int_eq(vlm_chat_encode(t, a, &o, &ra), -EINVAL);
	ck_assert_ptr_null(ra.ids);

	/* Content special tokens: parsed by default (as transformers), text on request. */
	struct vlm_chat *c;
	ck_assert_int_eq(vlm_chat_new(&c), 0);
	ck_assert_int_eq(vlm_chat_add_message(c, "user"), 0);
	ck_assert_int_eq(vlm_chat_add_text(c, "<|im_end|>", 10), 0);
	int32_t im_end = vlm_tokenizer_token_to_id(t, "<|im_end|>");
	struct vlm_chat_options safe = {.content_special_as_text = true};
	ck_assert_int_gt(vlm_chat_encode(t, c, NULL, &ra), 0);
	ck_assert_int_gt(vlm_chat_encode(t, c, &safe, &rb), 0);
	size_t na = 0, nb = 0;
	for (size_t i = 0; i < ra.n_ids; i++)
		na += ra.ids[i] == im_end;
	for (size_t i = 0; i < rb.n_ids; i++)
		nb += rb.ids[i] == im_end;
	ck_assert_uint_eq(na, 3); /* system turn, the content, user turn */
	ck_assert_uint_eq(nb, 2);
	vlm_chat_result_fini(&ra);
	vlm_chat_result_fini(&rb);

	char err[128];
	struct vlm_chat *bad;
	ck_assert_int_eq(vlm_chat_from_json("[{\"role\":1}]", 12, &bad, err, sizeof(err)), -EBADMSG);
	ck_assert_ptr_null(bad);
	ck_assert(strlen(err) > 0);
	ck_assert_int_eq(vlm_chat_from_json("[{", 2, &bad, err, sizeof(err)), -EBADMSG);
	vlm_chat_free(a);
	vlm_chat_free(b);
	vlm_chat_free(c);
	vlm_tokenizer_free(t);
}
END_TEST

START_TEST(test_malformed)
{
	static const struct { const char *json; int err; } bad[] = {
		{"", -EBADMSG},
		{"{", -EBADMSG},
		{"[]", -EBADMSG},
		{"{}", -ENOTSUP},
		{"{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"decoder\":{\"type\":\"ByteLevel\"}}",
		 -EBADMSG},
		{"{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"decoder\":{\"type\":\"ByteLevel\"},"
		 "\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", -ENOTSUP},
		{"{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"decoder\":{\"type\":\"ByteLevel\"},"
		 "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a a\"]}}", -EBADMSG},
		{"{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"decoder\":{\"type\":\"ByteLevel\"},"
		 "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}", -EBADMSG},
		{"{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"decoder\":{\"type\":\"ByteLevel\"},"
		 "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":99999999},\"merges\":[]}}", -EBADMSG},
		{"{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},"
		 "\"behavior\":\"Isolated\"}}", -EBADMSG},
		{"{\"normalizer\":{\"type\":\"Lowercase\"}}", -ENOTSUP},
		{"{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"decoder\":{\"type\":\"ByteLevel\"},"
		 "\"model\":{\"vocab\":{\"a\":0},\"merges\":[1]}}", -EBADMSG},
		{"{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"decoder\":{\"type\":\"ByteLevel\"},"
		 "\"added_tokens\":[{\"id\":1}],\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}",
		 -EBADMSG},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct vlm_tokenizer *t = (void *)1;
		char err[256] = "x";
		int r = vlm_tokenizer_load_buffer(bad[i].json, strlen(bad[i].json), &t, err,
						  sizeof(err));
		ck_assert_msg(r == bad[i].err, "case %zu: got %d want %d (%s)", i, r, bad[i].err, err);
		ck_assert_ptr_null(t);
		ck_assert_msg(strlen(err) > 0, "case %zu: no message", i);
	}
	struct vlm_tokenizer *t;
	char err[256];
	ck_assert_int_eq(vlm_tokenizer_load("/nonexistent/tokenizer.json", &t, err, sizeof(err)),
			 -ENOENT);
	ck_assert(strstr(err, "/nonexistent") != NULL);
	ck_assert_int_eq(vlm_tokenizer_load(NULL, &t, NULL, 0), -EINVAL);

	/* Every truncation of a real file fails cleanly (never crashes). */
	FILE *f = fopen(path_of("tokenizer-flags.json"), "rb");
	ck_assert_ptr_nonnull(f);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	rewind(f);
	char *buf = malloc((size_t)n);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	for (long cut = 0; cut < n - 2; cut += 997) {
		ck_assert_int_eq(vlm_tokenizer_load_buffer(buf, (size_t)cut, &t, err, sizeof(err)),
				 -EBADMSG);
	}
	ck_assert_int_eq(vlm_tokenizer_load_buffer(buf, (size_t)n, &t, err, sizeof(err)), 0);
	vlm_tokenizer_free(t);
	free(buf);
	vlm_tokenizer_free(NULL);
}
END_TEST

START_TEST(test_bad_input)
{
	struct vlm_tokenizer *t = load("tokenizer.json");
	int32_t *ids;
	size_t n;
	ck_assert_int_eq(vlm_tokenizer_encode(t, "a\xff" "b", 3, 0, &ids, &n), -EILSEQ);
	ck_assert_int_eq(vlm_tokenizer_encode(t, "\xed\xa0\x80", 3, 0, &ids, &n), -EILSEQ);
	ck_assert_int_eq(vlm_tokenizer_encode(t, "\xe4\xb8", 2, 0, &ids, &n), -EILSEQ);
	ck_assert_int_eq(vlm_tokenizer_encode(t, "x", 1, 1u << 7, &ids, &n), -EINVAL);
	ck_assert_int_eq(vlm_tokenizer_encode(t, "", 0, 0, &ids, &n), 0);
	ck_assert_ptr_null(ids);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(vlm_tokenizer_token_to_id(t, "<|im_end|>"),
			 vlm_tokenizer_token_to_id(t, "<|im_start|>") + 1);
	ck_assert_int_eq(vlm_tokenizer_token_to_id(t, "no such token"), -ENOENT);
	ck_assert_ptr_null(vlm_tokenizer_id_to_token(t, -1));
	ck_assert_ptr_null(vlm_tokenizer_id_to_token(t, (int32_t)vlm_tokenizer_vocab_size(t)));
	ck_assert(vlm_tokenizer_is_special(t, vlm_tokenizer_token_to_id(t, "<|image_pad|>")));

	/* Decode ignores unknown ids, as HF does. */
	int32_t odd[] = {-5, 1 << 30};
	char *s;
	ck_assert_int_eq(vlm_tokenizer_decode(t, odd, 2, 0, &s, NULL), 0);
	ck_assert_str_eq(s, "");
	vlm_text_free(s);

	/* Long runs (one pre-tokenized word, or one whitespace piece) round-trip. */
	static const char *fill[] = {"a", " ", "\n", "中", "1", "!", "é"};
	for (size_t k = 0; k < sizeof(fill) / sizeof(fill[0]); k++) {
		size_t fl = strlen(fill[k]), reps = 100000 / fl;
		char *big = malloc(reps * fl + 1);
		for (size_t i = 0; i < reps; i++)
			memcpy(big + i * fl, fill[k], fl);
		ck_assert_int_gt(vlm_tokenizer_encode(t, big, reps * fl, 0, &ids, &n), 0);
		size_t sl;
		ck_assert_int_eq(vlm_tokenizer_decode(t, ids, n, 0, &s, &sl), 0);
		ck_assert_uint_eq(sl, reps * fl);
		ck_assert(memcmp(s, big, sl) == 0);
		vlm_text_free(s);
		vlm_tokens_free(ids);
		free(big);
	}
	vlm_tokenizer_free(t);
}
END_TEST

struct thr {
	const struct vlm_tokenizer *t;
	const char *text;
	size_t len;
	const int32_t *want;
	size_t n_want;
	int bad;
};

static void *encode_thread(void *arg)
{
	struct thr *a = arg;
	for (int i = 0; i < 200; i++) {
		int32_t *ids;
		size_t n;
		if (vlm_tokenizer_encode(a->t, a->text, a->len, 0, &ids, &n) < 0 || n != a->n_want ||
		    memcmp(ids, a->want, n * sizeof(*ids)))
			a->bad++;
		vlm_tokens_free(ids);
	}
	return NULL;
}

START_TEST(test_threads)
{
	struct vlm_tokenizer *t = load("tokenizer.json");
	json_t *all = load_json("cases.json");
	json_t *cases = json_object_get(json_object_get(all, "tokenizer.json"), "encode");
	/* Concatenate many cases into one text and get the reference ids single-threaded. */
	size_t cap = 1 << 16, len = 0;
	char *text = malloc(cap);
	size_t i;
	json_t *c;
	json_array_foreach(cases, i, c) {
		json_t *jt = json_object_get(c, "text");
		size_t l = json_string_length(jt);
		if (len + l > cap)
			break;
		memcpy(text + len, json_string_value(jt), l);
		len += l;
	}
	int32_t *want;
	size_t n_want;
	ck_assert_int_gt(vlm_tokenizer_encode(t, text, len, 0, &want, &n_want), 0);
	pthread_t th[4];
	struct thr a[4];
	for (int k = 0; k < 4; k++) {
		a[k] = (struct thr){.t = t, .text = text, .len = len, .want = want, .n_want = n_want};
		pthread_create(&th[k], NULL, encode_thread, &a[k]);
	}
	for (int k = 0; k < 4; k++) {
		pthread_join(th[k], NULL);
		ck_assert_int_eq(a[k].bad, 0);
	}
	vlm_tokens_free(want);
	free(text);
	json_decref(all);
	vlm_tokenizer_free(t);
}
END_TEST

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
		return 2;
	}
	g_data = argv[1];
	Suite *s = suite_create("tokenizer");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_hf_cases);
	tcase_add_test(tc, test_chat_template);
	tcase_add_test(tc, test_chat_builder);
	tcase_add_test(tc, test_malformed);
	tcase_add_test(tc, test_bad_input);
	suite_add_tcase(s, tc);
	TCase *tt = tcase_create("threads"); /* also run under TSan (suite 'tsan') */
	tcase_set_timeout(tt, 300);
	tcase_add_test(tt, test_threads);
	suite_add_tcase(s, tt);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
