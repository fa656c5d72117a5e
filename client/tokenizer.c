/*
 * client/tokenizer.c — vlm_tokenizer: loading tokenizer.json, encoding, decoding, vocab lookups.
 *
 * Loading parses the file with jansson, copies every token string into one arena, and builds
 * flat tables (string -> id maps, merge table keyed by id pairs, per-id decoded bytes) so that
 * encoding never touches JSON or builds strings. Anything the file asks for that this code does
 * not implement is refused with -ENOTSUP and a message, rather than silently tokenizing
 * differently from Hugging Face.
 *
 * Encoding follows HF's pipeline: added tokens are split out of the raw text, the rest is
 * normalized, normalized added tokens are split out of that, the rest is pre-tokenized into
 * words, and each word goes through the word cache or the BPE merge loop. The cache is shared by
 * the tokenizer's callers through a trylock: a caller that finds it busy encodes with private
 * scratch and no cache, so concurrent callers never wait and always get the same ids.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vlm/tokenizer.h"

#include "bytelevel.h"
#include "jscan.h"
#include "tokenizer_impl.h"
#include "utf8.h"

#define MAX_IDS (1u << 24) /* refuse files whose ids would need huge tables */

/* ---- loading ---------------------------------------------------------------------------- */

struct loader {
	struct vlm_tokenizer *t;
	char *err;
	size_t err_len;
	size_t arena_used;
};

static int fail(struct loader *L, int e, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct loader *L, int e, const char *fmt, ...)
{
	if (L->err && L->err_len) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(L->err, L->err_len, fmt, ap);
		va_end(ap);
	}
	return e;
}

static const char *arena_put(struct loader *L, const char *s, size_t n)
{
	char *p = L->t->arena + L->arena_used;
	memcpy(p, s, n);
	p[n] = '\0';
	L->arena_used += n + 1;
	return p;
}

/* Reads an optional boolean member; missing/null = dflt. */
static int get_bool(struct loader *L, json_t *o, const char *key, bool dflt, bool *out)
{
	json_t *v = json_object_get(o, key);
	*out = dflt;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return fail(L, -EBADMSG, "tokenizer.json: \"%s\" must be true or false", key);
	*out = json_is_true(v);
	return 0;
}

static const char *type_of(json_t *o)
{
	json_t *t = json_object_get(o, "type");
	return json_is_string(t) ? json_string_value(t) : NULL;
}

static int load_normalizer(struct loader *L, json_t *n, int depth)
{
	if (!n || json_is_null(n))
		return 0;
	const char *ty = json_is_object(n) ? type_of(n) : NULL;
	if (!ty)
		return fail(L, -EBADMSG, "tokenizer.json: normalizer must be an object with a \"type\"");
	struct vt_normalizer *nz = &L->t->norm;
	enum vt_norm_form f;
	if (!strcmp(ty, "Sequence")) {
		json_t *arr = json_object_get(n, "normalizers");
		if (!json_is_array(arr) || depth > 2)
			return fail(L, -EBADMSG, "tokenizer.json: bad normalizer Sequence");
		size_t i;
		json_t *e;
		json_array_foreach(arr, i, e) {
			int r = load_normalizer(L, e, depth + 1);
			if (r < 0)
				return r;
		}
		return 0;
	} else if (!strcmp(ty, "NFC")) {
		f = VT_NORM_NFC;
	} else if (!strcmp(ty, "NFD")) {
		f = VT_NORM_NFD;
	} else if (!strcmp(ty, "NFKC")) {
		f = VT_NORM_NFKC;
	} else if (!strcmp(ty, "NFKD")) {
		f = VT_NORM_NFKD;
	} else {
		return fail(L, -ENOTSUP, "tokenizer.json: normalizer \"%s\" is not supported", ty);
	}
	if (nz->n >= VT_NORM_MAX)
		return fail(L, -ENOTSUP, "tokenizer.json: too many normalizers");
	nz->form[nz->n++] = f;
	return 0;
}

static int load_pretok(struct loader *L, json_t *p, int depth, bool *byte_level)
{
	if (!p || json_is_null(p))
		return 0;
	const char *ty = json_is_object(p) ? type_of(p) : NULL;
	if (!ty)
		return fail(L, -EBADMSG,
			    "tokenizer.json: pre_tokenizer must be an object with a \"type\"");
	int r;
	if (!strcmp(ty, "Sequence")) {
		json_t *arr = json_object_get(p, "pretokenizers");
		if (!json_is_array(arr) || depth > 2)
			return fail(L, -EBADMSG, "tokenizer.json: bad pre_tokenizer Sequence");
		size_t i;
		json_t *e;
		json_array_foreach(arr, i, e) {
			if ((r = load_pretok(L, e, depth + 1, byte_level)) < 0)
				return r;
		}
		return 0;
	}
	if (*byte_level)
		return fail(L, -ENOTSUP, "tokenizer.json: pre-tokenizers after ByteLevel are not "
			    "supported");
	if (!strcmp(ty, "Split")) {
		json_t *pat = json_object_get(p, "pattern");
		json_t *re = json_is_object(pat) ? json_object_get(pat, "Regex") : NULL;
		json_t *str = json_is_object(pat) ? json_object_get(pat, "String") : NULL;
		json_t *pv = re ? re : str;
		if (!json_is_string(pv))
			return fail(L, -EBADMSG, "tokenizer.json: Split needs pattern.Regex or "
				    "pattern.String");
		const char *beh = json_string_value(json_object_get(p, "behavior"));
		enum vt_split_behavior b;
		if (!beh)
			return fail(L, -EBADMSG, "tokenizer.json: Split needs a \"behavior\"");
		if (!strcmp(beh, "Isolated"))
			b = VT_SPLIT_ISOLATED;
		else if (!strcmp(beh, "Removed"))
			b = VT_SPLIT_REMOVED;
		else
			return fail(L, -ENOTSUP, "tokenizer.json: Split behavior \"%s\" is not "
				    "supported", beh);
		bool invert;
		if ((r = get_bool(L, p, "invert", false, &invert)) < 0)
			return r;
		if (invert)
			return fail(L, -ENOTSUP, "tokenizer.json: inverted Split is not supported");
		r = vt_pretok_add_regex(&L->t->pretok, json_string_value(pv),
					json_string_length(pv), re == NULL, b, L->err, L->err_len);
		if (r == -ENOSPC)
			return fail(L, -ENOTSUP, "tokenizer.json: too many pre-tokenizers");
		return r;
	}
	if (!strcmp(ty, "ByteLevel")) {
		bool prefix, use_regex;
		if ((r = get_bool(L, p, "add_prefix_space", true, &prefix)) < 0 ||
		    (r = get_bool(L, p, "use_regex", true, &use_regex)) < 0)
			return r;
		if (prefix && vt_pretok_add_prefix_space(&L->t->pretok) < 0)
			return fail(L, -ENOTSUP, "tokenizer.json: too many pre-tokenizers");
		if (use_regex) {
			r = vt_pretok_add_regex(&L->t->pretok, vt_gpt2_pattern,
						strlen(vt_gpt2_pattern), false, VT_SPLIT_ISOLATED,
						L->err, L->err_len);
			if (r < 0)
				return r == -ENOSPC ? fail(L, -ENOTSUP, "tokenizer.json: too many "
							   "pre-tokenizers") : r;
		}
		*byte_level = true;
		return 0;
	}
	return fail(L, -ENOTSUP, "tokenizer.json: pre_tokenizer \"%s\" is not supported", ty);
}

static int check_decoder(struct loader *L, json_t *d, json_t *post)
{
	const char *ty = json_is_object(d) ? type_of(d) : NULL;
	if (ty && !strcmp(ty, "Sequence")) {
		json_t *arr = json_object_get(d, "decoders");
		if (json_is_array(arr) && json_array_size(arr) == 1)
			ty = type_of(json_array_get(arr, 0));
	}
	if (!ty || strcmp(ty, "ByteLevel"))
		return fail(L, -ENOTSUP, "tokenizer.json: decoder must be ByteLevel (got %s)",
			    ty ? ty : "none");
	if (post && !json_is_null(post)) {
		const char *pt = json_is_object(post) ? type_of(post) : NULL;
		if (!pt || strcmp(pt, "ByteLevel"))
			return fail(L, -ENOTSUP, "tokenizer.json: post_processor \"%s\" is not "
				    "supported (it would add tokens)", pt ? pt : "?");
	}
	return 0;
}

static int get_id(struct loader *L, json_t *v, const char *what, int32_t *id)
{
	*id = 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) >= (json_int_t)MAX_IDS)
		return fail(L, -EBADMSG, "tokenizer.json: %s: id must be an integer in [0, %u)", what,
			    MAX_IDS);
	*id = (int32_t)json_integer_value(v);
	return 0;
}

struct vocab_ent {
	const char *s; /* in the arena */
	uint32_t len;
	int32_t id;
};

/* model.vocab from the raw document: {"token": id, ...}; strings go straight into the arena. */
static int scan_vocab(struct loader *L, struct vt_jscan *js, struct vocab_ent **ret, size_t *ret_n,
		      size_t *max_id)
{
	size_t cap = 1024, n = 0;
	struct vocab_ent *v = malloc(cap * sizeof(*v));
	int r;
	if (!v)
		return -ENOMEM;
	if (vt_jscan_peek(js) != '{') {
		free(v);
		return fail(L, -EBADMSG, "tokenizer.json: model.vocab must be an object");
	}
	js->p++;
	if (vt_jscan_peek(js) == '}') {
		js->p++;
		goto done;
	}
	do {
		char *dst = L->t->arena + L->arena_used;
		size_t len;
		int64_t id;
		if ((r = vt_jscan_string(js, dst, &len)) < 0 || (r = vt_jscan_expect(js, ':')) < 0 ||
		    (r = vt_jscan_int(js, &id)) < 0)
			goto err;
		if (id < 0 || id >= (int64_t)MAX_IDS) {
			r = vt_jscan_fail(js, "model.vocab: id out of range");
			goto err;
		}
		dst[len] = '\0';
		L->arena_used += len + 1;
		if (n == cap) {
			struct vocab_ent *nv = realloc(v, 2 * cap * sizeof(*v));
			if (!nv) {
				r = -ENOMEM;
				goto err;
			}
			v = nv;
			cap *= 2;
		}
		v[n++] = (struct vocab_ent){.s = dst, .len = (uint32_t)len, .id = (int32_t)id};
		if ((size_t)id > *max_id)
			*max_id = (size_t)id;
	} while ((r = vt_jscan_next(js, '}')) == 1);
	if (r < 0)
		goto err;
done:
	*ret = v;
	*ret_n = n;
	return 0;
err:
	free(v);
	return r;
}

/* model.merges from the raw document: ["a b", ...] or [["a", "b"], ...]; rank = position.
 * Merges are read in batches whose three vocab slots (a, b, a+b) are prefetched before any is
 * probed: the lookups are cache misses, and overlapping them is most of the load-time budget. */
#define MERGE_BATCH 32

struct merge_in {
	const char *s;    /* a then b, contiguous, in tmp */
	uint32_t la, lb;
	const char *at;   /* position in the document, for errors */
	uint64_t ha, hb, hc;
};

static int resolve_merges(struct loader *L, struct vt_jscan *js, struct merge_in *m, size_t n,
			  uint32_t *rank)
{
	struct vlm_tokenizer *t = L->t;
	for (size_t i = 0; i < n; i++) {
		m[i].ha = vt_hash_bytes(m[i].s, m[i].la);
		m[i].hb = vt_hash_bytes(m[i].s + m[i].la, m[i].lb);
		m[i].hc = vt_hash_bytes(m[i].s, m[i].la + m[i].lb);
		vt_strmap_prefetch(&t->vocab, m[i].ha);
		vt_strmap_prefetch(&t->vocab, m[i].hb);
		vt_strmap_prefetch(&t->vocab, m[i].hc);
	}
	for (size_t i = 0; i < n; i++) {
		int32_t ia = vt_strmap_get_h(&t->vocab, m[i].s, m[i].la, m[i].ha);
		int32_t ib = vt_strmap_get_h(&t->vocab, m[i].s + m[i].la, m[i].lb, m[i].hb);
		int32_t ic = vt_strmap_get_h(&t->vocab, m[i].s, m[i].la + m[i].lb, m[i].hc);
		if (ia < 0 || ib < 0 || ic < 0) {
			js->p = m[i].at;
			return vt_jscan_fail(js, "merge uses a token that is not in model.vocab");
		}
		if (vt_bpe_add_merge(&t->bpe, ia, ib, ic, (*rank)++) < 0)
			return -ENOMEM;
	}
	return 0;
}

static int scan_merges(struct loader *L, struct vt_jscan *js, char *tmp)
{
	int r;
	if (vt_jscan_peek(js) != '[')
		return fail(L, -EBADMSG, "tokenizer.json: model.merges must be an array");
	js->p++;
	if (vt_jscan_peek(js) == ']') {
		js->p++;
		return 0;
	}
	uint32_t rank = 0;
	struct merge_in batch[MERGE_BATCH];
	size_t nb = 0;
	char *w = tmp; /* unescaped strings of the batch, back to back (never more than raw) */
	do {
		const char *at = js->p;
		size_t la, lb, n;
		if (vt_jscan_peek(js) == '"') {
			if ((r = vt_jscan_string(js, w, &n)) < 0)
				return r;
			char *sp = memchr(w, ' ', n);
			if (!sp) {
				js->p = at;
				return vt_jscan_fail(js, "merge is not \"a b\"");
			}
			la = (size_t)(sp - w);
			lb = n - la - 1;
			memmove(sp, sp + 1, lb); /* a and b back to back */
		} else {
			if ((r = vt_jscan_expect(js, '[')) < 0 || (r = vt_jscan_string(js, w, &la)) < 0 ||
			    (r = vt_jscan_expect(js, ',')) < 0 ||
			    (r = vt_jscan_string(js, w + la, &lb)) < 0 ||
			    (r = vt_jscan_expect(js, ']')) < 0)
				return r;
		}
		batch[nb++] = (struct merge_in){.s = w, .la = (uint32_t)la, .lb = (uint32_t)lb,
						.at = at};
		w += la + lb;
		if (nb == MERGE_BATCH) {
			if ((r = resolve_merges(L, js, batch, nb, &rank)) < 0)
				return r;
			nb = 0;
			w = tmp;
		}
	} while ((r = vt_jscan_next(js, ']')) == 1);
	if (r < 0)
		return r;
	return resolve_merges(L, js, batch, nb, &rank);
}

static int load_model(struct loader *L, json_t *model, json_t *added, const char *doc,
		      size_t doc_len, const struct vt_jspans *sp)
{
	struct vlm_tokenizer *t = L->t;
	int r;
	if (!json_is_object(model))
		return fail(L, -EBADMSG, "tokenizer.json: missing \"model\" object");
	const char *ty = type_of(model);
	if (ty && strcmp(ty, "BPE"))
		return fail(L, -ENOTSUP, "tokenizer.json: model type \"%s\" is not supported "
			    "(only BPE)", ty);
	if (!sp->vocab_len)
		return fail(L, -EBADMSG, "tokenizer.json: missing model.vocab");
	if (!sp->merges_len)
		return fail(L, -EBADMSG, "tokenizer.json: missing model.merges");
	if (added && !json_is_null(added) && !json_is_array(added))
		return fail(L, -EBADMSG, "tokenizer.json: added_tokens must be an array");
	if (vt_bpe_init(&t->bpe, sp->merges_len / 16) < 0)
		return -ENOMEM;
	bool b;
	if ((r = get_bool(L, model, "byte_fallback", false, &b)) < 0)
		return r;
	if (b)
		return fail(L, -ENOTSUP, "tokenizer.json: byte_fallback BPE is not supported");
	json_t *drop = json_object_get(model, "dropout");
	if (drop && !json_is_null(drop) && !(json_is_number(drop) && json_number_value(drop) == 0))
		return fail(L, -ENOTSUP, "tokenizer.json: BPE dropout is not supported");
	static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
	for (size_t i = 0; i < 2; i++) {
		json_t *a = json_object_get(model, affixes[i]);
		if (a && !json_is_null(a) && !(json_is_string(a) && json_string_length(a) == 0))
			return fail(L, -ENOTSUP, "tokenizer.json: %s is not supported", affixes[i]);
	}
	if ((r = get_bool(L, model, "fuse_unk", false, &t->bpe.fuse_unk)) < 0 ||
	    (r = get_bool(L, model, "ignore_merges", false, &t->bpe.ignore_merges)) < 0)
		return r;

	/* Sizes: vocab strings unescape to at most their raw bytes; added tokens are small. */
	size_t n_added = json_array_size(added), max_id = 0;
	size_t arena = sp->vocab_len + 1;
	for (size_t i = 0; i < n_added; i++) {
		json_t *a = json_array_get(added, i);
		json_t *c = json_object_get(a, "content");
		int32_t id;
		if (!json_is_object(a) || !json_is_string(c) || json_string_length(c) == 0)
			return fail(L, -EBADMSG, "tokenizer.json: added_tokens[%zu] needs a non-empty "
				    "\"content\" string", i);
		if ((r = get_id(L, json_object_get(a, "id"), "added_tokens", &id)) < 0)
			return r;
		if ((size_t)id > max_id)
			max_id = (size_t)id;
		/* Content plus its normalized form (capped in load_added). */
		arena += 4 * json_string_length(c) + 66;
	}
	t->arena = malloc(arena);
	if (!t->arena)
		return -ENOMEM;
	t->arena_len = arena;

	struct vt_jscan js = {.base = doc, .p = doc + sp->vocab_off,
			      .end = doc + sp->vocab_off + sp->vocab_len,
			      .err = L->err, .err_len = L->err_len};
	struct vocab_ent *ve = NULL;
	size_t n_vocab = 0;
	if ((r = scan_vocab(L, &js, &ve, &n_vocab, &max_id)) < 0)
		return r;
	if (vt_jscan_peek(&js) != 0) {
		free(ve);
		return vt_jscan_fail(&js, "unexpected data in model.vocab");
	}
	if (n_vocab == 0) {
		free(ve);
		return fail(L, -EBADMSG, "tokenizer.json: model.vocab is empty");
	}
	if (max_id >= 8 * (n_vocab + n_added) + 1024) {
		free(ve);
		return fail(L, -EBADMSG, "tokenizer.json: ids are far larger than the vocabulary "
			    "(max id %zu for %zu tokens)", max_id, n_vocab + n_added);
	}
	t->n_ids = max_id + 1;
	t->tok_str = calloc(t->n_ids, sizeof(*t->tok_str));
	t->special = calloc(t->n_ids, 1);
	if (!t->tok_str || !t->special || vt_strmap_init(&t->vocab, n_vocab, t->arena) < 0 ||
	    vt_strmap_init(&t->added, n_added, t->arena) < 0) {
		free(ve);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n_vocab; i++) {
		int32_t old;
		int k = vt_strmap_put(&t->vocab, ve[i].s, ve[i].len, ve[i].id, &old);
		if (k < 0) {
			free(ve);
			return -ENOMEM;
		}
		if (!t->tok_str[ve[i].id])
			t->tok_str[ve[i].id] = ve[i].s;
	}
	free(ve);
	t->bpe.vocab = &t->vocab;
	for (int byte = 0; byte < 256; byte++) {
		char c[2];
		int n = vt_bytelevel_utf8((uint8_t)byte, c);
		t->bpe.byte_id[byte] = vt_strmap_get(&t->vocab, c, (size_t)n);
	}
	json_t *unk = json_object_get(model, "unk_token");
	if (unk && !json_is_null(unk)) {
		if (!json_is_string(unk))
			return fail(L, -EBADMSG, "tokenizer.json: model.unk_token must be a string");
		t->bpe.unk_id = vt_strmap_get(&t->vocab, json_string_value(unk),
					      json_string_length(unk));
		if (t->bpe.unk_id < 0)
			return fail(L, -EBADMSG, "tokenizer.json: unk_token \"%s\" is not in the vocab",
				    json_string_value(unk));
	}

	char *tmp = malloc(sp->merges_len + 1); /* one merge's strings, unescaped */
	if (!tmp)
		return -ENOMEM;
	js = (struct vt_jscan){.base = doc, .p = doc + sp->merges_off,
			       .end = doc + sp->merges_off + sp->merges_len,
			       .err = L->err, .err_len = L->err_len};
	r = scan_merges(L, &js, tmp);
	free(tmp);
	if (r == 0 && vt_jscan_peek(&js) != 0)
		r = vt_jscan_fail(&js, "unexpected data in model.merges");
	(void)doc_len;
	return r;
}

static int load_added(struct loader *L, json_t *added)
{
	struct vlm_tokenizer *t = L->t;
	size_t n = json_array_size(added);
	struct vt_added_tok *raw = calloc(n ? n : 1, sizeof(*raw));
	struct vt_added_tok *nrm = calloc(n ? n : 1, sizeof(*nrm));
	size_t n_raw = 0, n_nrm = 0;
	struct vt_buf nb = {0};
	int r = 0;
	if (!raw || !nrm) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *a = json_array_get(added, i);
		json_t *c = json_object_get(a, "content");
		const char *s = json_string_value(c);
		size_t len = json_string_length(c);
		int32_t id = (int32_t)json_integer_value(json_object_get(a, "id"));
		bool special, lstrip, rstrip, single, normalized;
		if ((r = get_bool(L, a, "special", false, &special)) < 0 ||
		    (r = get_bool(L, a, "lstrip", false, &lstrip)) < 0 ||
		    (r = get_bool(L, a, "rstrip", false, &rstrip)) < 0 ||
		    (r = get_bool(L, a, "single_word", false, &single)) < 0 ||
		    (r = get_bool(L, a, "normalized", !special, &normalized)) < 0)
			goto out;
		if (!vt_utf8_valid(s, len) || memchr(s, '\0', len)) {
			r = fail(L, -EBADMSG, "tokenizer.json: added_tokens[%zu] content is not valid "
				 "text", i);
			goto out;
		}
		const char *stored = arena_put(L, s, len);
		int32_t old;
		if ((r = vt_strmap_put(&t->added, stored, len, id, &old)) < 0)
			goto out;
		t->tok_str[id] = stored; /* an added token's content wins over a vocab string */
		if (special)
			t->special[id] = 1;
		struct vt_added_tok at = {
			.s = stored, .len = (uint32_t)len, .id = id,
			.flags = (special ? VT_ADDED_SPECIAL : 0u) | (lstrip ? VT_ADDED_LSTRIP : 0u) |
				 (rstrip ? VT_ADDED_RSTRIP : 0u) |
				 (single ? VT_ADDED_SINGLE_WORD : 0u) |
				 (normalized ? VT_ADDED_NORMALIZED : 0u),
		};
		if (!normalized) {
			raw[n_raw++] = at;
			continue;
		}
		const char *ns;
		size_t nl;
		if ((r = vt_norm_apply(&t->norm, stored, len, &nb, &ns, &nl)) < 0)
			goto out;
		if (nl > 3 * len + 63 || nl == 0) {
			r = fail(L, -ENOTSUP, "tokenizer.json: added_tokens[%zu] grows too much when "
				 "normalized", i);
			goto out;
		}
		at.s = ns == stored ? stored : arena_put(L, ns, nl);
		at.len = (uint32_t)nl;
		nrm[n_nrm++] = at;
	}
	/* Decode skips by token string (HF): a vocab token equal to a special's content too. */
	for (size_t i = 0; i < n_raw + n_nrm; i++) {
		const struct vt_added_tok *at = i < n_raw ? &raw[i] : &nrm[i - n_raw];
		if (!(at->flags & VT_ADDED_SPECIAL))
			continue;
		int32_t vid = vt_strmap_get(&t->vocab, t->tok_str[at->id], strlen(t->tok_str[at->id]));
		if (vid >= 0 && t->tok_str[vid] && !strcmp(t->tok_str[vid], t->tok_str[at->id]))
			t->special[vid] = 1;
	}
	if ((r = vt_added_set_init(&t->added_raw, raw, n_raw)) < 0 ||
	    (r = vt_added_set_init(&t->added_norm, nrm, n_nrm)) < 0)
		goto out;
out:
	vt_buf_fini(&nb);
	free(raw);
	free(nrm);
	return r;
}

/* Per-id decoded bytes: HF's ByteLevel decoder maps each character of the token back to its
 * byte, or keeps the token's UTF-8 as is when any character is outside the byte table. */
static int build_decode_table(struct vlm_tokenizer *t)
{
	size_t total = 0;
	for (size_t i = 0; i < t->n_ids; i++)
		if (t->tok_str[i])
			total += strlen(t->tok_str[i]);
	t->dec = malloc(total ? total : 1);
	t->dec_off = malloc((t->n_ids + 1) * sizeof(*t->dec_off));
	if (!t->dec || !t->dec_off)
		return -ENOMEM;
	uint32_t off = 0;
	for (size_t i = 0; i < t->n_ids; i++) {
		t->dec_off[i] = off;
		const char *s = t->tok_str[i];
		if (!s)
			continue;
		size_t n = strlen(s);
		int k = vt_bytelevel_to_bytes(s, n, t->dec + off);
		if (k < 0) {
			memcpy(t->dec + off, s, n);
			k = (int)n;
		}
		off += (uint32_t)k;
	}
	t->dec_off[t->n_ids] = off;
	return 0;
}

static int state_init(struct vt_encstate *s, bool with_cache)
{
	memset(s, 0, sizeof(*s));
	int r = vt_pretok_scratch_init(&s->pt);
	if (r == 0 && with_cache)
		r = vt_wcache_init(&s->cache);
	return r;
}

static void state_fini(struct vt_encstate *s)
{
	vt_bpe_scratch_fini(&s->bpe);
	vt_pretok_scratch_fini(&s->pt);
	vt_buf_fini(&s->norm);
	vt_wcache_fini(&s->cache);
}

static int load_root(struct loader *L, json_t *root, const char *doc, size_t doc_len,
		     const struct vt_jspans *sp)
{
	if (!json_is_object(root))
		return fail(L, -EBADMSG, "tokenizer.json: top level must be an object");
	json_t *added = json_object_get(root, "added_tokens");
	int r;
	bool byte_level = false;
	if ((r = load_normalizer(L, json_object_get(root, "normalizer"), 0)) < 0 ||
	    (r = load_pretok(L, json_object_get(root, "pre_tokenizer"), 0, &byte_level)) < 0)
		return r;
	if (!byte_level)
		return fail(L, -ENOTSUP, "tokenizer.json: only byte-level BPE is supported (no "
			    "ByteLevel pre_tokenizer)");
	if ((r = check_decoder(L, json_object_get(root, "decoder"),
			       json_object_get(root, "post_processor"))) < 0 ||
	    (r = load_model(L, json_object_get(root, "model"), added, doc, doc_len, sp)) < 0 ||
	    (r = load_added(L, added)) < 0 || (r = build_decode_table(L->t)) < 0)
		return r;
	return state_init(&L->t->shared, true);
}

int vlm_tokenizer_load_buffer(const char *json, size_t json_len, struct vlm_tokenizer **ret,
			      char *errbuf, size_t errbuf_len)
{
	if (errbuf && errbuf_len)
		errbuf[0] = '\0';
	if (!ret || (!json && json_len))
		return -EINVAL;
	*ret = NULL;
	struct loader L = {.err = errbuf, .err_len = errbuf_len};
	if (!json)
		json = "";
	/* Validate the document and find the two big tables with the fast scanner; jansson
	 * then parses everything else with those two replaced by empty containers. */
	struct vt_jscan js = {.base = json, .p = json, .end = json + json_len, .err = errbuf,
			      .err_len = errbuf_len};
	struct vt_jspans sp;
	int r = vt_jscan_find_tables(&js, &sp);
	if (r < 0)
		return r;
	char *rest = malloc(json_len + 5);
	if (!rest)
		return -ENOMEM;
	size_t rl = 0, pos = 0;
	struct { size_t off, len; const char *empty; } cut[2] = {
		{sp.vocab_off, sp.vocab_len, "{}"}, {sp.merges_off, sp.merges_len, "[]"},
	};
	if (cut[1].off < cut[0].off) {
		__typeof__(cut[0]) x = cut[0];
		cut[0] = cut[1];
		cut[1] = x;
	}
	for (int i = 0; i < 2; i++) {
		if (!cut[i].len)
			continue;
		memcpy(rest + rl, json + pos, cut[i].off - pos);
		rl += cut[i].off - pos;
		memcpy(rest + rl, cut[i].empty, 2);
		rl += 2;
		pos = cut[i].off + cut[i].len;
	}
	memcpy(rest + rl, json + pos, json_len - pos);
	rl += json_len - pos;
	json_error_t je;
	json_t *root = json_loadb(rest, rl, 0, &je);
	free(rest);
	if (!root)
		return fail(&L, -EBADMSG, "tokenizer.json: %s", je.text);
	L.t = calloc(1, sizeof(*L.t));
	if (!L.t) {
		json_decref(root);
		return -ENOMEM;
	}
	pthread_mutex_init(&L.t->lock, NULL);
	r = load_root(&L, root, json, json_len, &sp);
	json_decref(root);
	if (r < 0) {
		if (r == -ENOMEM)
			fail(&L, r, "tokenizer.json: out of memory");
		vlm_tokenizer_free(L.t);
		return r;
	}
	*ret = L.t;
	return 0;
}

int vlm_tokenizer_load(const char *path, struct vlm_tokenizer **ret, char *errbuf,
		       size_t errbuf_len)
{
	if (errbuf && errbuf_len)
		errbuf[0] = '\0';
	if (!path || !ret)
		return -EINVAL;
	*ret = NULL;
	struct loader L = {.err = errbuf, .err_len = errbuf_len};
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = -errno;
		return fail(&L, e, "%s: %s", path, strerror(-e));
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = -errno;
		close(fd);
		return fail(&L, e, "%s: %s", path, strerror(-e));
	}
	if (!S_ISREG(st.st_mode) || st.st_size > (off_t)1 << 31) {
		close(fd);
		return fail(&L, S_ISREG(st.st_mode) ? -EFBIG : -EINVAL,
			    "%s: not a regular file of at most 2 GiB", path);
	}
	size_t n = (size_t)st.st_size, got = 0;
	char *buf = malloc(n ? n : 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (got < n) {
		ssize_t k = read(fd, buf + got, n - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			int e = k < 0 ? -errno : -EIO;
			free(buf);
			close(fd);
			return fail(&L, e, "%s: read failed", path);
		}
		got += (size_t)k;
	}
	close(fd);
	int r = vlm_tokenizer_load_buffer(buf, n, ret, errbuf, errbuf_len);
	free(buf);
	return r;
}

void vlm_tokenizer_free(struct vlm_tokenizer *t)
{
	if (!t)
		return;
	state_fini(&t->shared);
	vt_added_set_fini(&t->added_raw);
	vt_added_set_fini(&t->added_norm);
	vt_pretok_fini(&t->pretok);
	vt_bpe_fini(&t->bpe);
	vt_strmap_fini(&t->vocab);
	vt_strmap_fini(&t->added);
	pthread_mutex_destroy(&t->lock);
	free(t->dec);
	free(t->dec_off);
	free(t->special);
	free(t->tok_str);
	free(t->arena);
	free(t);
}

/* ---- encoding --------------------------------------------------------------------------- */

struct enc {
	const struct vlm_tokenizer *t;
	struct vt_encstate *st;
	struct vt_ids *out;
	bool skip_special;
};

static int on_word(void *ctx, const char *s, size_t n)
{
	struct enc *e = ctx;
	struct vt_wcache *c = &e->st->cache;
	const uint8_t *w = (const uint8_t *)s;
	if (!c->slots || n > VT_WCACHE_MAX_WORD)
		return vt_bpe_word(&e->t->bpe, &e->st->bpe, w, n, e->out);
	uint64_t h = vt_hash_bytes(w, n);
	size_t k;
	const int32_t *hit = vt_wcache_get(c, w, n, h, &k);
	if (hit)
		return vt_ids_append(e->out, hit, k);
	size_t before = e->out->len;
	int r = vt_bpe_word(&e->t->bpe, &e->st->bpe, w, n, e->out);
	if (r == 0)
		vt_wcache_put(c, w, n, h, e->out->p + before, e->out->len - before);
	return r;
}

static int on_norm_seg(void *ctx, const char *s, size_t n, int32_t id)
{
	struct enc *e = ctx;
	if (id >= 0)
		return vt_ids_push(e->out, id);
	return vt_pretok_run(&e->t->pretok, &e->st->pt, s, n, on_word, e);
}

static int on_raw_seg(void *ctx, const char *s, size_t n, int32_t id)
{
	struct enc *e = ctx;
	if (id >= 0)
		return vt_ids_push(e->out, id);
	const char *ns;
	size_t nl;
	int r = vt_norm_apply(&e->t->norm, s, n, &e->st->norm, &ns, &nl);
	if (r < 0)
		return r;
	if (e->t->added_norm.n == 0)
		return on_norm_seg(e, ns, nl, -1);
	return vt_added_split(&e->t->added_norm, ns, nl, e->skip_special, on_norm_seg, e);
}

int vt_encode_append(const struct vlm_tokenizer *t, const char *text, size_t len,
		     bool special_as_text, struct vt_ids *out)
{
	if (!vt_utf8_valid(text, len))
		return -EILSEQ;
	struct vlm_tokenizer *mt = (struct vlm_tokenizer *)t; /* lock + cache are internal */
	struct vt_encstate priv, *st = &mt->shared;
	bool locked = pthread_mutex_trylock(&mt->lock) == 0;
	if (!locked) {
		st = &priv;
		if (state_init(&priv, false) < 0) {
			state_fini(&priv);
			return -ENOMEM;
		}
	}
	struct enc e = {.t = t, .st = st, .out = out, .skip_special = special_as_text};
	int r = t->added_raw.n ? vt_added_split(&t->added_raw, text, len, special_as_text,
						on_raw_seg, &e)
			       : on_raw_seg(&e, text, len, -1);
	if (locked)
		pthread_mutex_unlock(&mt->lock);
	else
		state_fini(&priv);
	return r;
}

int vlm_tokenizer_encode(const struct vlm_tokenizer *t, const char *text, size_t len,
			 unsigned flags, int32_t **ret_ids, size_t *ret_n)
{
	if (!t || (!text && len) || !ret_ids || !ret_n || (flags & ~VLM_ENCODE_SPECIAL_AS_TEXT))
		return -EINVAL;
	*ret_ids = NULL;
	*ret_n = 0;
	struct vt_ids ids = {0};
	int r = vt_encode_append(t, text ? text : "", len,
				 (flags & VLM_ENCODE_SPECIAL_AS_TEXT) != 0, &ids);
	if (r < 0) {
		vt_ids_fini(&ids);
		return r;
	}
	if (ids.len == 0)
		vt_ids_fini(&ids);
	*ret_ids = ids.p;
	*ret_n = ids.len;
	return ids.len > INT_MAX ? INT_MAX : (int)ids.len;
}

void vlm_tokens_free(int32_t *ids)
{
	free(ids);
}

/* ---- decoding --------------------------------------------------------------------------- */

int vlm_tokenizer_decode(const struct vlm_tokenizer *t, const int32_t *ids, size_t n,
			 unsigned flags, char **ret_text, size_t *ret_len)
{
	if (!t || (!ids && n) || !ret_text || (flags & ~VLM_DECODE_SKIP_SPECIAL))
		return -EINVAL;
	*ret_text = NULL;
	struct vt_buf raw = {0}, out = {0};
	int r = 0;
	for (size_t i = 0; i < n && r == 0; i++) {
		int32_t id = ids[i];
		if (id < 0 || (size_t)id >= t->n_ids || !t->tok_str[id])
			continue;
		if ((flags & VLM_DECODE_SKIP_SPECIAL) && t->special[id])
			continue;
		r = vt_buf_append(&raw, t->dec + t->dec_off[id], t->dec_off[id + 1] - t->dec_off[id]);
	}
	if (r == 0)
		r = vt_utf8_lossy_append(&out, (const uint8_t *)raw.p, raw.len);
	if (r == 0 && !out.p)
		r = vt_buf_reserve(&out, 0);
	vt_buf_fini(&raw);
	if (r < 0) {
		vt_buf_fini(&out);
		return r;
	}
	*ret_text = out.p;
	if (ret_len)
		*ret_len = out.len;
	return 0;
}

void vlm_text_free(char *text)
{
	free(text);
}

/* ---- vocabulary ------------------------------------------------------------------------- */

size_t vlm_tokenizer_vocab_size(const struct vlm_tokenizer *t)
{
	return t ? t->n_ids : 0;
}

int32_t vlm_tokenizer_token_to_id(const struct vlm_tokenizer *t, const char *token)
{
	if (!t || !token)
		return -EINVAL;
	size_t n = strlen(token);
	int32_t id = vt_strmap_get(&t->added, token, n);
	if (id < 0)
		id = vt_strmap_get(&t->vocab, token, n);
	return id < 0 ? -ENOENT : id;
}

const char *vlm_tokenizer_id_to_token(const struct vlm_tokenizer *t, int32_t id)
{
	if (!t || id < 0 || (size_t)id >= t->n_ids)
		return NULL;
	return t->tok_str[id];
}

bool vlm_tokenizer_is_special(const struct vlm_tokenizer *t, int32_t id)
{
	return t && id >= 0 && (size_t)id < t->n_ids && t->special[id];
}
