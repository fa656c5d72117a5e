/*
 * kernels/ref/ref_backend.h — the naive scalar reference backend ("ref"), for tests only.
 */
#ifndef VLM_KERNELS_REF_BACKEND_H
#define VLM_KERNELS_REF_BACKEND_H

#include <stddef.h>

#include "kernels/backend.h"

/* Opens a new ref backend in *ret (owned by the caller, free with vk_backend_free).
 * Returns 0 or -ENOMEM with a message in err. */
int vk_ref_backend_open(struct vk_backend **ret, char *err, size_t err_len);

#endif
