/*
 * kernels/cuda/ipc.h — importing client GPU memory into vlmd: CUDA IPC and VMM file descriptors.
 *
 * Two routes, both zero-copy (the embed kernel reads the client's rows in place):
 *  - legacy CUDA IPC (cudaIpcGetMemHandle, what PyTorch's caching allocator supports): the client
 *    sends the 64-byte handle of the allocation's *base* plus (offset, size). A handle can be opened
 *    only once per process, so mappings are cached by handle bytes and refcounted; every open
 *    validates offset + size against the real allocation size (cuMemGetAddressRange) and the last
 *    release closes the handle. The exporter must keep the allocation until vlmd releases it.
 *  - VMM (cuMemCreate with CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, exported with
 *    cuMemExportToShareableHandle and passed with SCM_RIGHTS): a real capability; vlmd's mapping
 *    keeps the memory alive even if the client dies. Each open maps anew (no dedup: an fd does not
 *    identify its allocation), mapped read-write on vlmd's device.
 * Ordering: the client's writes are complete before it submits (docs/CLIENT.md, "Ordering"); vlmd
 * takes no event from it. The daemon reaches this module only through the backend table
 * (ops->import_tensor / release_tensor / import_count of the CUDA backend).
 *
 * The driver API is reached through cudaGetDriverEntryPointByVersion, so vlmd does not link
 * libcuda.so and still starts on machines without a GPU driver.
 * C and C++ compatible; thread-safe (one mutex per cache).
 */
#ifndef VLM_KERNELS_CUDA_IPC_H
#define VLM_KERNELS_CUDA_IPC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VK_IPC_HANDLE_BYTES 64   /* sizeof(cudaIpcMemHandle_t) */

struct vk_ipc_cache;
struct vk_ipc_map;

/* New empty cache for the calling thread's current CUDA device. Returns 0, -ENOMEM, or -ENODEV
 * (no driver entry points: no usable CUDA driver) with a message in err. */
int vk_ipc_cache_new(struct vk_ipc_cache **ret, char *err, size_t err_len);

/* Closes every mapping still open (whatever its refcount) and frees c. NULL is a no-op. */
void vk_ipc_cache_free(struct vk_ipc_cache *c);

/* Mappings currently open (distinct allocations), for tests and vlmctl. */
int vk_ipc_cache_count(struct vk_ipc_cache *c);

/*
 * Legacy route. handle: VK_IPC_HANDLE_BYTES of a cudaIpcMemHandle_t of an allocation base.
 * On success *ret_ptr = base + offset (device memory of this process, valid until the matching
 * vk_ipc_release) and *ret_map is the reference to release. Errors: -EINVAL (handle refused by
 * CUDA, e.g. opened in the exporting process or freed), -ERANGE (offset/size outside the
 * allocation, or size 0), -ENOMEM, -ENOTRECOVERABLE (sticky CUDA error).
 */
int vk_ipc_open_legacy(struct vk_ipc_cache *c, const void *handle, uint64_t offset, uint64_t size,
                       struct vk_ipc_map **ret_map, void **ret_ptr, char *err, size_t err_len);

/*
 * VMM route. fd: a POSIX fd from cuMemExportToShareableHandle (the caller keeps ownership and may
 * close it after the call); alloc_size: the exporter's allocation size (a multiple of its
 * granularity; a size larger than the real allocation makes the mapping fail). Same results as
 * vk_ipc_open_legacy.
 */
int vk_ipc_open_fd(struct vk_ipc_cache *c, int fd, uint64_t alloc_size, uint64_t offset,
                   uint64_t size, struct vk_ipc_map **ret_map, void **ret_ptr, char *err,
                   size_t err_len);

/* Drops one reference taken by an open; the last one unmaps. NULL map is a no-op. */
void vk_ipc_release(struct vk_ipc_cache *c, struct vk_ipc_map *m);

/* A driver API function by name (e.g. "cuMemCreate"), NULL if unavailable; cast it to the
 * function's PFN_ type (cudaTypedefs.h). */
typedef void (*vk_ipc_fn)(void);
vk_ipc_fn vk_ipc_driver_symbol(const char *name);

#ifdef __cplusplus
}
#endif

#endif /* VLM_KERNELS_CUDA_IPC_H */
