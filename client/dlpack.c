/*
 * client/dlpack.c — DLPack intake (client/dlpack.h).
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include "client/dlpack.h"
#include "client/vlmerr.h"
#include "shm/wire.h"

#if defined(DLPACK_MAJOR_VERSION) && DLPACK_MAJOR_VERSION >= 1
_Static_assert(sizeof(struct vc_dl_versioned) == sizeof(DLManagedTensorVersioned),
	       "vc_dl_versioned size");
_Static_assert(offsetof(struct vc_dl_versioned, deleter) ==
	       offsetof(DLManagedTensorVersioned, deleter), "vc_dl_versioned.deleter");
_Static_assert(offsetof(struct vc_dl_versioned, dl_tensor) ==
	       offsetof(DLManagedTensorVersioned, dl_tensor), "vc_dl_versioned.dl_tensor");
#endif

static const char *device_name(int type)
{
	switch (type) {
	case kDLCPU: return "cpu";
	case kDLCUDA: return "cuda";
	case kDLCUDAHost: return "cuda_host";
	case kDLCUDAManaged: return "cuda_managed";
	case kDLROCM: return "rocm";
	case kDLROCMHost: return "rocm_host";
	case kDLOpenCL: return "opencl";
	case kDLVulkan: return "vulkan";
	case kDLMetal: return "metal";
	default: return "other";
	}
}

static const char *code_name(unsigned code)
{
	switch (code) {
	case kDLInt: return "int";
	case kDLUInt: return "uint";
	case kDLFloat: return "float";
	case kDLBfloat: return "bfloat";
	case kDLComplex: return "complex";
	default: return "type";
	}
}

static void drop_deleter(void *managed, int versioned)
{
	char saved[VC_ERR_LEN];

	vc_err_save(saved);
	if (versioned) {
		struct vc_dl_versioned *v = managed;

		if (v->deleter)
			v->deleter(v);
	} else {
		DLManagedTensor *m = managed;

		if (m->deleter)
			m->deleter(m);
	}
	vc_err_restore(saved);
}

void vc_tensor_drop(void *managed, int versioned)
{
	if (managed)
		drop_deleter(managed, versioned);
}

/* Fill t from dl; returns 0 or a negative errno with the message set. */
static int describe(const DLTensor *dl, struct vc_tensor *t)
{
	int64_t rows, cols, rs = 0, cs = 1;
	unsigned esz;
	int nd = dl->ndim;

	if (dl->dtype.lanes != 1)
		return vc_err(-ENOTSUP, "tensor dtype has %u lanes: need scalar elements",
			      dl->dtype.lanes);
	if (dl->dtype.code == kDLFloat && dl->dtype.bits == 32)
		t->dtype = VS_DTYPE_F32;
	else if (dl->dtype.code == kDLFloat && dl->dtype.bits == 16)
		t->dtype = VS_DTYPE_F16;
	else if (dl->dtype.code == kDLBfloat && dl->dtype.bits == 16)
		t->dtype = VS_DTYPE_BF16;
	else
		return vc_err(-ENOTSUP, "tensor dtype %s%u not supported: need float16, bfloat16 or "
			      "float32", code_name(dl->dtype.code), dl->dtype.bits);
	esz = vs_dtype_size(t->dtype);
	switch (dl->device.device_type) {
	case kDLCPU:
	case kDLCUDAHost:
		t->mem = VC_MEM_HOST;
		break;
	case kDLCUDA:
		t->mem = VC_MEM_CUDA;
		break;
	default:
		return vc_err(-ENOTSUP, "tensor device %s not supported: need cpu, cuda_host or cuda",
			      device_name(dl->device.device_type));
	}
	t->device_id = dl->device.device_id;
	if (nd != 2 && nd != 3)
		return vc_err(-ENOTSUP, "tensor has %d dimensions: need [rows, cols] or "
			      "[1, rows, cols]", nd);
	if (!dl->shape)
		return vc_err(-EINVAL, "tensor has no shape");
	if (nd == 3 && dl->shape[0] != 1)
		return vc_err(-ENOTSUP, "3-D tensor with leading dimension %lld: need [1, rows, cols]",
			      (long long)dl->shape[0]);
	rows = dl->shape[nd - 2];
	cols = dl->shape[nd - 1];
	if (rows <= 0 || cols <= 0 || rows > UINT32_MAX || cols > UINT32_MAX)
		return vc_err(-EINVAL, "tensor shape [%lld, %lld] out of range",
			      (long long)rows, (long long)cols);
	if (dl->strides) {
		rs = dl->strides[nd - 2];
		cs = dl->strides[nd - 1];
	} else {
		rs = cols;
	}
	/* a dimension of size 1 may carry any stride (PyTorch and NumPy normalize them freely) */
	if (cols == 1)
		cs = 1;
	if (rows == 1)
		rs = cols;
	if (cs != 1)
		return vc_err(-ENOTSUP, "tensor columns are not contiguous (stride %lld): rows must "
			      "be contiguous; make the tensor contiguous first", (long long)cs);
	if (rs < cols)
		return vc_err(-ENOTSUP, "tensor row stride %lld is smaller than a row (%lld): "
			      "transposed or overlapping layouts are not supported",
			      (long long)rs, (long long)cols);
	if ((uint64_t)rs > UINT64_MAX / esz / 2)
		return vc_err(-EINVAL, "tensor row stride %lld out of range", (long long)rs);
	t->rows = (uint32_t)rows;
	t->cols = (uint32_t)cols;
	t->row_stride = (uint64_t)rs * esz;
	if ((uint64_t)(rows - 1) > (UINT64_MAX - (uint64_t)cols * esz) / t->row_stride)
		return vc_err(-EINVAL, "tensor size overflows");
	t->data_bytes = (uint64_t)(rows - 1) * t->row_stride + (uint64_t)cols * esz;
	if (!dl->data)
		return vc_err(-EINVAL, "tensor data pointer is NULL");
	if (dl->byte_offset > UINTPTR_MAX - (uintptr_t)dl->data)
		return vc_err(-EINVAL, "tensor byte_offset out of range");
	t->data = (const unsigned char *)dl->data + dl->byte_offset;
	return 0;
}

int vc_tensor_take(void *managed, int versioned, struct vc_tensor **ret)
{
	const DLTensor *dl;
	struct vc_tensor *t;
	int e;

	*ret = NULL;
	if (!managed)
		return vc_err(-EINVAL, "tensor is NULL");
	if (versioned) {
		struct vc_dl_versioned *v = managed;

		if (v->version.major != 1) {
			e = vc_err(-ENOTSUP, "DLPack major version %u not supported: need 1",
				   v->version.major);
			drop_deleter(managed, versioned);
			return e;
		}
		dl = &v->dl_tensor;
	} else {
		dl = &((DLManagedTensor *)managed)->dl_tensor;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		drop_deleter(managed, versioned);
		return vc_err(-ENOMEM, "out of memory");
	}
	t->managed = managed;
	t->versioned = versioned;
	e = describe(dl, t);
	if (e) {
		vc_tensor_release(t);
		return e;
	}
	*ret = t;
	return 0;
}

void vc_tensor_release(struct vc_tensor *t)
{
	if (!t)
		return;
	if (t->managed)
		drop_deleter(t->managed, t->versioned);
	free(t);
}
