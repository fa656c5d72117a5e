/*
 * daemon/engine/fair.c — per-client shares and admission tags (see fair.h).
 *
 * Clients are indexed by their connection slot (the I/O loop's table position, bounded by
 * max-clients); an entry belongs to a connection generation and is reset when another
 * connection reuses the slot.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/engine/fair.h"

struct fclient {
	uint32_t gen;
	uint32_t n_out;          /* outstanding requests */
	uint64_t bytes;          /* arena rows they copied */
	uint32_t weight;
	uint64_t last;           /* tag of its latest request */
};

struct uw {
	uint32_t uid, w;
};

struct vd_fair {
	struct fclient *c;       /* [cap] by slot */
	uint32_t cap;
	struct uw *w;            /* [n_w] weights by uid */
	size_t n_w;
	uint64_t sum_w;          /* weights of clients with n_out > 0 */
	uint64_t vnow;
};

int vd_fair_new(struct vd_fair **ret)
{
	*ret = calloc(1, sizeof(**ret));
	return *ret ? 0 : -ENOMEM;
}

void vd_fair_free(struct vd_fair *f)
{
	if (!f)
		return;
	free(f->c);
	free(f->w);
	free(f);
}

int vd_fair_set_weights(struct vd_fair *f, const char *spec, char *err, size_t errlen)
{
	struct uw *list = NULL;
	size_t n = 0;
	const char *p = spec ? spec : "";

	while (*p) {
		char *end;
		unsigned long uid, w;
		void *q;

		while (*p == ' ' || *p == ',')
			p++;
		if (!*p)
			break;
		uid = strtoul(p, &end, 10);
		if (end == p || *end != ':' || uid > UINT32_MAX - 1)
			goto bad;
		p = end + 1;
		w = strtoul(p, &end, 10);
		if (end == p || w < 1 || w > VD_FAIR_MAX_WEIGHT || (*end && *end != ',' && *end != ' '))
			goto bad;
		p = end;
		q = realloc(list, (n + 1) * sizeof(*list));
		if (!q) {
			free(list);
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		list = q;
		list[n++] = (struct uw){ (uint32_t)uid, (uint32_t)w };
	}
	if (f) {
		free(f->w);
		f->w = list;
		f->n_w = n;
	} else {
		free(list);
	}
	return 0;
bad:
	free(list);
	snprintf(err, errlen, "client weights: want UID:W[,UID:W...] with W in 1..%u, at '%.20s'",
	         VD_FAIR_MAX_WEIGHT, p);
	return -EINVAL;
}

static uint32_t weight_of(const struct vd_fair *f, uint32_t uid)
{
	for (size_t i = 0; i < f->n_w; i++)
		if (f->w[i].uid == uid)
			return f->w[i].w;
	return 1;
}

static struct fclient *get(struct vd_fair *f, uint32_t slot, uint32_t gen, uint32_t uid)
{
	struct fclient *c;

	if (slot >= f->cap) {
		uint32_t cap = f->cap ? f->cap : 16;
		void *p;

		while (cap <= slot)
			cap *= 2;
		p = realloc(f->c, (size_t)cap * sizeof(*f->c));
		if (!p)
			return NULL;
		f->c = p;
		memset(f->c + f->cap, 0, (size_t)(cap - f->cap) * sizeof(*f->c));
		f->cap = cap;
	}
	c = &f->c[slot];
	if (c->gen != gen || !c->weight) {
		if (c->n_out)
			f->sum_w -= c->weight;   /* a stale entry (should not happen): forget it */
		*c = (struct fclient){ .gen = gen, .weight = weight_of(f, uid) };
	}
	return c;
}

int vd_fair_admit(struct vd_fair *f, uint32_t slot, uint32_t gen, uint32_t uid, size_t waiting,
                  uint32_t max_waiting, uint32_t max_running, uint64_t bytes,
                  uint64_t arena_bytes, uint64_t *tag, char *err, size_t errlen)
{
	struct fclient *c = get(f, slot, gen, uid);
	uint64_t start;

	if (!c)
		return -ENOMEM;
	if (bytes && c->bytes + bytes > arena_bytes) {
		snprintf(err, errlen, "queued rows %llu+%llu KiB > arena %llu KiB",
		         (unsigned long long)(c->bytes >> 10), (unsigned long long)(bytes >> 10),
		         (unsigned long long)(arena_bytes >> 10));
		return -EBUSY;
	}
	if (waiting >= max_waiting) {
		uint64_t sum = f->sum_w + (c->n_out ? 0 : c->weight);
		uint64_t total = (uint64_t)max_running + max_waiting;
		uint64_t share = (total * c->weight + sum - 1) / sum;

		if (c->n_out >= share) {
			/* your share of running + waiting, of the whole; 8 digits at most each */
			snprintf(err, errlen, "queue full: share %llu of %llu",
			         (unsigned long long)share, (unsigned long long)total);
			return -EBUSY;
		}
	}
	if (!c->n_out++)
		f->sum_w += c->weight;
	c->bytes += bytes;
	start = c->last > f->vnow ? c->last : f->vnow;
	c->last = start + VD_FAIR_UNIT / c->weight;
	*tag = c->last;
	return 0;
}

void vd_fair_done(struct vd_fair *f, uint32_t slot, uint32_t gen, uint64_t bytes)
{
	struct fclient *c;

	if (slot >= f->cap || f->c[slot].gen != gen || !f->c[slot].n_out)
		return;
	c = &f->c[slot];
	c->bytes -= bytes < c->bytes ? bytes : c->bytes;
	if (!--c->n_out)
		f->sum_w -= c->weight;
}

void vd_fair_started(struct vd_fair *f, uint64_t tag)
{
	if (tag > f->vnow)
		f->vnow = tag;
}

uint32_t vd_fair_outstanding(const struct vd_fair *f, uint32_t slot, uint32_t gen)
{
	return slot < f->cap && f->c[slot].gen == gen ? f->c[slot].n_out : 0;
}
