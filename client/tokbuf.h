/*
 * client/tokbuf.h — growable byte and id buffers used by the tokenizer modules.
 *
 * Header-only because the helpers are tiny and sit on hot paths (appending one id per token);
 * they grow geometrically so appends are amortised O(1). Memory is owned by the buffer and freed
 * with vt_buf_fini / vt_ids_fini; a zeroed buffer is empty and valid.
 */
#ifndef VLM_CLIENT_TOKBUF_H
#define VLM_CLIENT_TOKBUF_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct vt_buf {
	char *p;     /* [cap] bytes, the first len used; kept NUL-terminated when cap > 0 */
	size_t len;
	size_t cap;
};

struct vt_ids {
	int32_t *p;  /* [cap] ids, the first len used */
	size_t len;
	size_t cap;
};

static inline int vt_buf_reserve(struct vt_buf *b, size_t extra)
{
	if (extra >= SIZE_MAX / 2 - b->len)
		return -ENOMEM;
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

static inline int vt_buf_append(struct vt_buf *b, const void *s, size_t n)
{
	int r = vt_buf_reserve(b, n);
	if (r < 0)
		return r;
	if (n)
		memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static inline void vt_buf_fini(struct vt_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

static inline int vt_ids_reserve(struct vt_ids *v, size_t extra)
{
	if (extra >= SIZE_MAX / 8 - v->len)
		return -ENOMEM;
	size_t need = v->len + extra;
	if (need <= v->cap)
		return 0;
	size_t cap = v->cap ? v->cap : 64;
	while (cap < need)
		cap *= 2;
	int32_t *p = realloc(v->p, cap * sizeof(*p));
	if (!p)
		return -ENOMEM;
	v->p = p;
	v->cap = cap;
	return 0;
}

static inline int vt_ids_push(struct vt_ids *v, int32_t id)
{
	if (v->len == v->cap) {
		int r = vt_ids_reserve(v, 1);
		if (r < 0)
			return r;
	}
	v->p[v->len++] = id;
	return 0;
}

static inline int vt_ids_append(struct vt_ids *v, const int32_t *ids, size_t n)
{
	int r = vt_ids_reserve(v, n);
	if (r < 0)
		return r;
	if (n)
		memcpy(v->p + v->len, ids, n * sizeof(*ids));
	v->len += n;
	return 0;
}

static inline void vt_ids_fini(struct vt_ids *v)
{
	free(v->p);
	v->p = NULL;
	v->len = v->cap = 0;
}

#endif
