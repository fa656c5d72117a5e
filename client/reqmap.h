/*
 * client/reqmap.h — request id -> request, for routing completions to their requests.
 *
 * Open addressing with linear probing and backward-shift deletion (no tombstones, so a long-lived
 * connection that submits millions of requests never degrades). Keys are nonzero uint64 ids;
 * the table doubles at 50% load. Not thread-safe: the connection's mutex guards it.
 */
#ifndef VLM_CLIENT_REQMAP_H
#define VLM_CLIENT_REQMAP_H

#include <stddef.h>
#include <stdint.h>

struct vc_reqmap_slot {
	uint64_t key;                /* 0: empty */
	void *val;
};

struct vc_reqmap {
	struct vc_reqmap_slot *slots; /* [cap], cap a power of two; owned */
	size_t cap, n;
};

/* Empty map (no allocation until the first put). */
void vc_reqmap_init(struct vc_reqmap *m);
/* Frees the table (not the values). A zeroed map is a no-op. */
void vc_reqmap_fini(struct vc_reqmap *m);
/* Inserts key (nonzero, not present) -> val. Returns 0, -EINVAL, -EEXIST or -ENOMEM. */
int vc_reqmap_put(struct vc_reqmap *m, uint64_t key, void *val);
/* The value of key, or NULL. */
void *vc_reqmap_get(const struct vc_reqmap *m, uint64_t key);
/* Removes key; returns its value or NULL when absent. */
void *vc_reqmap_del(struct vc_reqmap *m, uint64_t key);

#endif /* VLM_CLIENT_REQMAP_H */
