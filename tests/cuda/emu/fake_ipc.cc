/*
 * tests/cuda/emu/fake_ipc.cc — kernels/cuda/ipc.h for the emulated CUDA backend: the emulator has
 * no driver and no other process's device memory, so the IPC cache cannot be created and the
 * emulated backend refuses clients' GPU tensors with that reason (as a machine without a driver).
 */
#include <errno.h>
#include <stdio.h>

#include "kernels/cuda/ipc.h"

extern "C" {

int vk_ipc_cache_new(struct vk_ipc_cache **ret, char *err, size_t err_len)
{
	*ret = NULL;
	snprintf(err, err_len, "CUDA IPC is not emulated");
	return -ENODEV;
}

void vk_ipc_cache_free(struct vk_ipc_cache *) {}

int vk_ipc_cache_count(struct vk_ipc_cache *)
{
	return 0;
}

int vk_ipc_open_legacy(struct vk_ipc_cache *, const void *, uint64_t, uint64_t, struct vk_ipc_map **,
                       void **, char *err, size_t err_len)
{
	snprintf(err, err_len, "CUDA IPC is not emulated");
	return -ENOTSUP;
}

int vk_ipc_open_fd(struct vk_ipc_cache *, int, uint64_t, uint64_t, uint64_t, struct vk_ipc_map **,
                   void **, char *err, size_t err_len)
{
	snprintf(err, err_len, "CUDA IPC is not emulated");
	return -ENOTSUP;
}

void vk_ipc_release(struct vk_ipc_cache *, struct vk_ipc_map *) {}

} /* extern "C" */
