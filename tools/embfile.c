/*
 * tools/embfile.c — load an embedding tensor from a .npy or .safetensors file (see embfile.h).
 *
 * The file is mapped read-only, parsed by a pure parser (tools/npy.c, daemon/model/safetensors.c), and
 * the one tensor wanted is copied into a 64-byte aligned buffer that the DLPack tensor owns. The
 * copy keeps element alignment independent of the file's offsets and lets the mapping go at
 * once; for a command-line tool one copy of an image embedding (a few MiB) is nothing.
 */
#include "tools/embfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/model/safetensors.h"
#include "tools/npy.h"

struct emb_ctx {
	DLManagedTensor mt;
	int64_t shape[2]; /* [rows, cols] */
	void *data;       /* [rows, cols] elements, 64-byte aligned, owned */
};

static void emb_deleter(DLManagedTensor *self)
{
	struct emb_ctx *c = self->manager_ctx;
	free(c->data);
	free(c);
}

static int fail(char *err, size_t err_len, int code, const char *fmt, ...)
{
	if (err && err_len) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, err_len, fmt, ap);
		va_end(ap);
	}
	return code;
}

/* Source of one tensor inside the mapping. */
struct src {
	const void *data;
	uint8_t code, bits;   /* DLPack dtype */
	int convert_f64;      /* data is float64: convert to float32 */
	int ndim;
	int64_t shape[8];
};

/* Drop leading 1s; require 2-D with nonzero sizes. */
static int squeeze(struct src *s, const char *path, char *err, size_t err_len)
{
	int first = 0;
	while (s->ndim - first > 2 && s->shape[first] == 1)
		first++;
	if (s->ndim - first != 2 || s->shape[first] <= 0 || s->shape[first + 1] <= 0) {
		char dims[96] = "";
		size_t n = 0;
		for (int i = 0; i < s->ndim && n < sizeof(dims) - 24; i++)
			n += (size_t)snprintf(dims + n, sizeof(dims) - n, i ? ", %lld" : "%lld",
					      (long long)s->shape[i]);
		return fail(err, err_len, -ENOTSUP,
			    "%s: embedding must be 2-D [rows, hidden] with rows, hidden > 0, "
			    "got shape [%s]", path, dims);
	}
	s->shape[0] = s->shape[first];
	s->shape[1] = s->shape[first + 1];
	s->ndim = 2;
	return 0;
}

static int from_npy(const void *map, size_t len, const char *path, struct src *s, char *err,
		    size_t err_len)
{
	struct npy_info info;
	char e[200];
	int r = npy_parse(map, len, &info, e, sizeof(e));
	if (r < 0)
		return fail(err, err_len, r, "%s: %s", path, e);
	s->data = (const char *)map + info.data_off;
	s->ndim = info.ndim;
	memcpy(s->shape, info.shape, sizeof(int64_t) * (size_t)info.ndim);
	switch (info.dtype) {
	case NPY_F32: s->code = kDLFloat; s->bits = 32; break;
	case NPY_F16: s->code = kDLFloat; s->bits = 16; break;
	case NPY_BF16: s->code = kDLBfloat; s->bits = 16; break;
	case NPY_F64: s->code = kDLFloat; s->bits = 32; s->convert_f64 = 1; break;
	default: return fail(err, err_len, -ENOTSUP, "%s: unsupported dtype", path);
	}
	return 0;
}

static int from_safetensors(const void *map, size_t len, const char *path, const char *name,
			    struct src *s, char *err, size_t err_len)
{
	struct vd_st *st;
	char e[200];
	int r = vd_st_parse(map, len, &st, e, sizeof(e));
	if (r < 0)
		return fail(err, err_len, r == -ENOMEM ? r : -EBADMSG, "%s: %s", path, e);
	const struct vd_st_tensor *t = NULL;
	if (name) {
		t = vd_st_find(st, name);
		if (!t)
			r = fail(err, err_len, -ENOENT, "%s: no tensor named '%s'", path, name);
	} else if (st->n == 1) {
		t = &st->t[0];
	} else {
		r = fail(err, err_len, -EINVAL, "%s holds %zu tensors: name one as %s:TENSOR "
			 "(first: '%s')", path, st->n, path, st->n ? st->t[0].name : "");
	}
	if (t) {
		s->data = t->data;
		s->ndim = t->ndim;
		memcpy(s->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
		switch (t->dtype) {
		case VD_ST_F32: s->code = kDLFloat; s->bits = 32; break;
		case VD_ST_F16: s->code = kDLFloat; s->bits = 16; break;
		case VD_ST_BF16: s->code = kDLBfloat; s->bits = 16; break;
		case VD_ST_F64: s->code = kDLFloat; s->bits = 32; s->convert_f64 = 1; break;
		default:
			r = fail(err, err_len, -ENOTSUP, "%s: tensor '%s' has dtype %s (want F32, "
				 "F16 or BF16)", path, t->name, t->dtype_name);
		}
	}
	vd_st_free(st);
	return r;
}

/* Split "FILE:TENSOR" when FILE exists and the whole spec does not. */
static int split_spec(const char *spec, char **ret_path, char **ret_name)
{
	*ret_name = NULL;
	*ret_path = strdup(spec);
	if (!*ret_path)
		return -ENOMEM;
	const char *colon = strrchr(spec, ':');
	if (!colon || access(spec, F_OK) == 0)
		return 0;
	(*ret_path)[colon - spec] = '\0';
	if (access(*ret_path, F_OK) != 0) {
		strcpy(*ret_path, spec);
		return 0;
	}
	*ret_name = strdup(colon + 1);
	return *ret_name ? 0 : -ENOMEM;
}

int emb_load(const char *spec, DLManagedTensor **ret, char *err, size_t err_len)
{
	if (err && err_len)
		err[0] = '\0';
	if (!spec || !ret)
		return -EINVAL;
	*ret = NULL;
	char *path, *name;
	int r = split_spec(spec, &path, &name);
	if (r < 0)
		return fail(err, err_len, r, "out of memory");

	void *map = MAP_FAILED;
	size_t len = 0;
	struct emb_ctx *c = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = fail(err, err_len, -errno, "%s: %s", path, strerror(errno));
		goto out;
	}
	struct stat sb;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		r = fail(err, err_len, -EINVAL, "%s: not a regular file", path);
		goto out;
	}
	len = (size_t)sb.st_size;
	if (len < 8) {
		r = fail(err, err_len, -EBADMSG, "%s: too short to be .npy or .safetensors", path);
		goto out;
	}
	map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		r = fail(err, err_len, -errno, "%s: mmap: %s", path, strerror(errno));
		goto out;
	}

	struct src s = { 0 };
	const unsigned char *b = map;
	const char *image = !memcmp(b, "\xff\xd8\xff", 3) ? "a JPEG image" :
			    !memcmp(b, "\x89PNG", 4) ? "a PNG image" :
			    !memcmp(b, "RIFF", 4) && len >= 12 && !memcmp(b + 8, "WEBP", 4) ? "a WebP image" :
			    !memcmp(b, "GIF8", 4) ? "a GIF image" : NULL;
	if (image || (memcmp(b, "\x93NUMPY", 6) && (len < 9 || b[8] != '{'))) {
		/* neither format's magic: say what it looks like and where such files go */
		r = fail(err, err_len, -EBADMSG,
			 "%s: not a .npy or .safetensors file%s%s%s: --embed takes a vision encoder's "
			 "output [rows, hidden]; to send an image file, use --image FILE (vlmd runs "
			 "the vision tower) or vlm-chat's /image", path, image ? " (it is " : "",
			 image ? image : "", image ? ")" : "");
		goto out;
	}
	if (!memcmp(map, "\x93NUMPY", 6)) {
		if (name) {
			r = fail(err, err_len, -EINVAL, "%s: a .npy file holds one array; drop ':%s'",
				 path, name);
			goto out;
		}
		r = from_npy(map, len, path, &s, err, err_len);
	} else {
		r = from_safetensors(map, len, path, name, &s, err, err_len);
	}
	if (r < 0 || (r = squeeze(&s, path, err, err_len)) < 0)
		goto out;

	size_t rows = (size_t)s.shape[0], cols = (size_t)s.shape[1], esz = s.bits / 8u;
	if (rows > SIZE_MAX / cols / 8) {
		r = fail(err, err_len, -ENOTSUP, "%s: tensor too large", path);
		goto out;
	}
	c = calloc(1, sizeof(*c));
	if (!c || posix_memalign(&c->data, 64, rows * cols * esz)) {
		if (c)
			c->data = NULL;
		r = fail(err, err_len, -ENOMEM, "%s: out of memory", path);
		goto out;
	}
	if (s.convert_f64) {
		float *dst = c->data;
		const unsigned char *src = s.data;
		for (size_t i = 0; i < rows * cols; i++) {
			double v;
			memcpy(&v, src + 8 * i, 8);
			dst[i] = (float)v;
		}
	} else {
		memcpy(c->data, s.data, rows * cols * esz);
	}
	c->shape[0] = (int64_t)rows;
	c->shape[1] = (int64_t)cols;
	c->mt.dl_tensor = (DLTensor){
		.data = c->data,
		.device = { kDLCPU, 0 },
		.ndim = 2,
		.dtype = { s.code, s.bits, 1 },
		.shape = c->shape,
		.strides = NULL,
		.byte_offset = 0,
	};
	c->mt.manager_ctx = c;
	c->mt.deleter = emb_deleter;
	*ret = &c->mt;
	c = NULL;
	r = 0;
out:
	if (c) {
		free(c->data);
		free(c);
	}
	if (map != MAP_FAILED)
		munmap(map, len);
	if (fd >= 0)
		close(fd);
	free(path);
	free(name);
	return r;
}
