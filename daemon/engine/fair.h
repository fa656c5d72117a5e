/*
 * daemon/engine/fair.h — fair share of the engine's queue between clients.
 *
 * Why: a global max-waiting alone lets one client that keeps max-running + max-waiting requests
 * outstanding make every other client's request fail "queue full", and FCFS admission makes a
 * light client's request wait behind all of a heavy client's. Two rules fix both, per connection
 * (weights per uid):
 *  - admission to the queue: while the queue is not full everyone is accepted; once it is full, a
 *    client is still accepted while it has fewer outstanding (waiting + running) requests than its
 *    share, ceil((max-running + max-waiting) * weight / sum of the weights of clients with
 *    outstanding requests, itself included). So a hog is refused beyond its share, never a
 *    client below it; the queue overshoots max-waiting by at most the sum of the shares, i.e. at
 *    most max-running + max-waiting + one per client.
 *  - order of admission to the engine (start-time fair queuing): each request gets a tag,
 *    max(virtual now, the client's previous tag) + 65536 / weight, and the scheduler admits
 *    waiting requests by tag (after priority, before arrival). Virtual now is the largest tag
 *    admitted so far. A client with many queued requests has tags far ahead; a newcomer's tag is
 *    near now, so it goes next: round robin across clients, weighted.
 * It also bounds what a client makes vlmd copy: the arena rows of its outstanding requests
 * (vlmd reads them once, into its own memory, daemon/engine/rowcopy.h) may total at most its
 * arena's size, so a client cannot multiply its arena by queueing many requests over the same
 * rows; vlmd's copies stay within the sum of the arenas it granted.
 * Pure bookkeeping: no locks (the engine calls it under its mutex), no logging.
 */
#ifndef VLM_DAEMON_FAIR_H
#define VLM_DAEMON_FAIR_H

#include <stddef.h>
#include <stdint.h>

#define VD_FAIR_UNIT 65536u           /* tag step of a weight-1 request */
#define VD_FAIR_MAX_WEIGHT 1000u

struct vd_fair;

/* Returns 0 and *ret, or -ENOMEM. */
int vd_fair_new(struct vd_fair **ret);
/* NULL is a no-op. */
void vd_fair_free(struct vd_fair *f);

/* Parse a weight list "UID:W[,UID:W...]" (W in 1..VD_FAIR_MAX_WEIGHT; uids not listed weigh 1);
 * "" is none. With f, the list replaces f's (clients already known keep their weight). Returns 0
 * or -EINVAL with a message in err. f may be NULL: check only (--check-config). */
int vd_fair_set_weights(struct vd_fair *f, const char *spec, char *err, size_t errlen);

/* May client (slot, gen) of user uid queue one more request, which copies bytes of arena rows
 * (its arena holds arena_bytes)? waiting: requests waiting now (all clients). Returns 0 and the
 * request's tag in *tag (the client's count and bytes are taken), or -EBUSY with a message in
 * err (nothing taken), or -ENOMEM. */
int vd_fair_admit(struct vd_fair *f, uint32_t slot, uint32_t gen, uint32_t uid, size_t waiting,
                  uint32_t max_waiting, uint32_t max_running, uint64_t bytes,
                  uint64_t arena_bytes, uint64_t *tag, char *err, size_t errlen);
/* A request of (slot, gen) taken by vd_fair_admit with bytes ended. */
void vd_fair_done(struct vd_fair *f, uint32_t slot, uint32_t gen, uint64_t bytes);
/* A request with this tag was admitted to the engine: virtual now advances to it. */
void vd_fair_started(struct vd_fair *f, uint64_t tag);

/* Outstanding requests of (slot, gen) (tests, vlmctl). */
uint32_t vd_fair_outstanding(const struct vd_fair *f, uint32_t slot, uint32_t gen);

#endif /* VLM_DAEMON_FAIR_H */
