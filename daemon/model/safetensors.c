/*
 * daemon/model/safetensors.c — safetensors header parser (see safetensors.h for the why).
 *
 * Layout of the format: u64 little-endian header length N, N bytes of a JSON object
 * { name: {"dtype": str, "shape": [int...], "data_offsets": [begin, end]}, "__metadata__": {...} },
 * then the data area; offsets are relative to the data area.
 */
#include "daemon/model/errmsg.h"
#include "daemon/model/safetensors.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>


static const struct {
	const char *name;
	enum vd_st_dtype dt;
	size_t size;
} dtypes[] = {
	{ "F64", VD_ST_F64, 8 }, { "F32", VD_ST_F32, 4 }, { "F16", VD_ST_F16, 2 },
	{ "BF16", VD_ST_BF16, 2 }, { "I64", VD_ST_I64, 8 }, { "I32", VD_ST_I32, 4 },
	{ "I16", VD_ST_I16, 2 }, { "I8", VD_ST_I8, 1 }, { "U8", VD_ST_U8, 1 },
	{ "BOOL", VD_ST_BOOL, 1 }, { "F8_E4M3", VD_ST_F8_E4M3, 1 }, { "F8_E5M2", VD_ST_F8_E5M2, 1 },
};

size_t vd_st_dtype_size(enum vd_st_dtype dt)
{
	for (size_t i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++)
		if (dtypes[i].dt == dt)
			return dtypes[i].size;
	return 0;
}

void vd_st_free(struct vd_st *st)
{
	if (!st)
		return;
	for (size_t i = 0; i < st->n; i++)
		free(st->t[i].name);
	free(st->t);
	free(st);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(((const struct vd_st_tensor *)a)->name, ((const struct vd_st_tensor *)b)->name);
}

static int cmp_begin(const void *a, const void *b)
{
	const struct vd_st_tensor *x = *(const struct vd_st_tensor *const *)a;
	const struct vd_st_tensor *y = *(const struct vd_st_tensor *const *)b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	return x->end < y->end ? -1 : x->end > y->end;
}

/* A JSON integer in [0, max], or -1. */
static int64_t json_uint(const json_t *v, int64_t max)
{
	if (!json_is_integer(v))
		return -1;
	json_int_t x = json_integer_value(v);
	if (x < 0 || x > max)
		return -1;
	return (int64_t)x;
}

static int parse_entry(const char *name, json_t *obj, uint64_t data_len, struct vd_st_tensor *t,
                       char *err, size_t err_len)
{
	if (!json_is_object(obj))
		return vd_fail(err, err_len, -EINVAL, "tensor '%s': entry is not an object", name);
	json_t *jd = json_object_get(obj, "dtype");
	json_t *js = json_object_get(obj, "shape");
	json_t *jo = json_object_get(obj, "data_offsets");
	if (!json_is_string(jd))
		return vd_fail(err, err_len, -EINVAL, "tensor '%s': missing or non-string \"dtype\"", name);
	if (!json_is_array(js))
		return vd_fail(err, err_len, -EINVAL, "tensor '%s': missing or non-array \"shape\"", name);
	if (!json_is_array(jo) || json_array_size(jo) != 2)
		return vd_fail(err, err_len, -EINVAL, "tensor '%s': \"data_offsets\" must be [begin, end]",
		            name);

	const char *dn = json_string_value(jd);
	t->dtype = VD_ST_UNKNOWN;
	size_t esize = 0;
	for (size_t i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++)
		if (!strcmp(dn, dtypes[i].name)) {
			t->dtype = dtypes[i].dt;
			esize = dtypes[i].size;
		}
	snprintf(t->dtype_name, sizeof(t->dtype_name), "%s", dn);

	size_t nd = json_array_size(js);
	if (nd > VD_ST_MAX_DIMS)
		return vd_fail(err, err_len, -EINVAL, "tensor '%s': %zu dimensions (at most %d)", name, nd,
		            VD_ST_MAX_DIMS);
	t->ndim = (int32_t)nd;
	uint64_t count = 1;
	int overflow = 0;
	for (size_t i = 0; i < nd; i++) {
		int64_t d = json_uint(json_array_get(js, i), INT64_MAX);
		if (d < 0)
			return vd_fail(err, err_len, -EINVAL,
			            "tensor '%s': shape[%zu] is not a non-negative integer", name, i);
		t->shape[i] = d;
		if (d && count > UINT64_MAX / (uint64_t)d)
			overflow = 1;
		else
			count *= (uint64_t)d;
	}
	int64_t b = json_uint(json_array_get(jo, 0), INT64_MAX);
	int64_t e = json_uint(json_array_get(jo, 1), INT64_MAX);
	if (b < 0 || e < 0)
		return vd_fail(err, err_len, -EINVAL,
		            "tensor '%s': data_offsets are not non-negative integers", name);
	if (b > e)
		return vd_fail(err, err_len, -EINVAL, "tensor '%s': data_offsets [%lld, %lld] are reversed",
		            name, (long long)b, (long long)e);
	if ((uint64_t)e > data_len)
		return vd_fail(err, err_len, -EINVAL,
		            "tensor '%s': data_offsets [%lld, %lld] run past the data area (%llu bytes; "
		            "file truncated?)", name, (long long)b, (long long)e,
		            (unsigned long long)data_len);
	t->begin = (uint64_t)b;
	t->end = (uint64_t)e;
	if (esize) {
		if (overflow || (count && count > UINT64_MAX / esize) ||
		    count * esize != t->end - t->begin)
			return vd_fail(err, err_len, -EINVAL,
			            "tensor '%s': %llu bytes in data_offsets, shape x %s needs %s%llu", name,
			            (unsigned long long)(t->end - t->begin), dn, overflow ? "more than " : "",
			            overflow ? (unsigned long long)UINT64_MAX
			                     : (unsigned long long)(count * esize));
	}
	return 0;
}

int vd_st_parse(const void *buf, size_t len, struct vd_st **ret, char *err, size_t err_len)
{
	const unsigned char *p = buf;
	struct vd_st *st = NULL;
	json_t *root = NULL;
	struct vd_st_tensor **order = NULL;
	int rc;

	*ret = NULL;
	if (len < 8)
		return vd_fail(err, err_len, -EINVAL, "file is %zu bytes, shorter than the 8-byte header "
		            "length (truncated?)", len);
	uint64_t hl = 0;
	for (int i = 7; i >= 0; i--)
		hl = hl << 8 | p[i];
	if (hl > VD_ST_MAX_HEADER)
		return vd_fail(err, err_len, -E2BIG, "header length %llu exceeds the limit of %u bytes",
		            (unsigned long long)hl, VD_ST_MAX_HEADER);
	if (hl > len - 8)
		return vd_fail(err, err_len, -EINVAL, "header length %llu runs past the end of the file "
		            "(%zu bytes; truncated?)", (unsigned long long)hl, len);
	if (hl < 2)
		return vd_fail(err, err_len, -EINVAL, "header length %llu is too short for a JSON object",
		            (unsigned long long)hl);

	json_error_t jerr;
	root = json_loadb((const char *)p + 8, (size_t)hl, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		rc = vd_fail(err, err_len, -EINVAL, "header JSON: %s (at byte %d)", jerr.text,
		          jerr.position);
		goto out;
	}
	if (!json_is_object(root)) {
		rc = vd_fail(err, err_len, -EINVAL, "header JSON is not an object");
		goto out;
	}

	st = calloc(1, sizeof(*st));
	if (!st) {
		rc = vd_fail(err, err_len, -ENOMEM, "out of memory");
		goto out;
	}
	st->header_len = hl;
	st->data_len = (uint64_t)len - 8 - hl;
	size_t cap = json_object_size(root);
	st->t = calloc(cap ? cap : 1, sizeof(*st->t));
	if (!st->t) {
		rc = vd_fail(err, err_len, -ENOMEM, "out of memory");
		goto out;
	}
	const char *key;
	json_t *val;
	json_object_foreach(root, key, val) {
		if (!strcmp(key, "__metadata__")) {
			if (!json_is_object(val)) {
				rc = vd_fail(err, err_len, -EINVAL, "\"__metadata__\" is not an object");
				goto out;
			}
			continue;
		}
		struct vd_st_tensor *t = &st->t[st->n];
		rc = parse_entry(key, val, st->data_len, t, err, err_len);
		if (rc < 0)
			goto out;
		t->name = strdup(key);
		if (!t->name) {
			rc = vd_fail(err, err_len, -ENOMEM, "out of memory");
			goto out;
		}
		t->data = p + 8 + hl + t->begin;
		st->n++;
	}

	/* No two tensors may share bytes (empty tensors share nothing). */
	order = malloc((st->n ? st->n : 1) * sizeof(*order));
	if (!order) {
		rc = vd_fail(err, err_len, -ENOMEM, "out of memory");
		goto out;
	}
	size_t m = 0;
	for (size_t i = 0; i < st->n; i++)
		if (st->t[i].end > st->t[i].begin)
			order[m++] = &st->t[i];
	qsort(order, m, sizeof(*order), cmp_begin);
	for (size_t i = 1; i < m; i++)
		if (order[i]->begin < order[i - 1]->end) {
			rc = vd_fail(err, err_len, -EINVAL,
			          "tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) overlap",
			          order[i - 1]->name, (unsigned long long)order[i - 1]->begin,
			          (unsigned long long)order[i - 1]->end, order[i]->name,
			          (unsigned long long)order[i]->begin, (unsigned long long)order[i]->end);
			goto out;
		}
	qsort(st->t, st->n, sizeof(*st->t), cmp_name);
	*ret = st;
	st = NULL;
	rc = 0;
out:
	free(order);
	vd_st_free(st);
	json_decref(root);
	return rc;
}

const struct vd_st_tensor *vd_st_find(const struct vd_st *st, const char *name)
{
	struct vd_st_tensor key = { .name = (char *)name };
	return bsearch(&key, st->t, st->n, sizeof(*st->t), cmp_name);
}
