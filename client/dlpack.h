/*
 * client/dlpack.h — taking DLPack tensors in: ownership, validation, a normalized description.
 *
 * Every tensor the application hands over becomes a struct vc_tensor at once, before any lock is
 * taken and before anything else is looked at, so ownership is settled in one place: from then
 * on exactly one vc_tensor_release() calls the producer's deleter. The description keeps only
 * what the wire needs ([rows, cols] rows of one dtype, a row stride in bytes, where the memory
 * lives); every layout the wire cannot express is refused here, with a message, before anything
 * is sent.
 *
 * Both DLPack ABIs are accepted: DLManagedTensor (0.x, the Debian 12 header) and
 * DLManagedTensorVersioned (1.x). The versioned struct is mirrored below (struct
 * vc_dl_versioned, checked against the real type when the header has it), so the library offers
 * the same entry points whichever header it was built with.
 */
#ifndef VLM_CLIENT_DLPACK_H
#define VLM_CLIENT_DLPACK_H

#include <stdint.h>

#include <dlpack/dlpack.h>

/* DLManagedTensorVersioned of DLPack 1.x, byte for byte. */
struct vc_dl_versioned {
	struct {
		uint32_t major, minor;
	} version;
	void *manager_ctx;
	void (*deleter)(struct vc_dl_versioned *self);
	uint64_t flags;
	DLTensor dl_tensor;
};

enum vc_mem { VC_MEM_HOST = 0, VC_MEM_CUDA = 1 };

/* A tensor owned by the library, and what it describes. */
struct vc_tensor {
	void *managed;               /* the DLManagedTensor(Versioned); NULL once released */
	int versioned;
	struct vc_tensor *next;      /* link of a deferred-release list (client/api.c) */
	int mem;                     /* enum vc_mem */
	int device_id;               /* DLDevice.device_id */
	uint8_t dtype;               /* enum vs_dtype */
	uint32_t rows, cols;         /* [rows, cols] */
	uint64_t row_stride;         /* bytes between rows (>= cols * element size) */
	uint64_t data_bytes;         /* (rows - 1) * row_stride + cols * element size */
	const unsigned char *data;   /* first element (data + byte_offset) */
};

/*
 * Takes ownership of a DLManagedTensor (versioned = 0) or a struct vc_dl_versioned
 * (versioned = 1) and describes it. On success *ret is a new vc_tensor owning the tensor (free
 * with vc_tensor_release). On failure the tensor's deleter has been called (when it has one)
 * and the thread's last-error message says why. managed NULL: -EINVAL, nothing to delete.
 * Returns 0, -EINVAL (shape, NULL data), -ENOTSUP (dtype, device, ndim, strides, DLPack major
 * version), -ENOMEM.
 */
int vc_tensor_take(void *managed, int versioned, struct vc_tensor **ret);

/* Calls the tensor's deleter (once; not again after a previous release) and frees t. NULL is a
 * no-op. Must not be called with a library lock held (the deleter may call into the library). */
void vc_tensor_release(struct vc_tensor *t);

/* Calls the deleter of a tensor that was never taken (argument errors before vc_tensor_take). */
void vc_tensor_drop(void *managed, int versioned);

#endif /* VLM_CLIENT_DLPACK_H */
