/*
 * client/pixmemo.c — the memo of preprocessed images in a connection's arena (pixmemo.h).
 */
#include <stdlib.h>
#include <string.h>

#include "client/api.h"
#include "client/pixmemo.h"

#define MEMO_MAX_BLOCKS 32u

static void unlink_block(struct vc_pixmemo *m, struct vc_pixblock *b)
{
	if (b->prev)
		b->prev->next = b->next;
	else
		m->head = b->next;
	if (b->next)
		b->next->prev = b->prev;
}

void vc_pixmemo_unref(struct vlm_conn *c, struct vc_pixblock *b)
{
	if (!b || --b->refs > 0)
		return;
	unlink_block(&c->memo, b);
	vc_arena_put(c, b->off, b->len);
	free(b);
}

static void forget(struct vlm_conn *c, struct vc_pixblock *b)
{
	if (!b->memo)
		return;
	b->memo = false;
	c->memo.memo_bytes -= b->len;
	c->memo.memo_count--;
	vc_pixmemo_unref(c, b);
}

struct vc_pixblock *vc_pixmemo_find(struct vlm_conn *c, const struct vc_pixkey *key)
{
	for (struct vc_pixblock *b = c->memo.head; b; b = b->next)
		if (b->memo && !memcmp(&b->key, key, sizeof(*key))) {
			b->refs++;
			b->used = ++c->memo.tick;
			return b;
		}
	return NULL;
}

/* The least recently used memo'd block other than keep, or NULL. */
static struct vc_pixblock *oldest(struct vlm_conn *c, const struct vc_pixblock *keep)
{
	struct vc_pixblock *o = NULL;

	for (struct vc_pixblock *b = c->memo.head; b; b = b->next)
		if (b->memo && b != keep && (!o || b->used < o->used))
			o = b;
	return o;
}

struct vc_pixblock *vc_pixmemo_add(struct vlm_conn *c, const struct vc_pixkey *key, uint64_t off,
				   uint64_t len)
{
	struct vc_pixblock *b = calloc(1, sizeof(*b)), *o;
	uint64_t budget = c->arena_bytes / 4;

	if (!b)
		return NULL;
	b->key = *key;
	b->off = off;
	b->len = len;
	b->refs = 1;
	b->used = ++c->memo.tick;
	b->next = c->memo.head;
	if (b->next)
		b->next->prev = b;
	c->memo.head = b;
	if (len > budget)
		return b; /* too large to keep: the caller's alone */
	/* a block of the same key added meanwhile (two threads missed at once) gives way */
	for (o = c->memo.head; o; o = o->next)
		if (o != b && o->memo && !memcmp(&o->key, key, sizeof(*key))) {
			forget(c, o);
			break;
		}
	b->memo = true;
	b->refs++;
	c->memo.memo_bytes += len;
	c->memo.memo_count++;
	while ((c->memo.memo_bytes > budget || c->memo.memo_count > MEMO_MAX_BLOCKS) &&
	       (o = oldest(c, b)))
		forget(c, o);
	return b;
}

bool vc_pixmemo_evict(struct vlm_conn *c)
{
	bool freed = false;
	struct vc_pixblock *b = c->memo.head, *n;

	for (; b; b = n) {
		n = b->next;
		if (!b->memo)
			continue;
		freed |= b->refs == 1;
		forget(c, b); /* frees b alone, if anything */
	}
	return freed;
}

void vc_pixmemo_fini(struct vlm_conn *c)
{
	struct vc_pixblock *b = c->memo.head, *n;

	for (; b; b = n) {
		n = b->next;
		free(b);
	}
	memset(&c->memo, 0, sizeof(c->memo));
}
