/*
 * tools/npy.h — parser of NumPy's .npy header (format versions 1.0, 2.0 and 3.0).
 *
 * A pure function over a memory buffer, like daemon/model/safetensors.h: no I/O, so it can be tested with
 * hand-made buffers and fed hostile files. It understands exactly what np.save writes: the magic,
 * the version, the header length, and the Python dict literal with 'descr', 'fortran_order' and
 * 'shape'. It does not evaluate Python: it reads those three keys and rejects anything else, so a
 * file cannot make it do more than say "bad header".
 */
#ifndef VLM_TOOLS_NPY_H
#define VLM_TOOLS_NPY_H

#include <stddef.h>
#include <stdint.h>

#define NPY_MAX_DIMS 8

enum npy_dtype {
	NPY_UNSUPPORTED = 0, /* a descr this parser does not hand out (still parsed: see descr) */
	NPY_F32,             /* '<f4' */
	NPY_F16,             /* '<f2' */
	NPY_F64,             /* '<f8' */
	NPY_BF16,            /* '<V2' / '|V2': NumPy has no bfloat16, and an array of ml_dtypes'
			      * bfloat16 (what torch/JAX users export) is saved as 2-byte void */
};

struct npy_info {
	enum npy_dtype dtype;
	char descr[16];              /* as written, for error messages */
	int ndim;
	int64_t shape[NPY_MAX_DIMS];
	size_t data_off;             /* first data byte in the buffer */
	size_t data_bytes;           /* product(shape) * element size, checked against the buffer */
};

/* Size in bytes of one element; 0 for NPY_UNSUPPORTED. */
size_t npy_dtype_size(enum npy_dtype dt);

/*
 * Parse the .npy file held in buf[0, len). On success fills *out and returns 0. Fails with
 * -EBADMSG (not a .npy file, malformed header, Fortran order, big-endian or unknown descr, shape
 * overflowing, data shorter than the shape says) and writes a message into err[err_len].
 */
int npy_parse(const void *buf, size_t len, struct npy_info *out, char *err, size_t err_len);

#endif /* VLM_TOOLS_NPY_H */
