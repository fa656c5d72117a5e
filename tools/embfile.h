/*
 * tools/embfile.h — an embedding tensor [rows, hidden] from a file, as a DLPack tensor.
 *
 * vlm-generate reads the output of a vision encoder that someone saved to disk: NumPy's .npy
 * (np.save) or safetensors (one named tensor of a file). Either way the result is a host
 * DLManagedTensor exactly like the ones an application hands to libvlmclient, so the tool goes
 * through the same public intake path as every other client. float64 files are converted to
 * float32 (the wire carries f32/f16/bf16 only); leading dimensions of size 1 are dropped
 * ([1, rows, hidden] -> [rows, hidden]); anything that is not then 2-D is refused.
 */
#ifndef VLM_TOOLS_EMBFILE_H
#define VLM_TOOLS_EMBFILE_H

#include <stddef.h>

#include <dlpack/dlpack.h>

/*
 * Loads spec: "FILE.npy", "FILE.safetensors" (the file must hold exactly one tensor) or
 * "FILE.safetensors:TENSOR". The format is taken from the file's first bytes, not its name.
 * On success *ret is a new kDLCPU, C-contiguous, 2-D tensor owned by the caller: hand it to a
 * consumer that calls its deleter, or call (*ret)->deleter(*ret). Returns 0, or a negative errno
 * (-ENOENT, -EACCES, ... opening the file; -EBADMSG malformed; -ENOTSUP unsupported dtype or shape;
 * -ENOMEM) with a message naming the file in err[err_len].
 */
int emb_load(const char *spec, DLManagedTensor **ret, char *err, size_t err_len);

#endif /* VLM_TOOLS_EMBFILE_H */
