/*
 * daemon/model/safetensors.h — parser of the safetensors container header.
 *
 * A pure function over a memory buffer (the whole file, normally mmap'd): it does no I/O, so it can
 * be fuzzed directly and tested with hand-made buffers. It validates everything a hostile or broken
 * file can get wrong before any tensor byte is touched: header length, JSON syntax, entry types,
 * dtype names, shapes (overflow-checked), data_offsets inside the data area, byte size matching
 * shape x dtype, and no two tensors overlapping. Unknown dtypes are recorded, not rejected, so the
 * caller can say "tensor X has unsupported dtype Y" when (and only if) it needs that tensor.
 */
#ifndef VLM_DAEMON_SAFETENSORS_H
#define VLM_DAEMON_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define VD_ST_MAX_DIMS 8
#define VD_ST_MAX_HEADER (100u << 20)   /* the reference implementation's limit */

enum vd_st_dtype {
	VD_ST_UNKNOWN = 0,
	VD_ST_F64, VD_ST_F32, VD_ST_F16, VD_ST_BF16,
	VD_ST_I64, VD_ST_I32, VD_ST_I16, VD_ST_I8, VD_ST_U8, VD_ST_BOOL,
	VD_ST_F8_E4M3, VD_ST_F8_E5M2,
};

struct vd_st_tensor {
	char *name;                     /* owned by the vd_st */
	enum vd_st_dtype dtype;
	char dtype_name[16];            /* as written in the file (for error messages) */
	int32_t ndim;
	int64_t shape[VD_ST_MAX_DIMS];
	uint64_t begin, end;            /* byte range relative to the data area */
	const void *data;               /* buf + 8 + header_len + begin (borrowed from the buffer) */
};

struct vd_st {
	size_t n;                       /* tensors */
	struct vd_st_tensor *t;         /* [n], sorted by name */
	uint64_t header_len;
	uint64_t data_len;              /* bytes after the header */
};

/* Bytes per element of a dtype; 0 for VD_ST_UNKNOWN. */
size_t vd_st_dtype_size(enum vd_st_dtype dt);

/* Parse the safetensors file held in buf[0, len). On success *ret is a new table (free with
 * vd_st_free) whose data pointers borrow buf: buf must outlive it. On failure returns -EINVAL
 * (malformed: truncated, bad JSON, bad entry, overlapping or out-of-range offsets), -E2BIG (header
 * over VD_ST_MAX_HEADER) or -ENOMEM, with a message in err. The "__metadata__" entry is skipped. */
int vd_st_parse(const void *buf, size_t len, struct vd_st **ret, char *err, size_t err_len);

/* x_free(NULL) is a no-op. */
void vd_st_free(struct vd_st *st);

/* The tensor named name, or NULL. Borrowed from st. */
const struct vd_st_tensor *vd_st_find(const struct vd_st *st, const char *name);

#endif /* VLM_DAEMON_SAFETENSORS_H */
