/*
 * kernels/cuda/ipc.cu — CUDA IPC and VMM imports (see ipc.h for the why).
 */
#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include "kernels/cuda/ipc.h"

struct vk_ipc_map {
	struct vk_ipc_map *next;
	int legacy;                                  /* 1: cudaIpcOpenMemHandle; 0: VMM */
	unsigned char handle[VK_IPC_HANDLE_BYTES];   /* legacy key */
	char *base;                                  /* device */
	uint64_t size;                               /* mapped bytes */
	int refs;
};

namespace {

struct driver {
	PFN_cuMemGetAddressRange_v3020 get_range;
	PFN_cuMemImportFromShareableHandle_v10020 import;
	PFN_cuMemGetAllocationPropertiesFromHandle_v10020 props;
	PFN_cuMemGetAllocationGranularity_v10020 granularity;
	PFN_cuMemAddressReserve_v10020 reserve;
	PFN_cuMemAddressFree_v10020 addr_free;
	PFN_cuMemMap_v10020 map;
	PFN_cuMemUnmap_v10020 unmap;
	PFN_cuMemSetAccess_v10020 set_access;
	PFN_cuMemRelease_v10020 release;
};

bool sticky(cudaError_t e)
{
	return e == cudaErrorIllegalAddress || e == cudaErrorLaunchFailure ||
	       e == cudaErrorECCUncorrectable || e == cudaErrorHardwareStackError ||
	       e == cudaErrorIllegalInstruction || e == cudaErrorMisalignedAddress ||
	       e == cudaErrorInvalidAddressSpace || e == cudaErrorInvalidPc ||
	       e == cudaErrorAssert || e == cudaErrorContextIsDestroyed;
}

int cuda_rc(cudaError_t e)
{
	if (sticky(e))
		return -ENOTRECOVERABLE;
	(void)cudaGetLastError();
	return e == cudaErrorMemoryAllocation ? -ENOMEM : -EINVAL;
}

void say(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void say(char *err, size_t len, const char *fmt, ...)
{
	if (!err || !len)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

const char *cu_name(CUresult r)
{
	static const char unknown[] = "CUDA driver error";
	return r == CUDA_SUCCESS ? "success" : unknown;
}

/* offset + size inside [0, total), overflow-safe, size > 0 */
bool range_ok(uint64_t total, uint64_t offset, uint64_t size)
{
	return size > 0 && offset <= total && size <= total - offset;
}

} /* namespace */

struct vk_ipc_cache {
	pthread_mutex_t lock;
	struct vk_ipc_map *maps;
	int device;
	struct driver drv;
};

extern "C" vk_ipc_fn vk_ipc_driver_symbol(const char *name)
{
	void *fn = NULL;
	cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
	if (cudaGetDriverEntryPointByVersion(name, &fn, 12000, cudaEnableDefault, &q) !=
	    cudaSuccess || q != cudaDriverEntryPointSuccess) {
		(void)cudaGetLastError();
		return NULL;
	}
	return reinterpret_cast<vk_ipc_fn>(fn);
}

extern "C" int vk_ipc_cache_new(struct vk_ipc_cache **ret, char *err, size_t err_len)
{
	struct vk_ipc_cache *c = (struct vk_ipc_cache *)calloc(1, sizeof(*c));
	if (!c) {
		say(err, err_len, "out of memory");
		return -ENOMEM;
	}
	cudaError_t e = cudaGetDevice(&c->device);
	if (e != cudaSuccess) {
		say(err, err_len, "no CUDA device: %s", cudaGetErrorString(e));
		(void)cudaGetLastError();
		free(c);
		return -ENODEV;
	}
	struct driver *d = &c->drv;
	d->get_range = (PFN_cuMemGetAddressRange_v3020)vk_ipc_driver_symbol("cuMemGetAddressRange");
	d->import = (PFN_cuMemImportFromShareableHandle_v10020)vk_ipc_driver_symbol(
		"cuMemImportFromShareableHandle");
	d->props = (PFN_cuMemGetAllocationPropertiesFromHandle_v10020)vk_ipc_driver_symbol(
		"cuMemGetAllocationPropertiesFromHandle");
	d->granularity = (PFN_cuMemGetAllocationGranularity_v10020)vk_ipc_driver_symbol(
		"cuMemGetAllocationGranularity");
	d->reserve = (PFN_cuMemAddressReserve_v10020)vk_ipc_driver_symbol("cuMemAddressReserve");
	d->addr_free = (PFN_cuMemAddressFree_v10020)vk_ipc_driver_symbol("cuMemAddressFree");
	d->map = (PFN_cuMemMap_v10020)vk_ipc_driver_symbol("cuMemMap");
	d->unmap = (PFN_cuMemUnmap_v10020)vk_ipc_driver_symbol("cuMemUnmap");
	d->set_access = (PFN_cuMemSetAccess_v10020)vk_ipc_driver_symbol("cuMemSetAccess");
	d->release = (PFN_cuMemRelease_v10020)vk_ipc_driver_symbol("cuMemRelease");
	if (!d->get_range || !d->import || !d->props || !d->granularity || !d->reserve ||
	    !d->addr_free || !d->map || !d->unmap || !d->set_access || !d->release) {
		say(err, err_len, "CUDA driver entry points for IPC/VMM not available");
		free(c);
		return -ENODEV;
	}
	pthread_mutex_init(&c->lock, NULL);
	*ret = c;
	return 0;
}

static void map_close(struct vk_ipc_cache *c, struct vk_ipc_map *m)
{
	if (m->legacy) {
		cudaIpcCloseMemHandle(m->base);
	} else {
		c->drv.unmap((CUdeviceptr)(uintptr_t)m->base, m->size);
		c->drv.addr_free((CUdeviceptr)(uintptr_t)m->base, m->size);
	}
	free(m);
}

extern "C" void vk_ipc_cache_free(struct vk_ipc_cache *c)
{
	if (!c)
		return;
	while (c->maps) {
		struct vk_ipc_map *m = c->maps;
		c->maps = m->next;
		map_close(c, m);
	}
	pthread_mutex_destroy(&c->lock);
	free(c);
}

extern "C" int vk_ipc_cache_count(struct vk_ipc_cache *c)
{
	int n = 0;
	pthread_mutex_lock(&c->lock);
	for (struct vk_ipc_map *m = c->maps; m; m = m->next)
		n++;
	pthread_mutex_unlock(&c->lock);
	return n;
}

extern "C" int vk_ipc_open_legacy(struct vk_ipc_cache *c, const void *handle, uint64_t offset,
                                  uint64_t size, struct vk_ipc_map **ret_map, void **ret_ptr,
                                  char *err, size_t err_len)
{
	int rc = 0;
	pthread_mutex_lock(&c->lock);
	struct vk_ipc_map *m;
	for (m = c->maps; m; m = m->next)
		if (m->legacy && !memcmp(m->handle, handle, VK_IPC_HANDLE_BYTES))
			break;
	if (m) {
		if (!range_ok(m->size, offset, size)) {
			say(err, err_len, "range [%llu, +%llu) outside the %llu-byte allocation",
			    (unsigned long long)offset, (unsigned long long)size,
			    (unsigned long long)m->size);
			rc = -ERANGE;
			goto out;
		}
		m->refs++;
		goto done;
	}
	{
		cudaIpcMemHandle_t h;
		void *p = NULL;
		memcpy(&h, handle, sizeof(h));
		cudaError_t e = cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess);
		if (e != cudaSuccess) {
			say(err, err_len, "cudaIpcOpenMemHandle: %s", cudaGetErrorString(e));
			rc = cuda_rc(e);
			goto out;
		}
		CUdeviceptr base = 0;
		size_t total = 0;
		CUresult r = c->drv.get_range(&base, &total, (CUdeviceptr)(uintptr_t)p);
		if (r != CUDA_SUCCESS || base != (CUdeviceptr)(uintptr_t)p) {
			say(err, err_len, "cannot size the imported allocation (%s)", cu_name(r));
			cudaIpcCloseMemHandle(p);
			rc = -EINVAL;
			goto out;
		}
		if (!range_ok(total, offset, size)) {
			say(err, err_len, "range [%llu, +%llu) outside the %zu-byte allocation",
			    (unsigned long long)offset, (unsigned long long)size, total);
			cudaIpcCloseMemHandle(p);
			rc = -ERANGE;
			goto out;
		}
		m = (struct vk_ipc_map *)calloc(1, sizeof(*m));
		if (!m) {
			cudaIpcCloseMemHandle(p);
			say(err, err_len, "out of memory");
			rc = -ENOMEM;
			goto out;
		}
		m->legacy = 1;
		memcpy(m->handle, handle, VK_IPC_HANDLE_BYTES);
		m->base = (char *)p;
		m->size = total;
		m->refs = 1;
		m->next = c->maps;
		c->maps = m;
	}
done:
	*ret_map = m;
	*ret_ptr = m->base + offset;
out:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

extern "C" int vk_ipc_open_fd(struct vk_ipc_cache *c, int fd, uint64_t alloc_size,
                              uint64_t offset, uint64_t size, struct vk_ipc_map **ret_map,
                              void **ret_ptr, char *err, size_t err_len)
{
	const struct driver *d = &c->drv;
	CUmemGenericAllocationHandle h = 0;
	CUmemAllocationProp prop;
	CUdeviceptr ptr = 0;
	size_t gran = 0;
	struct vk_ipc_map *m = NULL;
	CUresult r;

	if (fd < 0 || !range_ok(alloc_size, offset, size)) {
		say(err, err_len, "fd %d: range [%llu, +%llu) outside the %llu-byte allocation", fd,
		    (unsigned long long)offset, (unsigned long long)size,
		    (unsigned long long)alloc_size);
		return -ERANGE;
	}
	r = d->import(&h, (void *)(uintptr_t)fd, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
	if (r != CUDA_SUCCESS) {
		say(err, err_len, "cuMemImportFromShareableHandle(fd %d) failed (%d)", fd, (int)r);
		return -EINVAL;
	}
	memset(&prop, 0, sizeof(prop));
	r = d->props(&prop, h);
	if (r == CUDA_SUCCESS)
		r = d->granularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM);
	if (r != CUDA_SUCCESS || gran == 0 || alloc_size % gran) {
		say(err, err_len, "allocation size %llu is not a multiple of the granularity %zu",
		    (unsigned long long)alloc_size, gran);
		d->release(h);
		return -EINVAL;
	}
	r = d->reserve(&ptr, alloc_size, 0, 0, 0);
	if (r != CUDA_SUCCESS) {
		say(err, err_len, "cuMemAddressReserve(%llu) failed (%d)",
		    (unsigned long long)alloc_size, (int)r);
		d->release(h);
		return -ENOMEM;
	}
	r = d->map(ptr, alloc_size, 0, h, 0);
	if (r != CUDA_SUCCESS) {
		say(err, err_len, "cuMemMap of %llu bytes failed (%d): larger than the allocation?",
		    (unsigned long long)alloc_size, (int)r);
		d->addr_free(ptr, alloc_size);
		d->release(h);
		return -EINVAL;
	}
	d->release(h);   /* the mapping holds the memory from now on */
	CUmemAccessDesc acc;
	memset(&acc, 0, sizeof(acc));
	acc.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	acc.location.id = c->device;
	acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	r = d->set_access(ptr, alloc_size, &acc, 1);
	if (r != CUDA_SUCCESS) {
		say(err, err_len, "cuMemSetAccess failed (%d)", (int)r);
		d->unmap(ptr, alloc_size);
		d->addr_free(ptr, alloc_size);
		return -EINVAL;
	}
	m = (struct vk_ipc_map *)calloc(1, sizeof(*m));
	if (!m) {
		d->unmap(ptr, alloc_size);
		d->addr_free(ptr, alloc_size);
		say(err, err_len, "out of memory");
		return -ENOMEM;
	}
	m->legacy = 0;
	m->base = (char *)(uintptr_t)ptr;
	m->size = alloc_size;
	m->refs = 1;
	pthread_mutex_lock(&c->lock);
	m->next = c->maps;
	c->maps = m;
	pthread_mutex_unlock(&c->lock);
	*ret_map = m;
	*ret_ptr = m->base + offset;
	return 0;
}

extern "C" void vk_ipc_release(struct vk_ipc_cache *c, struct vk_ipc_map *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&c->lock);
	if (--m->refs > 0) {
		pthread_mutex_unlock(&c->lock);
		return;
	}
	for (struct vk_ipc_map **pp = &c->maps; *pp; pp = &(*pp)->next)
		if (*pp == m) {
			*pp = m->next;
			break;
		}
	pthread_mutex_unlock(&c->lock);
	map_close(c, m);
}
