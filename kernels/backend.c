/*
 * kernels/backend.c — the backend registry: name -> backend, the VLM_BACKEND override, and the
 * small helpers every backend shares (dtype table, error text).
 *
 * Why: callers (daemon, tools, tests) name a backend once and never include a backend's own
 * header. CPU is compiled in unconditionally and is the last resort of "auto", so a build or a
 * machine without a GPU always gets a working backend. The CUDA backend is linked in only when
 * kernels/cuda/ was built (VK_WITH_CUDA).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/ref/ref_backend.h"
#ifdef VK_WITH_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

size_t vk_dtype_size(enum vk_dtype dtype)
{
	switch (dtype) {
	case VK_DTYPE_F32: return 4;
	case VK_DTYPE_F16: return 2;
	case VK_DTYPE_BF16: return 2;
	case VK_DTYPE_Q8:
	case VK_DTYPE_Q4: return 0;   /* no per-element size: see struct vk_quant_src */
	}
	return 0;
}

const char *vk_dtype_name(enum vk_dtype dtype)
{
	switch (dtype) {
	case VK_DTYPE_F32: return "f32";
	case VK_DTYPE_F16: return "f16";
	case VK_DTYPE_BF16: return "bf16";
	case VK_DTYPE_Q8: return "q8";
	case VK_DTYPE_Q4: return "q4";
	}
	return "?";
}

int vk_backend_set_error(struct vk_backend *be, int err, const char *fmt, ...)
{
	va_list ap;

	if (be) {
		va_start(ap, fmt);
		vsnprintf(be->error, sizeof(be->error), fmt, ap);
		va_end(ap);
	}
	return err;
}

const char *vk_backend_error(const struct vk_backend *be)
{
	return be ? be->error : "";
}

void vk_backend_free(struct vk_backend *be)
{
	if (be && be->ops && be->ops->destroy)
		be->ops->destroy(be);
}

static int open_cuda(struct vk_backend **ret, char *err, size_t err_len)
{
#ifdef VK_WITH_CUDA
	return vk_cuda_backend_open(ret, err, err_len);
#else
	snprintf(err, err_len, "backend \"cuda\": this build has no CUDA support");
	*ret = NULL;
	return -ENODEV;
#endif
}

int vk_backend_check_abi(const struct vk_backend *be, char *err, size_t err_len)
{
	if (be && be->ops && be->ops->abi == VK_BACKEND_ABI)
		return 0;
	if (err && err_len)
		snprintf(err, err_len, "backend \"%s\": table ABI %u, this build expects %u",
			 be && be->ops && be->ops->name ? be->ops->name : "?",
			 be && be->ops ? be->ops->abi : 0u, (unsigned)VK_BACKEND_ABI);
	return -EPROTO;
}

static int open_named(const char *name, struct vk_backend **ret, char *err, size_t err_len);

int vk_backend_open(const char *name, struct vk_backend **ret, char *err, size_t err_len)
{
	char scratch[8];
	int r;

	if (!err || err_len == 0) {
		err = scratch;
		err_len = sizeof(scratch);
	}
	r = open_named(name, ret, err, err_len);
	if (r >= 0 && vk_backend_check_abi(*ret, err, err_len) < 0) {
		vk_backend_free(*ret);
		*ret = NULL;
		return -EPROTO;
	}
	return r;
}

static int open_named(const char *name, struct vk_backend **ret, char *err, size_t err_len)
{
	int r;

	err[0] = '\0';
	if (!ret)
		return -EINVAL;
	*ret = NULL;

	if (!name || strcmp(name, "auto") == 0) {
		const char *env = getenv("VLM_BACKEND");
		name = (env && env[0]) ? env : "auto";
	}

	if (strcmp(name, "cpu") == 0)
		return vk_cpu_backend_open(ret, err, err_len);
	if (strcmp(name, "ref") == 0)
		return vk_ref_backend_open(ret, err, err_len);
	if (strcmp(name, "cuda") == 0)
		return open_cuda(ret, err, err_len);
	if (strcmp(name, "auto") == 0) {
		r = open_cuda(ret, err, err_len);
		if (r >= 0)
			return r;
		err[0] = '\0';
		return vk_cpu_backend_open(ret, err, err_len);
	}
	snprintf(err, err_len, "unknown backend \"%s\" (expected auto, cpu, cuda or ref)", name);
	return -ENOENT;
}

int vk_host_alloc(struct vk_backend *be, size_t bytes, void **ret_ptr)
{
	size_t sz = (bytes + 63) & ~(size_t)63;
	void *p = aligned_alloc(64, sz ? sz : 64);
	if (!p)
		return vk_backend_set_error(be, -ENOMEM, "alloc: out of memory (%zu bytes)", bytes);
	*ret_ptr = p;
	return 0;
}

void vk_host_free(struct vk_backend *be, void *ptr)
{
	(void)be;
	free(ptr);
}

int vk_host_copy(struct vk_backend *be, void *dst, const void *src, size_t bytes)
{
	(void)be;
	if (bytes)
		memcpy(dst, src, bytes);
	return 0;
}
