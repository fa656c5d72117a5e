/*
 * client/cuda_export.c — CUDA device memory to a vs_mm_item (client/cuda_export.h), with the
 * driver reached through dlopen.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "client/cuda_export.h"
#include "client/vlmerr.h"

typedef int cu_result;
typedef unsigned long long cu_ptr;
typedef void *cu_context;
typedef unsigned long long cu_alloc_handle;
struct cu_ipc_handle {
	char reserved[VC_CU_IPC_HANDLE_SIZE];
};

static struct {
	void *lib;
	int ok;
	char why[160];
	cu_result (*init)(unsigned);
	cu_result (*get_error_string)(cu_result, const char **);
	cu_result (*pointer_get_attribute)(void *, int, cu_ptr);
	cu_result (*mem_get_address_range)(cu_ptr *, size_t *, cu_ptr);
	cu_result (*ipc_get_mem_handle)(struct cu_ipc_handle *, cu_ptr);
	cu_result (*mem_retain_allocation_handle)(cu_alloc_handle *, void *);
	cu_result (*mem_export_to_shareable_handle)(void *, cu_alloc_handle, int, unsigned long long);
	cu_result (*mem_release)(cu_alloc_handle);
	cu_result (*primary_ctx_retain)(cu_context *, int);
	cu_result (*primary_ctx_release)(int);
	cu_result (*ctx_push)(cu_context);
	cu_result (*ctx_pop)(cu_context *);
} cu;

static pthread_once_t cu_once = PTHREAD_ONCE_INIT;

static const char *cu_str(cu_result r)
{
	const char *s = NULL;

	if (cu.get_error_string && cu.get_error_string(r, &s) == 0 && s)
		return s;
	return "unknown CUDA error";
}

#define SYM(field, name)                                                                   \
	do {                                                                               \
		*(void **)&cu.field = dlsym(cu.lib, name);                                 \
		if (!cu.field) {                                                           \
			snprintf(cu.why, sizeof(cu.why), "CUDA driver lacks %s", name);    \
			return;                                                            \
		}                                                                          \
	} while (0)

static void load(void)
{
	cu_result r;

	cu.lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!cu.lib) {
		snprintf(cu.why, sizeof(cu.why), "no CUDA driver (libcuda.so.1 not found)");
		return;
	}
	SYM(init, "cuInit");
	SYM(get_error_string, "cuGetErrorString");
	SYM(pointer_get_attribute, "cuPointerGetAttribute");
	SYM(mem_get_address_range, "cuMemGetAddressRange_v2");
	SYM(ipc_get_mem_handle, "cuIpcGetMemHandle");
	SYM(mem_retain_allocation_handle, "cuMemRetainAllocationHandle");
	SYM(mem_export_to_shareable_handle, "cuMemExportToShareableHandle");
	SYM(mem_release, "cuMemRelease");
	SYM(primary_ctx_retain, "cuDevicePrimaryCtxRetain");
	SYM(primary_ctx_release, "cuDevicePrimaryCtxRelease_v2");
	SYM(ctx_push, "cuCtxPushCurrent_v2");
	SYM(ctx_pop, "cuCtxPopCurrent_v2");
	r = cu.init(0);
	if (r) {
		snprintf(cu.why, sizeof(cu.why), "CUDA driver unusable: cuInit: %s", cu_str(r));
		return;
	}
	cu.ok = 1;
}

int vc_cuda_available(void)
{
	pthread_once(&cu_once, load);
	return cu.ok;
}

int vc_cuda_export(const void *ptr, uint64_t bytes, struct vs_mm_item *w, int *fd_out)
{
	cu_ptr p = (cu_ptr)(uintptr_t)ptr, base = 0;
	cu_context ctx = NULL, popped;
	unsigned mem_type = 0;
	int ordinal = -1, legacy = 0, e = 0;
	uint64_t types = 0;
	size_t size = 0;
	cu_result r;

	*fd_out = -1;
	if (!vc_cuda_available())
		return vc_err(-ENODEV, "CUDA tensor: %s", cu.why);
	r = cu.pointer_get_attribute(&mem_type, VC_CU_POINTER_ATTRIBUTE_MEMORY_TYPE, p);
	if (r)
		return vc_err(-EINVAL, "CUDA tensor: not a CUDA pointer (%s)", cu_str(r));
	if (mem_type != VC_CU_MEMORYTYPE_DEVICE)
		return vc_err(-ENOTSUP, "CUDA tensor: memory type %u is not device memory", mem_type);
	r = cu.pointer_get_attribute(&ordinal, VC_CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, p);
	if (r)
		return vc_err(-EIO, "CUDA tensor: device of the pointer: %s", cu_str(r));
	/* the calling thread may have no current context: work in the device's primary one */
	r = cu.primary_ctx_retain(&ctx, ordinal);
	if (r)
		return vc_err(-EIO, "CUDA tensor: primary context of device %d: %s", ordinal,
			      cu_str(r));
	r = cu.ctx_push(ctx);
	if (r) {
		e = vc_err(-EIO, "CUDA tensor: cuCtxPushCurrent: %s", cu_str(r));
		goto out_release;
	}
	r = cu.mem_get_address_range(&base, &size, p);
	if (r) {
		e = vc_err(-EINVAL, "CUDA tensor: allocation of the pointer: %s", cu_str(r));
		goto out_pop;
	}
	if (p < base || bytes > size || p - base > size - bytes) {
		e = vc_err(-EINVAL, "CUDA tensor: %llu bytes at offset %llu leave the %zu-byte "
			   "allocation", (unsigned long long)bytes, (unsigned long long)(p - base),
			   size);
		goto out_pop;
	}
	memset(w->ipc_handle, 0, sizeof(w->ipc_handle));
	if (cu.pointer_get_attribute(&legacy, VC_CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE,
				     p))
		legacy = 0;
	if (legacy) {
		struct cu_ipc_handle h;

		r = cu.ipc_get_mem_handle(&h, base);
		if (r) {
			e = vc_err(-EIO, "CUDA tensor: cuIpcGetMemHandle: %s", cu_str(r));
			goto out_pop;
		}
		_Static_assert(sizeof(h) == sizeof(w->ipc_handle), "ipc handle size");
		memcpy(w->ipc_handle, &h, sizeof(h));
		w->device = VS_DEV_CUDA_IPC;
	} else {
		cu_alloc_handle ah;
		int fd = -1;

		if (cu.pointer_get_attribute(&types, VC_CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES, p))
			types = 0;
		if (!(types & VC_CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)) {
			e = vc_err(-ENOTSUP, "CUDA tensor: its allocation can be shared neither by "
				   "legacy CUDA IPC nor as a POSIX fd (allocate it with cudaMalloc, or "
				   "cuMemCreate with CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)");
			goto out_pop;
		}
		r = cu.mem_retain_allocation_handle(&ah, (void *)(uintptr_t)base);
		if (r) {
			e = vc_err(-EIO, "CUDA tensor: cuMemRetainAllocationHandle: %s", cu_str(r));
			goto out_pop;
		}
		r = cu.mem_export_to_shareable_handle(&fd, ah,
						      VC_CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0);
		cu.mem_release(ah); /* drops only the reference the retain took */
		if (r) {
			e = vc_err(-EIO, "CUDA tensor: cuMemExportToShareableHandle: %s", cu_str(r));
			goto out_pop;
		}
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		*fd_out = fd;
		w->device = VS_DEV_CUDA_VMM;
	}
	w->device_index = ordinal;
	w->data_off = p - base;
	w->data_bytes = bytes;
	w->alloc_bytes = size;
out_pop:
	cu.ctx_pop(&popped);
out_release:
	cu.primary_ctx_release(ordinal);
	return e;
}
