/*
 * daemon/engine/mm_import.c — wire items to kernels/cuda/ipc.h mappings (daemon/engine/mm_import.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "daemon/engine/mm_import.h"

#if VLM_HAVE_CUDA
#include "kernels/cuda/ipc.h"

struct vd_mm_import {
	struct vk_ipc_cache *cache;
};

int vd_mm_import_new(struct vd_mm_import **ret, char *err, size_t errlen)
{
	struct vd_mm_import *im = calloc(1, sizeof(*im));
	int e;

	if (!im) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	e = vk_ipc_cache_new(&im->cache, err, errlen);
	if (e < 0) {
		free(im);
		return e;
	}
	*ret = im;
	return 0;
}

void vd_mm_import_free(struct vd_mm_import *im)
{
	if (!im)
		return;
	vk_ipc_cache_free(im->cache);
	free(im);
}

int vd_mm_import_open(struct vd_mm_import *im, const struct vs_mm_item *it, int vmm_fd,
		      void **ret_ref, const void **ret_data, char *err, size_t errlen)
{
	struct vk_ipc_map *m = NULL;
	void *p = NULL;
	int e;

	_Static_assert(sizeof(it->ipc_handle) == VK_IPC_HANDLE_BYTES, "IPC handle size");
	switch (it->device) {
	case VS_DEV_CUDA_IPC:
		e = vk_ipc_open_legacy(im->cache, it->ipc_handle, it->data_off, it->data_bytes, &m, &p,
				       err, errlen);
		break;
	case VS_DEV_CUDA_VMM:
		if (vmm_fd < 0) {
			snprintf(err, errlen, "VMM item without its descriptor");
			return -EBADF;
		}
		e = vk_ipc_open_fd(im->cache, vmm_fd, it->alloc_bytes, it->data_off, it->data_bytes, &m,
				   &p, err, errlen);
		break;
	default:
		snprintf(err, errlen, "not a CUDA item");
		return -ENOTSUP;
	}
	if (e < 0)
		return e;
	*ret_ref = m;
	*ret_data = p;
	return 0;
}

void vd_mm_import_release(struct vd_mm_import *im, void *ref)
{
	if (im && ref)
		vk_ipc_release(im->cache, ref);
}

int vd_mm_import_count(struct vd_mm_import *im)
{
	return im ? vk_ipc_cache_count(im->cache) : 0;
}

#else /* !VLM_HAVE_CUDA */

int vd_mm_import_new(struct vd_mm_import **ret, char *err, size_t errlen)
{
	*ret = NULL;
	snprintf(err, errlen, "vlmd built without CUDA");
	return -ENOTSUP;
}

void vd_mm_import_free(struct vd_mm_import *im)
{
	(void)im;
}

int vd_mm_import_open(struct vd_mm_import *im, const struct vs_mm_item *it, int vmm_fd,
		      void **ret_ref, const void **ret_data, char *err, size_t errlen)
{
	(void)im, (void)it, (void)vmm_fd, (void)ret_ref, (void)ret_data;
	snprintf(err, errlen, "vlmd built without CUDA");
	return -ENOTSUP;
}

void vd_mm_import_release(struct vd_mm_import *im, void *ref)
{
	(void)im, (void)ref;
}

int vd_mm_import_count(struct vd_mm_import *im)
{
	(void)im;
	return 0;
}

#endif
