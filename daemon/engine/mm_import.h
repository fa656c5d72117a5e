/*
 * daemon/engine/mm_import.h — mapping clients' GPU embedding tensors into vlmd for the engine.
 *
 * A request item on device VS_DEV_CUDA_IPC names a legacy cudaIpcMemHandle of its allocation's
 * base plus (data_off, data_bytes, alloc_bytes); one on VS_DEV_CUDA_VMM names a cuMemCreate
 * allocation exported as a POSIX fd that travelled with SCM_RIGHTS (the loop dup'd it into the
 * request). The engine maps each tensor once when it converts the request, hands the device
 * pointer to the embed op as a device row source (the rows are read where they lie: zero copy),
 * and releases the mapping before it tells the client TENSOR_RELEASED. The mapping itself is the
 * backend's (ops->import_tensor / release_tensor / import_count of kernels/backend.h; the CUDA
 * backend keeps kernels/cuda/ipc.h's cache behind them); this module only turns wire items into
 * struct vk_import, so the engine depends on no device header and has no build-time switch. A
 * backend without the ops makes vd_mm_import_new fail with -ENOTSUP and the engine refuses GPU
 * items with a clear message.
 * Thread-safety: as the backend's import ops (any thread).
 */
#ifndef VLM_DAEMON_MM_IMPORT_H
#define VLM_DAEMON_MM_IMPORT_H

#include <stddef.h>

#include "kernels/backend.h"
#include "shm/wire.h"

struct vd_mm_import;

/* An importer over backend be (not owned; must outlive it). Returns 0 and *ret (vd_mm_import_free),
 * -ENOTSUP (the backend reads no foreign device memory) or -ENOMEM, with err. */
int vd_mm_import_new(struct vk_backend *be, struct vd_mm_import **ret, char *err, size_t errlen);
/* NULL is a no-op. Every reference must have been released. */
void vd_mm_import_free(struct vd_mm_import *im);

/* Map item it (device VS_DEV_CUDA_IPC, or VS_DEV_CUDA_VMM with its descriptor vmm_fd, which the
 * caller keeps). On success *ret_data is the device address of row 0 (data_off into the
 * allocation) and *ret_ref the reference to release. Errors: -EINVAL (handle refused, e.g. freed
 * memory or another device), -ERANGE (rows outside the allocation), -ENOTSUP (not a GPU item, or
 * no usable driver), -EBADF, -ENOMEM, with err. */
int vd_mm_import_open(struct vd_mm_import *im, const struct vs_mm_item *it, int vmm_fd,
		      void **ret_ref, const void **ret_data, char *err, size_t errlen);
/* Drop a reference from vd_mm_import_open. NULL ref is a no-op. */
void vd_mm_import_release(struct vd_mm_import *im, void *ref);
/* Distinct allocations mapped now (vlmctl, metrics). */
int vd_mm_import_count(struct vd_mm_import *im);

#endif /* VLM_DAEMON_MM_IMPORT_H */
