/*
 * client/cuda_export.h — describing CUDA device memory so that vlmd can map it: a legacy CUDA IPC
 * handle of the allocation, or a POSIX fd of a cuMemCreate allocation (VMM).
 *
 * Why through dlopen: libvlmclient must load and work on machines without a GPU or CUDA
 * toolkit. The driver (libcuda.so.1) is opened at the first CUDA tensor; its absence, or a
 * driver without a usable device, is -ENODEV for that tensor and nothing else. The few driver
 * types and constants used are restated here (checked against cuda.h by tests/cuda when the
 * toolkit is there), so building needs no CUDA headers.
 *
 * What vlmd needs (kernels/cuda/ipc.h is its import side): the allocation's base handle, the
 * tensor's offset in it and the allocation's size, because a legacy IPC handle always maps a
 * whole allocation and may be opened only once per process (vlmd caches and refcounts); a VMM
 * fd is a capability that keeps the memory alive in vlmd even if the client dies.
 */
#ifndef VLM_CLIENT_CUDA_EXPORT_H
#define VLM_CLIENT_CUDA_EXPORT_H

#include <stdint.h>

#include "shm/wire.h"

/*
 * Fills the device fields of w (device, device_index, ipc_handle, data_off, alloc_bytes,
 * data_bytes = bytes) for the device memory [ptr, ptr + bytes). For VMM memory *fd_out is a new
 * descriptor (close-on-exec) the caller sends with vc_conn_fd_add and then closes; else -1.
 * Thread-safe. Returns 0, -ENODEV (no CUDA driver or device), -ENOTSUP (memory that is neither
 * legacy-IPC capable nor exportable as a POSIX fd, or not device memory), -EINVAL (not a CUDA
 * pointer, or the range leaves its allocation), -EIO (a driver call failed); the message is in
 * the thread's last error.
 */
int vc_cuda_export(const void *ptr, uint64_t bytes, struct vs_mm_item *w, int *fd_out);

/* 1 when the CUDA driver loaded and initialized (tests), else 0. Thread-safe. */
int vc_cuda_available(void);

/* Driver ABI values restated from cuda.h (tests/cuda checks them against the real header). */
#define VC_CU_POINTER_ATTRIBUTE_MEMORY_TYPE 2
#define VC_CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL 9
#define VC_CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE 10
#define VC_CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES 14
#define VC_CU_MEMORYTYPE_DEVICE 2
#define VC_CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR 1
#define VC_CU_IPC_HANDLE_SIZE 64

#endif /* VLM_CLIENT_CUDA_EXPORT_H */
