/*
 * daemon/engine/mm_import.c — wire items to the backend's import ops (daemon/engine/mm_import.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon/engine/mm_import.h"

struct vd_mm_import {
	struct vk_backend *be;
};

_Static_assert(sizeof(((struct vs_mm_item *)0)->ipc_handle) == VK_IMPORT_HANDLE_BYTES,
	       "IPC handle size");

int vd_mm_import_new(struct vk_backend *be, struct vd_mm_import **ret, char *err, size_t errlen)
{
	struct vd_mm_import *im;

	*ret = NULL;
	if (!be->ops->import_tensor || !be->ops->release_tensor || !be->ops->import_count) {
		snprintf(err, errlen, "backend %s reads no client GPU memory", be->ops->name);
		return -ENOTSUP;
	}
	im = calloc(1, sizeof(*im));
	if (!im) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	im->be = be;
	*ret = im;
	return 0;
}

void vd_mm_import_free(struct vd_mm_import *im)
{
	free(im);
}

int vd_mm_import_open(struct vd_mm_import *im, const struct vs_mm_item *it, int vmm_fd,
		      void **ret_ref, const void **ret_data, char *err, size_t errlen)
{
	struct vk_import d = { .handle = it->ipc_handle, .fd = vmm_fd, .alloc_bytes = it->alloc_bytes,
			       .offset = it->data_off, .bytes = it->data_bytes };

	switch (it->device) {
	case VS_DEV_CUDA_IPC:
		d.kind = VK_IMPORT_CUDA_IPC;
		break;
	case VS_DEV_CUDA_VMM:
		d.kind = VK_IMPORT_CUDA_VMM;
		break;
	default:
		snprintf(err, errlen, "not a CUDA item");
		return -ENOTSUP;
	}
	return im->be->ops->import_tensor(im->be, &d, ret_ref, ret_data, err, errlen);
}

void vd_mm_import_release(struct vd_mm_import *im, void *ref)
{
	if (im && ref)
		im->be->ops->release_tensor(im->be, ref);
}

int vd_mm_import_count(struct vd_mm_import *im)
{
	return im ? im->be->ops->import_count(im->be) : 0;
}
