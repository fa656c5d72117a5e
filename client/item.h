/*
 * client/item.h — one multimodal item of a request: a taken tensor (client/dlpack.h) placed where
 * vlmd can read it, and its wire descriptor.
 *
 * Where the rows go, cheapest first: a host tensor that already lies in this connection's arena
 * (vlm_host_alloc) is described in place, no byte copied; any other host tensor is copied once
 * into a fresh arena extent, packed (the one copy a separate address space forces), and its
 * producer's memory is given back at once; a CUDA tensor is described by its IPC handle or VMM
 * fd (client/cuda_export.h) and stays where it is. The in-place kinds keep the tensor until vlmd
 * releases it.
 */
#ifndef VLM_CLIENT_ITEM_H
#define VLM_CLIENT_ITEM_H

#include "client/api.h"
#include "client/request.h"

/*
 * With mu held: place t for item it (it->wire's shape fields are filled by the caller). For a
 * CUDA tensor the caller has exported it into it->wire already; vmm_fd >= 0 is then registered in
 * a free descriptor slot (and closed by the caller). On success either it->t = t (in place) or
 * *copy = 1 and it->copy_off/len hold a fresh extent the caller fills with vc_item_copy() after
 * dropping mu, then releases t. Returns 0, -ENOSPC / -E2BIG (arena), -EBUSY (no free descriptor
 * slot), -ECONNRESET / -ENOTCONN; on failure nothing is held (t stays the caller's).
 */
int vc_item_place(struct vlm_conn *c, struct vc_item *it, struct vc_tensor *t, int vmm_fd,
		  int *copy);

/* Without mu: packs t's rows into the extent vc_item_place reserved. */
void vc_item_copy(struct vlm_conn *c, const struct vc_item *it, const struct vc_tensor *t);

/* With mu held: vlmd no longer reads the item: queue its tensor for release, free its arena
 * copy and its descriptor slot. Idempotent. */
void vc_item_release(struct vlm_conn *c, struct vc_item *it);

#endif /* VLM_CLIENT_ITEM_H */
