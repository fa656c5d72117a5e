/*
 * daemon/model/weights.c — mmap'd checkpoint files and name lookup (see weights.h).
 *
 * Each file is read whole into anonymous memory of its own (read-only once loaded), not mmap'd:
 * a file mapping follows the file, so replacing a checkpoint in place (cp over it, a truncating
 * download) would kill vlmd with SIGBUS on the next page it touches past the new end, or change
 * the weights it serves under its feet (issue 15). With a private copy the files can change or
 * vanish at any time after the load; a file that changes *during* the load (size, inode or
 * modification time differ after reading, or a read comes up short) is refused, so vlmd never
 * serves a torn or truncated checkpoint. Cost: one read of the files at load (about what the
 * page faults of the mapping cost anyway, since every weight is read by the first forward or by
 * the device upload) and anonymous instead of page-cache memory (no sharing of the weights'
 * pages between processes). The header parser only ever sees the buffer and its length, which is
 * how a truncated file is caught (offsets past the end).
 */
#include "daemon/model/errmsg.h"
#include "daemon/model/weights.h"

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

#include <jansson.h>

struct vd_shard {
	char *file;          /* file name within the directory */
	void *map;
	size_t len;          /* the file's bytes at map */
	size_t map_len;      /* the mapping's (len rounded up to whole pages) */
	struct vd_st *st;
};

struct vd_weights {
	size_t n_shards;
	struct vd_shard *shards;
};


void vd_weights_free(struct vd_weights *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n_shards; i++) {
		vd_st_free(w->shards[i].st);
		if (w->shards[i].map && w->shards[i].map_len)
			munmap(w->shards[i].map, w->shards[i].map_len);
		free(w->shards[i].file);
	}
	free(w->shards);
	free(w);
}

/* Anonymous memory for len bytes of a shard; from 2 MiB up, 2 MiB aligned and offered to
 * transparent huge pages (MADV_HUGEPAGE; the usual THP setting is "madvise"). The CPU backend
 * streams bf16 weights from here in place (batch-1 decode reads every byte once per step): with
 * 4 KiB pages each weight row stream misses the TLB every 4 KiB, a two-level page walk under
 * virtualisation. A hint only: small pages work too. *ret_len: the length to munmap. */
#define HUGE_BYTES ((size_t)2 << 20)

static void *map_private(size_t len, size_t *ret_len)
{
	const int prot = PROT_READ | PROT_WRITE, flags = MAP_PRIVATE | MAP_ANONYMOUS;
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t want = (len + pg - 1) & ~(pg - 1);
	if (len < HUGE_BYTES) {
		void *p = mmap(NULL, want, prot, flags, -1, 0);
		*ret_len = want;
		return p;
	}
	want = (len + HUGE_BYTES - 1) & ~(HUGE_BYTES - 1);
	char *raw = mmap(NULL, want + HUGE_BYTES, prot, flags, -1, 0);   /* room to align */
	if (raw == MAP_FAILED)
		return MAP_FAILED;
	char *p = (char *)(((uintptr_t)raw + HUGE_BYTES - 1) & ~(uintptr_t)(HUGE_BYTES - 1));
	if (p > raw)
		munmap(raw, (size_t)(p - raw));
	if (raw + want + HUGE_BYTES > p + want)
		munmap(p + want, (size_t)(raw + want + HUGE_BYTES - (p + want)));
#ifdef MADV_HUGEPAGE
	(void)madvise(p, want, MADV_HUGEPAGE);
#endif
	*ret_len = want;
	return p;
}

static int map_shard(const char *dir, struct vd_shard *s, char *err, size_t err_len)
{
	char path[4096];
	struct stat sb;
	char perr[384];
	int rc;

	if (snprintf(path, sizeof(path), "%s/%s", dir, s->file) >= (int)sizeof(path))
		return vd_fail(err, err_len, -ENAMETOOLONG, "%s: path too long", s->file);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		return vd_fail(err, err_len, -e, "%s: %s", path, strerror(e));
	}
	if (fstat(fd, &sb) < 0) {
		rc = -errno;
		vd_fail(err, err_len, rc, "%s: %s", path, strerror(-rc));
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		rc = vd_fail(err, err_len, -EINVAL, "%s: not a regular file", path);
		goto out;
	}
	s->len = (size_t)sb.st_size;
	if (s->len == 0) {
		rc = vd_fail(err, err_len, -EINVAL, "%s: empty file", path);
		goto out;
	}
	s->map = map_private(s->len, &s->map_len);
	if (s->map == MAP_FAILED) {
		rc = -errno;
		s->map = NULL;
		s->len = 0;
		s->map_len = 0;
		vd_fail(err, err_len, rc, "%s: %zu bytes of memory: %s", path, (size_t)sb.st_size,
		        strerror(-rc));
		goto out;
	}
	for (size_t got = 0; got < s->len;) {
		ssize_t n = pread(fd, (char *)s->map + got, s->len - got > (1u << 30) ? (1u << 30) :
		                  s->len - got, (off_t)got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EAGAIN;
			vd_fail(err, err_len, rc, "%s: %s at byte %zu of %zu", path,
			        n < 0 ? strerror(errno) : "file shrank while loading", got, s->len);
			goto out;
		}
		got += (size_t)n;
	}
	{
		struct stat after;

		if (fstat(fd, &after) < 0 || after.st_size != sb.st_size || after.st_ino != sb.st_ino ||
		    after.st_mtim.tv_sec != sb.st_mtim.tv_sec ||
		    after.st_mtim.tv_nsec != sb.st_mtim.tv_nsec) {
			rc = vd_fail(err, err_len, -EAGAIN, "%s: file changed while loading", path);
			goto out;
		}
	}
	mprotect(s->map, s->len, PROT_READ);
	rc = vd_st_parse(s->map, s->len, &s->st, perr, sizeof(perr));
	if (rc < 0)
		vd_fail(err, err_len, rc, "%s: %s", s->file, perr);
out:
	close(fd);
	return rc;
}

static int add_shard(struct vd_weights *w, const char *file)
{
	for (size_t i = 0; i < w->n_shards; i++)
		if (!strcmp(w->shards[i].file, file))
			return (int)i;
	struct vd_shard *ns = realloc(w->shards, (w->n_shards + 1) * sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	w->shards = ns;
	memset(&ns[w->n_shards], 0, sizeof(*ns));
	ns[w->n_shards].file = strdup(file);
	if (!ns[w->n_shards].file)
		return -ENOMEM;
	return (int)w->n_shards++;
}

static int load_index(const char *dir, const char *path, struct vd_weights *w, json_t **ret_map,
                      char *err, size_t err_len)
{
	json_error_t jerr;
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return vd_fail(err, err_len, -EINVAL, "model.safetensors.index.json: %s (line %d)",
		            jerr.text, jerr.line);
	json_t *map = json_object_get(root, "weight_map");
	if (!json_is_object(map) || json_object_size(map) == 0) {
		json_decref(root);
		return vd_fail(err, err_len, -EINVAL,
		            "model.safetensors.index.json: \"weight_map\" missing or empty");
	}
	const char *key;
	json_t *val;
	json_object_foreach(map, key, val) {
		const char *f = json_string_value(val);
		if (!f || !*f || strchr(f, '/') || !strcmp(f, ".") || !strcmp(f, "..")) {
			/* format before the decref: key points into root */
			int rc = vd_fail(err, err_len, -EINVAL, "model.safetensors.index.json: tensor '%s' "
			              "maps to an invalid shard file name", key);
			json_decref(root);
			return rc;
		}
		int rc = add_shard(w, f);
		if (rc < 0) {
			json_decref(root);
			return vd_fail(err, err_len, rc, "out of memory");
		}
	}
	(void)dir;
	*ret_map = json_incref(map);
	json_decref(root);
	return 0;
}

int vd_weights_open(const char *dir, struct vd_weights **ret, char *err, size_t err_len)
{
	char path[4096];
	json_t *map = NULL;
	int rc;

	*ret = NULL;
	struct vd_weights *w = calloc(1, sizeof(*w));
	if (!w)
		return vd_fail(err, err_len, -ENOMEM, "out of memory");
	if (snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir) >=
	    (int)sizeof(path)) {
		rc = vd_fail(err, err_len, -ENAMETOOLONG, "model path too long");
		goto out;
	}
	if (access(path, F_OK) == 0) {
		rc = load_index(dir, path, w, &map, err, err_len);
		if (rc < 0)
			goto out;
	} else {
		snprintf(path, sizeof(path), "%s/model.safetensors", dir);
		if (access(path, F_OK) != 0) {
			rc = vd_fail(err, err_len, -ENOENT, "%s: neither model.safetensors nor "
			          "model.safetensors.index.json", dir);
			goto out;
		}
		rc = add_shard(w, "model.safetensors");
		if (rc < 0) {
			rc = vd_fail(err, err_len, rc, "out of memory");
			goto out;
		}
	}
	for (size_t i = 0; i < w->n_shards; i++) {
		rc = map_shard(dir, &w->shards[i], err, err_len);
		if (rc < 0)
			goto out;
	}
	if (map) {
		/* Every tensor the index names must be in the shard it names. */
		const char *key;
		json_t *val;
		json_object_foreach(map, key, val) {
			const char *f = json_string_value(val);
			for (size_t i = 0; i < w->n_shards; i++)
				if (!strcmp(w->shards[i].file, f) && !vd_st_find(w->shards[i].st, key)) {
					rc = vd_fail(err, err_len, -EINVAL, "tensor '%s': the index puts it in %s "
					          "but that file does not have it", key, f);
					goto out;
				}
		}
	}
	/* A name in two files would make lookups ambiguous. */
	for (size_t i = 0; i < w->n_shards; i++)
		for (size_t j = i + 1; j < w->n_shards; j++)
			for (size_t k = 0; k < w->shards[i].st->n; k++)
				if (vd_st_find(w->shards[j].st, w->shards[i].st->t[k].name)) {
					rc = vd_fail(err, err_len, -EINVAL, "tensor '%s' is in both %s and %s",
					          w->shards[i].st->t[k].name, w->shards[i].file,
					          w->shards[j].file);
					goto out;
				}
	*ret = w;
	w = NULL;
	rc = 0;
out:
	json_decref(map);
	vd_weights_free(w);
	return rc;
}

static const struct vd_st_tensor *find_any(const struct vd_weights *w, const char *rel)
{
	static const char *const prefixes[] = { "model.", "model.language_model.",
	                                        "language_model.model." };
	char key[512];
	int is_head = !strncmp(rel, "lm_head.", 8);   /* lm_head.weight, lm_head.qweight, ... */
	for (size_t p = 0; p < sizeof(prefixes) / sizeof(prefixes[0]); p++) {
		if (is_head) {
			static const char *const heads[] = { "", "language_model." };
			if (p >= 2)
				break;
			snprintf(key, sizeof(key), "%s%s", heads[p], rel);
		} else if (snprintf(key, sizeof(key), "%s%s", prefixes[p], rel) >= (int)sizeof(key)) {
			continue;
		}
		for (size_t i = 0; i < w->n_shards; i++) {
			const struct vd_st_tensor *t = vd_st_find(w->shards[i].st, key);
			if (t)
				return t;
		}
	}
	return NULL;
}

int vd_weights_has(const struct vd_weights *w, const char *rel_name)
{
	return find_any(w, rel_name) != NULL;
}

static void fmt_shape(char *buf, size_t len, int32_t ndim, const int64_t *shape)
{
	size_t o = 0;
	o += (size_t)snprintf(buf + o, len - o, "[");
	for (int32_t i = 0; i < ndim && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
	if (o < len)
		snprintf(buf + o, len - o, "]");
}

static int check_tensor(const struct vd_st_tensor *t, enum vd_st_dtype want, int32_t ndim,
                        const int64_t *shape, struct vd_tensor *ret, char *err, size_t err_len);

int vd_weights_get(const struct vd_weights *w, const char *rel_name, int32_t ndim,
                   const int64_t *shape, struct vd_tensor *ret, char *err, size_t err_len)
{
	return vd_weights_get_typed(w, rel_name, VD_ST_UNKNOWN, ndim, shape, ret, err, err_len);
}

int vd_weights_get_typed(const struct vd_weights *w, const char *rel_name, enum vd_st_dtype dtype,
                         int32_t ndim, const int64_t *shape, struct vd_tensor *ret, char *err,
                         size_t err_len)
{
	const struct vd_st_tensor *t = find_any(w, rel_name);
	if (!t)
		return vd_fail(err, err_len, -ENOENT, "missing tensor '%s' (tried model.%s, "
		            "model.language_model.%s)", rel_name, rel_name, rel_name);
	return check_tensor(t, dtype, ndim, shape, ret, err, err_len);
}

int vd_weights_get_key(const struct vd_weights *w, const char *key, int32_t ndim,
                       const int64_t *shape, struct vd_tensor *ret, char *err, size_t err_len)
{
	const struct vd_st_tensor *t = NULL;
	for (size_t i = 0; i < w->n_shards && !t; i++)
		t = vd_st_find(w->shards[i].st, key);
	if (!t)
		return vd_fail(err, err_len, -ENOENT, "missing tensor '%s'", key);
	return check_tensor(t, VD_ST_UNKNOWN, ndim, shape, ret, err, err_len);
}

static int check_tensor(const struct vd_st_tensor *t, enum vd_st_dtype want, int32_t ndim,
                        const int64_t *shape, struct vd_tensor *ret, char *err, size_t err_len)
{
	if (want == VD_ST_UNKNOWN && t->dtype != VD_ST_F32 && t->dtype != VD_ST_F16 &&
	    t->dtype != VD_ST_BF16)
		return vd_fail(err, err_len, -ENOTSUP, "tensor '%s': dtype %s is not supported (F32, F16, "
		            "BF16)", t->name, t->dtype_name);
	if (want != VD_ST_UNKNOWN && t->dtype != want)
		return vd_fail(err, err_len, -ENOTSUP, "tensor '%s': dtype %s, expected %s", t->name,
		            t->dtype_name, want == VD_ST_I32 ? "I32" : "another");
	int same = t->ndim == ndim;
	for (int32_t i = 0; same && i < ndim; i++)
		same = t->shape[i] == shape[i];
	if (!same) {
		char got[128], exp[128];
		fmt_shape(got, sizeof(got), t->ndim, t->shape);
		fmt_shape(exp, sizeof(exp), ndim, shape);
		return vd_fail(err, err_len, -EINVAL, "tensor '%s': shape %s, expected %s", t->name, got,
		            exp);
	}
	size_t es = vd_st_dtype_size(t->dtype);
	if ((uintptr_t)t->data % es)
		return vd_fail(err, err_len, -EINVAL, "tensor '%s': data offset %llu is not aligned to its "
		            "%zu-byte elements", t->name, (unsigned long long)t->begin, es);
	memset(ret, 0, sizeof(*ret));
	ret->name = t->name;
	ret->dtype = t->dtype;
	ret->ndim = t->ndim;
	memcpy(ret->shape, t->shape, sizeof(ret->shape));
	ret->data = t->data;
	ret->bytes = t->end - t->begin;
	return 0;
}

size_t vd_weights_count(const struct vd_weights *w)
{
	size_t n = 0;
	for (size_t i = 0; i < w->n_shards; i++)
		n += w->shards[i].st->n;
	return n;
}

uint64_t vd_weights_bytes(const struct vd_weights *w)
{
	uint64_t n = 0;
	for (size_t i = 0; i < w->n_shards; i++)
		n += w->shards[i].st->data_len;
	return n;
}
