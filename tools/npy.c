/*
 * tools/npy.c — the .npy header parser (see npy.h for why it is a pure function).
 *
 * The header is a Python dict literal written by NumPy's own formatter, e.g.
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (6, 128), }
 * followed by spaces and a newline up to an aligned length. A small recursive-descent reader
 * accepts exactly the value kinds those three keys take (a string, True/False, a tuple of
 * non-negative integers) in any order, with either quote character, and nothing else.
 */
#include "tools/npy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static int fail(char *err, size_t err_len, const char *fmt, ...)
{
	if (err && err_len) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, err_len, fmt, ap);
		va_end(ap);
	}
	return -EBADMSG;
}

size_t npy_dtype_size(enum npy_dtype dt)
{
	switch (dt) {
	case NPY_F32: return 4;
	case NPY_F16: return 2;
	case NPY_F64: return 8;
	case NPY_BF16: return 2;
	default: return 0;
	}
}

struct rd {
	const char *p, *end;
};

static void skip_ws(struct rd *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

static bool eat(struct rd *r, char c)
{
	skip_ws(r);
	if (r->p < r->end && *r->p == c) {
		r->p++;
		return true;
	}
	return false;
}

/* A quoted string without escapes (NumPy never writes any in these keys) into out[cap]. */
static bool read_str(struct rd *r, char *out, size_t cap)
{
	skip_ws(r);
	if (r->p >= r->end || (*r->p != '\'' && *r->p != '"'))
		return false;
	char q = *r->p++;
	size_t n = 0;
	while (r->p < r->end && *r->p != q) {
		if (*r->p == '\\' || n + 1 >= cap)
			return false;
		out[n++] = *r->p++;
	}
	if (r->p >= r->end)
		return false;
	r->p++;
	out[n] = '\0';
	return true;
}

static bool read_word(struct rd *r, const char *w)
{
	skip_ws(r);
	size_t n = strlen(w);
	if ((size_t)(r->end - r->p) >= n && !memcmp(r->p, w, n)) {
		r->p += n;
		return true;
	}
	return false;
}

/* '(' [int {',' int} [',']] ')' */
static bool read_shape(struct rd *r, struct npy_info *o)
{
	if (!eat(r, '('))
		return false;
	o->ndim = 0;
	for (;;) {
		if (eat(r, ')'))
			return true;
		skip_ws(r);
		if (r->p >= r->end || *r->p < '0' || *r->p > '9' || o->ndim == NPY_MAX_DIMS)
			return false;
		int64_t v = 0;
		while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
			if (v > (INT64_MAX - 9) / 10)
				return false;
			v = v * 10 + (*r->p++ - '0');
		}
		/* Python 2 era files write longs as 6L */
		if (r->p < r->end && *r->p == 'L')
			r->p++;
		o->shape[o->ndim++] = v;
		if (eat(r, ')'))
			return true;
		if (!eat(r, ','))
			return false;
	}
}

static enum npy_dtype dtype_of(const char *d)
{
	/* '<' little endian, '=' native (little on every machine vlmd runs on), '|' n/a */
	char bo = d[0];
	if (bo != '<' && bo != '=' && bo != '|')
		return NPY_UNSUPPORTED;
	const char *t = d + 1;
	if (bo != '|' && !strcmp(t, "f4"))
		return NPY_F32;
	if (bo != '|' && !strcmp(t, "f2"))
		return NPY_F16;
	if (bo != '|' && !strcmp(t, "f8"))
		return NPY_F64;
	if (!strcmp(t, "V2"))
		return NPY_BF16;
	return NPY_UNSUPPORTED;
}

int npy_parse(const void *buf, size_t len, struct npy_info *out, char *err, size_t err_len)
{
	const unsigned char *b = buf;
	if (err && err_len)
		err[0] = '\0';
	if (!buf || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (len < 10 || memcmp(b, "\x93NUMPY", 6))
		return fail(err, err_len, "not a .npy file (no \\x93NUMPY magic)");
	unsigned major = b[6];
	size_t hlen, hoff;
	if (major == 1) {
		hlen = (size_t)b[8] | (size_t)b[9] << 8;
		hoff = 10;
	} else if (major == 2 || major == 3) {
		if (len < 12)
			return fail(err, err_len, "truncated .npy header");
		hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
		hoff = 12;
	} else {
		return fail(err, err_len, ".npy format version %u.%u is not supported", major, b[7]);
	}
	if (hlen > len - hoff)
		return fail(err, err_len, "truncated .npy header (%zu bytes announced, %zu present)",
			    hlen, len - hoff);

	struct rd r = { (const char *)b + hoff, (const char *)b + hoff + hlen };
	bool have_descr = false, have_fo = false, have_shape = false, fortran = false;
	if (!eat(&r, '{'))
		return fail(err, err_len, ".npy header is not a dict");
	for (;;) {
		char key[32];
		if (eat(&r, '}'))
			break;
		if (!read_str(&r, key, sizeof(key)) || !eat(&r, ':'))
			return fail(err, err_len, "malformed .npy header");
		if (!strcmp(key, "descr") && !have_descr) {
			if (!read_str(&r, out->descr, sizeof(out->descr)))
				return fail(err, err_len, ".npy descr is not a simple type string "
					    "(structured arrays are not embeddings)");
			have_descr = true;
		} else if (!strcmp(key, "fortran_order") && !have_fo) {
			if (read_word(&r, "True"))
				fortran = true;
			else if (!read_word(&r, "False"))
				return fail(err, err_len, "malformed .npy fortran_order");
			have_fo = true;
		} else if (!strcmp(key, "shape") && !have_shape) {
			if (!read_shape(&r, out))
				return fail(err, err_len, "malformed .npy shape");
			have_shape = true;
		} else {
			return fail(err, err_len, "unexpected key '%s' in .npy header", key);
		}
		if (eat(&r, '}'))
			break;
		if (!eat(&r, ','))
			return fail(err, err_len, "malformed .npy header");
	}
	skip_ws(&r);
	if (r.p != r.end)
		return fail(err, err_len, "trailing bytes after the .npy header dict");
	if (!have_descr || !have_fo || !have_shape)
		return fail(err, err_len, ".npy header lacks %s",
			    !have_descr ? "descr" : !have_fo ? "fortran_order" : "shape");
	if (fortran)
		return fail(err, err_len, ".npy array is in Fortran order; save a C-contiguous "
			    "array (np.ascontiguousarray)");
	out->dtype = dtype_of(out->descr);
	if (out->dtype == NPY_UNSUPPORTED)
		return fail(err, err_len, ".npy dtype '%s' is not supported (want float32, float16 "
			    "or bfloat16, little endian)", out->descr);

	size_t n = npy_dtype_size(out->dtype);
	for (int i = 0; i < out->ndim; i++) {
		uint64_t d = (uint64_t)out->shape[i];
		if (d && n > SIZE_MAX / d)
			return fail(err, err_len, ".npy shape overflows");
		n *= d;
	}
	out->data_off = hoff + hlen;
	out->data_bytes = n;
	if (n > len - out->data_off)
		return fail(err, err_len, ".npy data truncated: shape needs %zu bytes, file has %zu",
			    n, len - out->data_off);
	return 0;
}
