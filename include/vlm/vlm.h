/*
 * include/vlm/vlm.h — libvlmclient: talk to vlmd, the local vision-language model daemon.
 *
 * An application connects to vlmd (vlm_connect), builds a request from token ids, generation
 * parameters and zero or more embedding tensors passed as DLPack tensors (vlm_request_*),
 * submits it without blocking (vlm_submit) and reads the generated tokens as they stream in
 * (vlm_stream_read), blocking with a timeout, non-blocking, or driven by its own poll/epoll loop
 * (vlm_conn_fd). Requests and completions travel through lock-free rings in shared memory;
 * host tensors travel through the connection's shared arena (copied once, or read in place when
 * allocated there with vlm_host_alloc), GPU tensors travel zero-copy as CUDA IPC handles.
 *
 *     struct vlm_conn *conn;
 *     struct vlm_request *req;
 *     int32_t prompt[] = { 151644, 872, 198 }, out[64];
 *     int n;
 *
 *     if (vlm_connect(NULL, &conn) < 0) ...                       (vlm_last_error() says why)
 *     vlm_request_new(conn, &req);
 *     vlm_request_set_tokens(req, prompt, 3);
 *     vlm_submit(req);
 *     while ((n = vlm_stream_read(req, out, 64, -1)) > 0)
 *             ... out[0..n) are the next tokens ...
 *     n == 0: finished, vlm_request_finish_info(req, &info); n < 0: failed (vlm_last_error()
 *     says why, with vlmd's reason when vlmd refused it: vlm_request_error_message(req))
 *     vlm_request_free(req);
 *     vlm_disconnect(conn);
 *
 * ---- Conventions ----------------------------------------------------------------------------
 *
 * Return values: functions returning int give >= 0 on success and a negative errno on failure.
 * On failure a readable description of the latest failure of the calling thread is available from
 * vlm_last_error() (thread-local). The errno values carry these meanings throughout:
 *
 *   -EINVAL        from a building or submitting call: bad argument (NULL where an object is
 *                  needed, value out of range, wrong call order), nothing was sent to vlmd; from
 *                  vlm_stream_read: vlmd refused the request as invalid (token id outside the
 *                  vocabulary, placeholder runs, tensor widths or grids not matching the prompt
 *                  or the model; vlm_request_error_message says which)
 *   -ENOTSUP       a tensor the library cannot pass (dtype, device, layout): nothing was sent;
 *                  from vlm_stream_read: vlmd cannot read that tensor or serve the request
 *   -ENOENT, -ECONNREFUSED   no vlmd listening at the socket path
 *   -EACCES        vlmd refused this user (allow-list)
 *   -EPROTONOSUPPORT   vlmd speaks no protocol version this library speaks
 *   -EBUSY         vlm_connect: vlmd has its maximum number of clients; vlm_stream_read: vlmd's
 *                  queue of waiting requests is full (max-waiting): retry later
 *   -ESHUTDOWN     vlm_stream_read: vlmd is draining or shutting down and takes no new requests
 *   -ETIMEDOUT     a timeout given to the call passed
 *   -EAGAIN        would block: submission ring full (retry after reading completions), or no
 *                  tokens yet for a non-blocking read
 *   -ENOSPC        the shared arena has no free extent large enough now (requests in flight hold
 *                  it: retry after they finish, or connect with a larger arena_bytes); from
 *                  vlm_stream_read: the request needs more KV cache than vlmd has in all (it can
 *                  never run: fewer tokens, or a vlmd with more kv-memory)
 *   -E2BIG         larger than the whole arena / more items, tokens or stop ids than vlmd allows;
 *                  from vlm_stream_read: prompt + max_tokens longer than vlmd's max-model-len
 *   -ECONNRESET    vlmd went away without a word (crashed, killed): every request in flight on
 *                  the connection fails with it; connect again (vlm_connect) to continue.
 *                  Where this table says -ECONNRESET for a lost vlmd, a vlmd that said why it
 *                  closed the connection gives instead:
 *   -ESHUTDOWN     ... it shut down cleanly (SIGTERM, vlmctl shutdown); also: vlmd is draining
 *   -ECONNABORTED  ... it dropped this connection: its completions went unread (the client looked
 *                  hung: client-timeout without a heartbeat), vlmctl disconnect, or a protocol
 *                  error; vlm_request_error_message says which
 *   -ENOTCONN      the connection was closed by vlm_disconnect
 *   -EOPNOTSUPP    (the same value as -ENOTSUP on Linux) from vlm_stream_read: vlmd cannot serve
 *                  this request (e.g. no model loaded)
 *   -ENODEV        a CUDA tensor was given but no CUDA driver/device is usable in this process
 *   -ENOMEM        out of memory
 *   other          a failure reported by vlmd for one request, delivered by vlm_stream_read
 *
 * When vlmd refuses or fails a request it says why in a short text, e.g. "prompt 90+max_tokens
 * 40 > max-model-len 128": vlm_request_error_message() returns it, and vlm_last_error() after the
 * failing vlm_stream_read includes it.
 *
 * Thread-safety: a connection may be used from any number of threads at once. Internally one
 * mutex guards the submission ring, the arena allocator and the completion demultiplexer, which
 * routes every completion to its request's own queue; one thread at a time waits on the
 * completion ring and wakes the others. A request object is used by one thread at a time
 * (build, submit, read, free), except vlm_cancel(), which any thread may call at any time until
 * vlm_request_free(). Different requests may be read by different threads concurrently.
 *
 * Ownership: objects returned through `ret` out-parameters are owned by the caller and released
 * with the function named in their comment. Freeing NULL is always a no-op.
 *
 * Tensors (DLPack): passing a DLManagedTensor to vlm_request_add_tensor() hands it to the library
 * whether the call succeeds or fails; the library calls its deleter exactly once:
 *   - host tensors that were copied into the arena: as soon as the copy is made (inside the call);
 *   - tensors read in place (arena memory from vlm_host_alloc, CUDA memory): when vlmd reports it
 *     no longer reads the tensor, when the request ends, when vlmd is lost, when the unsubmitted
 *     request is freed, or at the latest in vlm_disconnect();
 *   - immediately, when the call fails.
 * A deleter may run on any thread that calls into the library for the connection (the thread
 * that happens to route vlmd's "released" completion), never with a library lock held, so it may
 * call back into the library. It must not free the request or connection it belongs to.
 *
 * Device memory ordering: vlmd reads a CUDA tensor on its own stream, with no event from the
 * client. The writes that produced the tensor must therefore be complete before vlm_submit():
 * synchronize the producing stream (cudaStreamSynchronize) first. Host tensors are read at
 * vlm_request_add_tensor() (copied) or by vlmd after vlm_submit() (in place): do not modify an
 * in-place tensor until its deleter ran.
 *
 * Everything here exists since 0.2 unless noted.
 */
#ifndef VLM_VLM_H
#define VLM_VLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dlpack/dlpack.h>

#include "vlm/export.h"
#include "vlm/version.h"

#ifdef __cplusplus
extern "C" {
#endif

struct vlm_conn;
struct vlm_request;

/* DLPack >= 1.0 headers have DLManagedTensorVersioned; Debian 12's dlpack 0.6 does not. The
 * library accepts both whichever header it was built with; the versioned entry point is declared
 * only when the application's header has the type. */
#if defined(DLPACK_MAJOR_VERSION) && DLPACK_MAJOR_VERSION >= 1
#define VLM_HAVE_DLPACK_VERSIONED 1
#else
#define VLM_HAVE_DLPACK_VERSIONED 0
#endif

/* ---- errors --------------------------------------------------------------------------------- */

/*
 * Describes a negative (or positive) errno value as returned by this library: a constant string,
 * worded for vlmd where the value has a vlmd-specific meaning (see the table above), else the C
 * library's description. Where a value can come from the library or from vlmd, the text names
 * both; the specific reason of one failure is in vlm_last_error() and, for a request vlmd
 * refused, vlm_request_error_message(). Never NULL. Thread-safe.
 */
VLM_EXPORT const char *vlm_strerror(int err);

/*
 * The message of the latest failure of a vlm_* call in the calling thread (e.g. "tensor dtype
 * int8 not supported: need float16, bfloat16 or float32"), or "" when there was none. The string
 * is thread-local, owned by the library, valid until the thread's next vlm_* call. Thread-safe.
 */
VLM_EXPORT const char *vlm_last_error(void);

/* ---- connections ---------------------------------------------------------------------------- */

/* Options of vlm_connect. Zero-initialize, then set what you need: zero means "default" in every
 * field, and new fields will come out of the reserved space (which must stay zero). */
struct vlm_connect_opts {
	const char *socket_path;     /* NULL: $VLM_SOCKET if set, else the build's default
				      * (/run/vlmd/vlmd.sock) */
	const char *client_name;     /* shown by vlmctl (at most 31 bytes kept); NULL: the program's
				      * name */
	int connect_timeout_ms;      /* handshake; 0: 5000 */
	int close_timeout_ms;        /* how long vlm_disconnect waits for vlmd to stop reading
				      * tensors of cancelled requests; 0: 2000 */
	uint64_t arena_bytes;        /* wanted size of the shared arena (rounded up to a power of
				      * two, clamped by vlmd); 0: vlmd's default (16 MiB) */
	uint32_t sq_entries;         /* submission ring size; 0: vlmd's default (256) */
	uint32_t cq_entries;         /* completion ring size; 0: vlmd's default (1024) */
	uint64_t reserved[8];
};

/*
 * Connects to vlmd. opts may be NULL (all defaults). On success *ret is a new connection, owned
 * by the caller (close with vlm_disconnect). On failure *ret is NULL and vlm_last_error() holds
 * vlmd's refusal message or a description.
 * Returns 0, -EINVAL, -ENOENT / -ECONNREFUSED (no vlmd), -EACCES, -EPROTONOSUPPORT, -EBUSY,
 * -ETIMEDOUT, -ENAMETOOLONG (socket path), -EPROTO (not a vlmd socket), -ENOMEM.
 * Thread-safe. After vlmd restarted, calling vlm_connect again gives a working connection in the
 * same process.
 */
VLM_EXPORT int vlm_connect(const struct vlm_connect_opts *opts, struct vlm_conn **ret);

/*
 * Closes a connection: cancels every request still in flight, waits up to close_timeout_ms for
 * vlmd to stop reading their tensors, runs every pending tensor deleter, then unmaps the shared
 * memory (memory from vlm_host_alloc becomes invalid) and closes the socket. Requests of the
 * connection stay valid objects that must still be freed with vlm_request_free (reads of
 * requests that were in flight return -ENOTCONN, other calls on them fail). NULL is a no-op.
 * No other thread may use the connection or its requests during the call; afterwards the
 * connection handle is gone.
 */
VLM_EXPORT void vlm_disconnect(struct vlm_conn *conn);

/*
 * 1 while the connection works, 0 once vlmd was found gone. vlmd's loss is noticed by reads
 * and vlm_conn_process (within 100 ms of waiting or polling). Thread-safe.
 */
VLM_EXPORT int vlm_conn_alive(struct vlm_conn *conn);

/*
 * Size of the connection's shared arena in bytes, as granted by vlmd. Thread-safe.
 */
VLM_EXPORT uint64_t vlm_conn_arena_bytes(struct vlm_conn *conn);

/* What the connection's data path did so far (vlm_conn_stats). */
struct vlm_conn_stats {
	uint64_t requests_submitted;
	uint64_t tensors_copied;     /* host tensors copied into the shared arena */
	uint64_t bytes_copied;       /* ... and their bytes */
	uint64_t tensors_in_place;   /* tensors vlmd read where they were (arena memory, CUDA) */
	uint64_t tensors_cuda;       /* ... of which CUDA tensors */
	uint64_t images_preprocessed; /* vlm_request_add_image_file / _memory / _rgb (and
				      * vlm_request_add_video_files: a video counts as one)
				      * preprocessed an image straight into the arena (since 0.3) */
	uint64_t images_reused;      /* ... found it preprocessed already (the connection keeps
				      * recent images in its arena; since 0.3) */
	uint64_t reserved[5];
};

/*
 * Fills *out with the connection's counters (since vlm_connect). Returns 0 or -EINVAL.
 * Thread-safe.
 */
VLM_EXPORT int vlm_conn_stats(struct vlm_conn *conn, struct vlm_conn_stats *out);

/* ---- event-loop integration ----------------------------------------------------------------- */

/*
 * A file descriptor that becomes readable (POLLIN / EPOLLIN, level-triggered) when completions
 * may be waiting, for applications with their own poll/epoll loop. It is owned by the connection
 * (do not read or close it). Use it like this:
 *
 *     for (;;) {
 *             if (vlm_conn_arm(conn) == 0)       (0: armed, nothing pending: sleep)
 *                     poll({fd, POLLIN}) ...
 *             vlm_conn_process(conn);            (route completions, clear the fd)
 *             while ((req = vlm_conn_next_ready(conn)))
 *                     vlm_stream_read(req, ..., 0) until -EAGAIN ...
 *     }
 *
 * Returns the fd (>= 0), -EINVAL, -ENOTCONN. Thread-safe.
 */
VLM_EXPORT int vlm_conn_fd(struct vlm_conn *conn);

/*
 * Asks vlmd to make vlm_conn_fd() readable on its next completion. Returns 1 when completions or
 * routed events are already waiting (do not sleep; call vlm_conn_process), 0 when armed,
 * -EINVAL, -ECONNRESET / -ENOTCONN. Thread-safe.
 */
VLM_EXPORT int vlm_conn_arm(struct vlm_conn *conn);

/*
 * Without blocking: takes every completion from the ring, routes it to its request (tensor
 * deleters may run here), and clears the fd. Returns the number of completions routed (>= 0),
 * -ECONNRESET when vlmd was lost (every request then fails with -ECONNRESET), -ENOTCONN,
 * -EINVAL. When another thread is already waiting on the ring, returns 0 at once: that thread
 * routes. Thread-safe.
 */
VLM_EXPORT int vlm_conn_process(struct vlm_conn *conn);

/*
 * Next request that received events (tokens, finish, error) since it was last returned here, in
 * the order they became ready, or NULL. The request stays owned by the caller. Thread-safe.
 */
VLM_EXPORT struct vlm_request *vlm_conn_next_ready(struct vlm_conn *conn);

/* ---- shared-arena host memory (zero-copy host tensors) -------------------------------------- */

/*
 * Allocates bytes of host memory inside the connection's shared arena (64-byte aligned). A
 * tensor whose data lies in such a block is read by vlmd in place: no copy is made when it is
 * passed to vlm_request_add_tensor(). On success *ret points to the block, owned by the caller:
 * free it with vlm_host_free() once no tensor over it is in flight (its deleter ran). Blocks
 * become invalid at vlm_disconnect().
 * Returns 0, -EINVAL (0 bytes), -ENOSPC (no free extent that large now), -E2BIG (larger than the
 * arena), -ECONNRESET / -ENOTCONN. Thread-safe.
 */
VLM_EXPORT int vlm_host_alloc(struct vlm_conn *conn, size_t bytes, void **ret);

/*
 * Frees a block from vlm_host_alloc. NULL is a no-op. Not after vlm_disconnect (the handle is
 * gone; the blocks went with the arena). Returns 0 or -EINVAL (not a block of this connection,
 * or freed twice). Thread-safe.
 */
VLM_EXPORT int vlm_host_free(struct vlm_conn *conn, void *ptr);

/* Element types of embedding tensors. */
enum vlm_dtype {
	VLM_DTYPE_F32 = 0,
	VLM_DTYPE_F16 = 1,
	VLM_DTYPE_BF16 = 2,
};

/*
 * Allocates a [rows, cols] tensor of dtype in the shared arena and wraps it as a DLPack tensor
 * (kDLCPU, compact, row-major). Fill ret->dl_tensor.data, then pass it to
 * vlm_request_add_tensor(): it is read in place. Its deleter frees the arena block and the
 * wrapper; call it yourself (ret->deleter(ret)) if you do not pass the tensor on.
 * Returns 0, -EINVAL, -ENOSPC, -E2BIG, -ECONNRESET / -ENOTCONN, -ENOMEM. Thread-safe.
 */
VLM_EXPORT int vlm_host_tensor_new(struct vlm_conn *conn, enum vlm_dtype dtype, uint32_t rows,
				   uint32_t cols, DLManagedTensor **ret);

/* ---- requests: building --------------------------------------------------------------------- */

/*
 * Creates an empty request on conn. On success *ret is owned by the caller (vlm_request_free).
 * The request holds a reference on the connection's bookkeeping, so it may outlive
 * vlm_disconnect (then every operation on it fails with -ENOTCONN).
 * Returns 0, -EINVAL, -ENOTCONN, -ECONNRESET, -ENOMEM. Thread-safe with respect to conn.
 */
VLM_EXPORT int vlm_request_new(struct vlm_conn *conn, struct vlm_request **ret);

/*
 * Frees a request. If it is still in flight it is cancelled first; the library keeps what vlmd
 * may still read (arena space, in-place tensors) until vlmd reports the request finished, and
 * runs the remaining deleters then (or at vlm_disconnect). The cancel reaches vlmd even if the
 * connection is not read afterwards (a full completion ring does not hold it back); only when
 * the submission ring itself is full is it owed, and sent by the next read that routes
 * completions (so a connection whose requests are all freed is best read until they end, or
 * closed). NULL is a no-op. No other thread may use the request during or after the call.
 */
VLM_EXPORT void vlm_request_free(struct vlm_request *req);

/*
 * Sets the prompt token ids (n >= 1, each >= 0; copied into the shared arena, so the caller keeps
 * ids). Replaces earlier tokens. Only before vlm_submit.
 * Returns 0, -EINVAL (NULL, n == 0, negative id, already submitted), -E2BIG (more than vlmd's
 * limit of 1 Mi tokens), -ENOSPC, -ENOTCONN / -ECONNRESET, -ENOMEM.
 */
VLM_EXPORT int vlm_request_set_tokens(struct vlm_request *req, const int32_t *ids, size_t n);

/* Generation parameters. Zero-initialize, then set what you need: zero means "default" in every
 * field (vlmd's default for max_tokens, greedy sampling, no penalties), and new fields will come
 * out of the reserved space (which must stay zero). */
struct vlm_gen_params {
	uint32_t max_tokens;         /* most tokens to generate; 0: vlmd's default */
	uint32_t min_tokens;         /* EOS and stop ids are ignored before this many */
	float temperature;           /* 0: greedy (argmax) */
	int32_t top_k;               /* 0: off */
	float top_p;                 /* 0 or 1: off */
	float min_p;                 /* 0: off */
	float repetition_penalty;    /* 0 or 1: off */
	float frequency_penalty;     /* 0: off */
	float presence_penalty;      /* 0: off */
	int32_t priority;            /* higher runs first when vlmd schedules by priority; 0 = FCFS */
	uint64_t seed;               /* sampling seed, used when has_seed */
	bool has_seed;               /* false: vlmd seeds the request itself */
	bool ignore_eos;             /* keep generating after EOS (benchmarks) */
	bool logprobs;               /* report each token's log-probability (vlm_request_logprob) */
	uint8_t top_logprobs;        /* with logprobs: alternatives per token, 0..20 */
	const int32_t *stop_ids;     /* generation stops after any of these ids (copied) */
	uint32_t n_stop_ids;         /* at most 64 */
	uint32_t reserved32;
	uint64_t reserved[6];
};

/*
 * Sets the generation parameters (copied; params may be freed after the call). Without this
 * call every parameter has its default. Only before vlm_submit.
 * Returns 0, -EINVAL (NaN/infinite or negative values where not allowed, top_p or min_p outside
 * [0, 1], top_logprobs > 20, stop ids NULL with n_stop_ids > 0 or negative, nonzero reserved
 * fields, already submitted), -E2BIG (more than 64 stop ids), -ENOSPC, -ENOTCONN, -ENOMEM.
 */
VLM_EXPORT int vlm_request_set_params(struct vlm_request *req, const struct vlm_gen_params *params);

/* What a request asks vlmd to do. */
enum vlm_request_kind {
	VLM_REQUEST_GENERATE = 0,    /* generate with the loaded model (the default) */
	VLM_REQUEST_ECHO = 1,        /* diagnostics, no model needed: vlmd streams the prompt tokens
				      * back, releases the tensors and finishes (reason STOP) */
};

/* Sets the request kind. Only before vlm_submit. Returns 0 or -EINVAL. */
VLM_EXPORT int vlm_request_set_kind(struct vlm_request *req, enum vlm_request_kind kind);

/* Description of one multimodal item (one image or video's embedding rows). */
struct vlm_mm_info {
	int32_t placeholder_id;      /* token id of the placeholder run this tensor fills: the k-th
				      * tensor added with an id fills the k-th run of that id */
	uint32_t grid_t, grid_h, grid_w; /* M-RoPE grid (t, h, w) after the spatial merge, so
				      * t*h*w == rows; all 0: not given, which only models without
				      * M-RoPE accept (rows positioned like text tokens); Qwen2-VL
				      * models refuse the request (-EINVAL) */
	const uint8_t *fingerprint;  /* content identity for prefix-cache reuse (e.g. a hash of the
				      * image), or NULL; copied */
	size_t fingerprint_len;      /* 0, 16 or 32 bytes */
	uint64_t reserved[4];
};

/*
 * Adds an embedding tensor [rows, cols] (or [1, rows, cols]) that vlmd writes over the tokens of
 * a placeholder run. The library takes ownership of tensor in every case, success or failure
 * (see "Tensors" above): the caller must not touch it afterwards.
 * Accepted: dtype float16, bfloat16 or float32 (one lane); row-major with contiguous rows (the
 * innermost stride 1, any row stride >= cols); devices:
 *   kDLCPU, kDLCUDAHost — copied into the shared arena now (row-strided rows are packed), and the
 *     deleter runs before the call returns; or, when the data lies inside this connection's arena
 *     (vlm_host_alloc / vlm_host_tensor_new), read in place by vlmd without any copy;
 *   kDLCUDA — zero copy: passed to vlmd as a CUDA IPC handle of its allocation (or, for memory
 *     from cuMemCreate with POSIX-fd export enabled, as a file descriptor); the CUDA driver is
 *     loaded on first use. The producing stream must be synchronized before vlm_submit.
 * Everything else is refused before anything is sent, with a description in vlm_last_error().
 * Only before vlm_submit; at most 256 tensors per request.
 * Returns 0, -EINVAL (NULL, shape/grid/fingerprint wrong, already submitted, not a CUDA pointer),
 * -ENOTSUP (dtype, device, layout, CUDA memory that can be shared neither by IPC nor as a POSIX
 * fd), -ENOSPC / -E2BIG (arena), -ENODEV (CUDA tensor, no usable driver), -EBUSY (64 VMM tensors
 * in flight on the connection), -EIO (a CUDA driver call failed), -ENOTCONN / -ECONNRESET,
 * -ENOMEM.
 */
VLM_EXPORT int vlm_request_add_tensor(struct vlm_request *req, const struct vlm_mm_info *info,
				      DLManagedTensor *tensor);

#if VLM_HAVE_DLPACK_VERSIONED
/*
 * As vlm_request_add_tensor for a DLPack >= 1.0 versioned tensor (major version 1; the
 * read-only flag is fine, vlmd only reads). A tensor of another major version is refused with
 * -ENOTSUP (its deleter still runs).
 */
VLM_EXPORT int vlm_request_add_tensor_versioned(struct vlm_request *req,
						const struct vlm_mm_info *info,
						DLManagedTensorVersioned *tensor);
#endif

/* ---- images and videos: preprocessing in the client, the vision tower in vlmd ------------- */

/*
 * Images are decoded, resized, normalized and cut into patches here, in the client process,
 * exactly as transformers' Qwen2VLImageProcessor does by default (bit-identical pixel values);
 * vlmd runs the vision tower on the patches. A struct vlm_image is one preprocessed image or
 * video: pixel patches [t*h*w, 3*temporal_patch*patch^2] in 2x2 merge-block order plus its patch
 * grid (t, h, w). Untrusted bytes are never decoded inside vlmd.
 */
struct vlm_image;

/* The checkpoint's preprocessing constants (preprocessor_config.json). */
struct vlm_vision_config {
	uint32_t patch_size;          /* 14 */
	uint32_t temporal_patch_size; /* 2 */
	uint32_t merge_size;          /* 2 */
	uint64_t min_pixels;          /* 3136 (56*56) */
	uint64_t max_pixels;          /* 12845056 (16384*28*28) */
	float image_mean[3];          /* OPENAI_CLIP_MEAN */
	float image_std[3];           /* OPENAI_CLIP_STD */
	uint64_t reserved[4];
};

/* Fills cfg with Qwen2-VL-2B-Instruct's values (above). Since 0.3. */
VLM_EXPORT void vlm_vision_config_default(struct vlm_vision_config *cfg);
/*
 * Reads model_dir/preprocessor_config.json into cfg (fields it lacks keep the defaults above).
 * Returns 0, -ENOENT (no such file), -EBADMSG (not valid JSON or a wrong value; vlm_last_error()
 * says which), -EINVAL, -ENOMEM. Since 0.3.
 */
VLM_EXPORT int vlm_vision_config_load(const char *model_dir, struct vlm_vision_config *cfg);

/*
 * The pixel dtype that matches the checkpoint's vision tower: VLM_DTYPE_BF16 when
 * model_dir/config.json says the weights are bfloat16 ("torch_dtype", or transformers 5's
 * "dtype"; text_config's value first, as vlmd reads it), else VLM_DTYPE_F32 (float32, float16,
 * absent). transformers casts pixel_values to the tower's dtype before the patch embedding
 * (`pixel_values.type(self.visual.dtype)`), so for a bf16 checkpoint bf16 patches (the float32
 * values rounded to nearest even) are exactly what the reference computes with, in half the
 * bytes. Returns 0 (*dtype set), -ENOENT (no config.json; *dtype = VLM_DTYPE_F32), -EBADMSG (not
 * valid JSON), -EINVAL (NULL arguments). Since 0.3.
 */
VLM_EXPORT int vlm_vision_pixel_dtype(const char *model_dir, enum vlm_dtype *dtype);

/* Per-image options; zero-initialised = the defaults noted per field. */
struct vlm_image_opts {
	uint64_t min_pixels;          /* 0: cfg->min_pixels */
	uint64_t max_pixels;          /* 0: cfg->max_pixels */
	uint64_t max_source_pixels;   /* refuse a source image with more pixels than this before
				       * decoding it (decompression bombs); 0: 178956970 (PIL's limit) */
	enum vlm_dtype dtype;         /* pixel values VLM_DTYPE_F32 (default) or VLM_DTYPE_BF16
				       * (vlm_vision_pixel_dtype: the checkpoint's choice) */
	uint64_t reserved[4];
};

/*
 * Decodes an image file (JPEG, PNG, WebP; the format is sniffed from the bytes), applies the EXIF
 * orientation, converts to RGB (alpha composited on white), resizes with smart_resize and
 * preprocesses it. cfg NULL = vlm_vision_config_default; opts NULL = defaults. On success *ret
 * owns a new image (vlm_image_free). Returns 0, -EINVAL (bad arguments), -ENOENT / -EACCES (file),
 * -ENOTSUP (not a supported format), -EBADMSG (corrupt or truncated data), -E2BIG (more source
 * pixels than max_source_pixels), -ERANGE (aspect ratio over 200), -ENOMEM; vlm_last_error() says
 * why. Thread-safe. Since 0.3.
 */
VLM_EXPORT int vlm_image_load_file(const char *path, const struct vlm_vision_config *cfg,
				   const struct vlm_image_opts *opts, struct vlm_image **ret);
/* As vlm_image_load_file for an encoded image in memory (len bytes, not kept). Since 0.3. */
VLM_EXPORT int vlm_image_load_memory(const void *data, size_t len,
				     const struct vlm_vision_config *cfg,
				     const struct vlm_image_opts *opts, struct vlm_image **ret);
/* As vlm_image_load_file for decoded 8-bit RGB pixels (height rows of row_stride bytes, 3 bytes
 * per pixel, not kept). Since 0.3. */
VLM_EXPORT int vlm_image_from_rgb(const uint8_t *rgb, uint32_t width, uint32_t height,
				  size_t row_stride, const struct vlm_vision_config *cfg,
				  const struct vlm_image_opts *opts, struct vlm_image **ret);
/*
 * A video from n_frames decoded RGB frames (each width x height, row_stride bytes per row), as
 * transformers' Qwen2VLVideoProcessor does with frames already sampled: every frame resized to
 * the same smart_resize target, the frame count padded to a multiple of temporal_patch_size by
 * repeating the last frame, grid_t = frames / temporal_patch_size. The pixel bounds are the
 * image ones (opts, else cfg, NULL = the image defaults); the frame rate counts as unknown (24).
 * vlm_video_from_frames below also samples and knows the video's rate. Returns as
 * vlm_image_load_file. Since 0.3.
 */
VLM_EXPORT int vlm_video_from_rgb(const uint8_t *const *frames, size_t n_frames, uint32_t width,
				  uint32_t height, size_t row_stride,
				  const struct vlm_vision_config *cfg,
				  const struct vlm_image_opts *opts, struct vlm_image **ret);
/* As vlm_video_from_rgb with each frame decoded from an image file. Since 0.3. */
VLM_EXPORT int vlm_video_load_files(const char *const *paths, size_t n_frames,
				    const struct vlm_vision_config *cfg,
				    const struct vlm_image_opts *opts, struct vlm_image **ret);

/*
 * Videos with frame sampling, as transformers' Qwen2VLVideoProcessor with the video's metadata
 * (do_sample_frames=True, VideoMetadata(total_num_frames, fps)) and Qwen2_5_VLProcessor's
 * second_per_grid_ts. Zero-initialised = keep every frame given, frame rate unknown.
 */
struct vlm_video_opts {
	double source_fps;     /* frame rate of the frames passed (VideoMetadata.fps); 0: unknown,
				* then the sampled rate counts as 24 (transformers' fallback) */
	double fps;            /* keep this many frames per second of video (needs source_fps):
				* n = clamp(frames / source_fps * fps, min_frames, max_frames),
				* floored to a multiple of temporal_patch_size; 0: off */
	uint32_t num_frames;   /* keep this many frames (rounded half-to-even to a multiple of
				* temporal_patch_size); 0: off; not together with fps */
	uint32_t min_frames;   /* fps sampling bounds: 0 = 4 / 768 (the class defaults) */
	uint32_t max_frames;
	uint32_t max_video_tokens; /* transformers' cap_pixels_per_frame=True with this
				* max_video_tokens (its default: 128000): each kept frame's max_pixels
				* becomes max(min(max_pixels, int(T * factor^2 * 0.9) * temporal_patch /
				* frames), int(1.05 * min_pixels)); 0: no total cap (5.25's default) */
	uint64_t reserved[4];
};

/* Fills cfg with Qwen2VLVideoProcessor's class defaults: the image ones (vlm_vision_config_
 * default) except 128*28*28 .. 768*28*28 pixels per frame. Since 0.3. */
VLM_EXPORT void vlm_video_config_default(struct vlm_vision_config *cfg);
/*
 * The checkpoint's video processor settings, from the first of model_dir/processor_config.json
 * (its "video_processor" object), video_preprocessor_config.json, preprocessor_config.json (so a
 * checkpoint with only the image file gets the image's pixel bounds for frames, as in
 * transformers), over vlm_video_config_default. vopts (may be NULL) gets min/max_frames, with
 * "cap_pixels_per_frame": true its max_video_tokens (default 128000) and, when the file says
 * "do_sample_frames": true, its fps / num_frames. Returns as
 * vlm_vision_config_load (-ENOENT: none of the three files). Since 0.3.
 */
VLM_EXPORT int vlm_video_config_load(const char *model_dir, struct vlm_vision_config *cfg,
				     struct vlm_video_opts *vopts);
/*
 * The frames a video of total_frames keeps (transformers' sample_frames: indices =
 * torch.arange(0, total, total / n).int()), written to indices [room for total_frames], their
 * count to *n, and the sampled frame rate (kept / total * source_fps, or 24 when source_fps is
 * 0) to *sampled_fps (may be NULL). For a caller that decodes a video itself: decode only these
 * frames, then pass them to vlm_video_from_frames with source_fps = *sampled_fps and no
 * sampling. Returns 0, -EINVAL (bad options: both fps and num_frames, fps without source_fps;
 * more frames asked than there are; nothing to keep), -E2BIG (over 2^20 frames). Since 0.3.
 */
VLM_EXPORT int vlm_video_sample(size_t total_frames, uint32_t temporal_patch_size,
				const struct vlm_video_opts *vopts, uint32_t *indices, size_t *n,
				double *sampled_fps);
/*
 * A video from n_frames decoded RGB frames of one size: the frames vopts keeps
 * (vlm_video_sample; NULL = all), each resized to the same smart_resize target with the per-frame
 * pixel bounds of opts, else cfg (NULL = vlm_video_config_default), padded to a multiple of
 * temporal_patch_size by repeating the last, grid_t = frames / temporal_patch_size; the image
 * records temporal_patch_size / sampled fps (vlm_video_second_per_grid). pixel_values and grid
 * are bit-identical to Qwen2VLVideoProcessor's pixel_values_videos / video_grid_thw. Returns as
 * vlm_image_load_file, and as vlm_video_sample. Since 0.3.
 */
VLM_EXPORT int vlm_video_from_frames(const uint8_t *const *frames, size_t n_frames,
				     uint32_t width, uint32_t height, size_t row_stride,
				     const struct vlm_vision_config *cfg,
				     const struct vlm_image_opts *opts,
				     const struct vlm_video_opts *vopts, struct vlm_image **ret);
/* As vlm_video_from_frames with frame k decoded from the image file paths[k]; only the kept
 * frames are read. Since 0.3. */
VLM_EXPORT int vlm_video_load_frames(const char *const *paths, size_t n_frames,
				     const struct vlm_vision_config *cfg,
				     const struct vlm_image_opts *opts,
				     const struct vlm_video_opts *vopts, struct vlm_image **ret);
/* A video's seconds per temporal grid step, temporal_patch_size / sampled fps (transformers'
 * second_per_grid_ts; Qwen2.5-VL spaces the video's temporal positions by it times
 * tokens_per_second); vlm_request_add_image sends it with the video. 0 for an image. Since 0.3. */
VLM_EXPORT double vlm_video_second_per_grid(const struct vlm_image *img);

/* Frees an image; NULL is a no-op. Since 0.3. */
VLM_EXPORT void vlm_image_free(struct vlm_image *img);
/* The patch grid (t, h, w): HF's image_grid_thw / video_grid_thw. Since 0.3. */
VLM_EXPORT void vlm_image_grid(const struct vlm_image *img, uint32_t grid_thw[3]);
/* The number of placeholder tokens the image needs: t*h*w / merge_size^2. Since 0.3. */
VLM_EXPORT uint32_t vlm_image_tokens(const struct vlm_image *img);
/* True for a video (vlm_video_*). Since 0.3. */
VLM_EXPORT bool vlm_image_is_video(const struct vlm_image *img);
/* The pixel patches, owned by img: *rows = t*h*w, *cols = 3*temporal_patch*patch^2, row-major in
 * *dtype. Since 0.3. */
VLM_EXPORT const void *vlm_image_pixels(const struct vlm_image *img, enum vlm_dtype *dtype,
					size_t *rows, size_t *cols);
/*
 * Adds a preprocessed image or video to a request: its patches are copied into the connection's
 * arena now (img stays the caller's) and vlmd runs the vision tower on them, filling the k-th
 * run of placeholder_id (<|image_pad|> 151655 or <|video_pad|> 151656 for Qwen2-VL), which must
 * be vlm_image_tokens(img) long; a video also carries vlm_video_second_per_grid(img) (Qwen2.5-VL
 * positions), so give a video the video pad. Pixel values that are NaN or infinite are refused
 * (-EINVAL, nothing sent; vlmd checks again). Only before vlm_submit. Returns 0, -EINVAL,
 * -ENOSPC / -E2BIG (arena), -ENOTCONN, -ENOMEM. Since 0.3.
 */
VLM_EXPORT int vlm_request_add_image(struct vlm_request *req, int32_t placeholder_id,
				     const struct vlm_image *img);
/*
 * Decodes and preprocesses an image file (as vlm_image_load_file) straight into the connection's
 * arena and adds it to the request like vlm_request_add_image: no intermediate buffer and no
 * copy (the cheaper way when the image goes to vlmd anyway). grid_thw (may be NULL) receives the
 * patch grid and *tokens (may be NULL) the placeholder run length it needs; the prompt may be
 * set before or after. The connection keeps recently preprocessed images in its arena (a quarter
 * of it at most, and never at the expense of a request: they give way when the arena is full),
 * keyed by the SHA-256 of the source bytes (the file's content, not its name) and every setting
 * that shapes the patches: adding the same image again (the next turn of a conversation) reuses
 * them without decoding or copying (vlm_conn_stats: images_preprocessed / images_reused). A tool
 * that needs the grid before it can build the prompt asks vlm_image_probe_file (the header
 * only) and adds the image once the prompt is set. Returns what vlm_image_load_file
 * and vlm_request_add_image return; on an error nothing is added and the request stays usable.
 * Since 0.3.
 */
VLM_EXPORT int vlm_request_add_image_file(struct vlm_request *req, int32_t placeholder_id,
					  const char *path, const struct vlm_vision_config *cfg,
					  const struct vlm_image_opts *opts, uint32_t grid_thw[3],
					  uint32_t *tokens);
/* As vlm_request_add_image_file for an encoded image in memory (len bytes, not kept). */
VLM_EXPORT int vlm_request_add_image_memory(struct vlm_request *req, int32_t placeholder_id,
					    const void *data, size_t len,
					    const struct vlm_vision_config *cfg,
					    const struct vlm_image_opts *opts, uint32_t grid_thw[3],
					    uint32_t *tokens);
/* As vlm_request_add_image_file for decoded 8-bit RGB pixels (as vlm_image_from_rgb: height rows
 * of row_stride bytes, 3 bytes per pixel, not kept). Since 0.3. */
VLM_EXPORT int vlm_request_add_image_rgb(struct vlm_request *req, int32_t placeholder_id,
					 const uint8_t *rgb, uint32_t width, uint32_t height,
					 size_t row_stride, const struct vlm_vision_config *cfg,
					 const struct vlm_image_opts *opts, uint32_t grid_thw[3],
					 uint32_t *tokens);

/*
 * A video from frame image files (as vlm_video_load_frames: the frames vopts keeps, NULL = all;
 * frame k decoded from paths[k]; per-frame pixel bounds of opts, else cfg, NULL cfg =
 * vlm_video_config_default; opts->dtype) preprocessed straight into the connection's arena and
 * added to the request like vlm_request_add_image with the video's second_per_grid_ts: no
 * intermediate buffer and no copy. Only the kept frames are read and decoded. The patches are
 * bit-identical to vlm_video_load_frames' with the same arguments. grid_thw / tokens (may be
 * NULL) as vlm_request_add_image_file; give it the video pad (151656 for Qwen2-VL). The
 * connection's memo keeps the video like an image, keyed by the SHA-256 of the kept frames' bytes
 * (in order) and every setting that shapes the patches or the item (sampling included), so
 * adding the same video again reads the kept files and hashes them but decodes nothing
 * (vlm_conn_stats: images_preprocessed / images_reused count videos too). Returns what
 * vlm_video_load_frames and vlm_request_add_image return (-ENOENT and the like naming the
 * missing frame file; -EINVAL for bad sampling options, with the reason); on an error nothing is
 * added and the request stays usable. Since 0.3.
 */
VLM_EXPORT int vlm_request_add_video_files(struct vlm_request *req, int32_t placeholder_id,
					   const char *const *paths, size_t n_frames,
					   const struct vlm_vision_config *cfg,
					   const struct vlm_image_opts *opts,
					   const struct vlm_video_opts *vopts,
					   uint32_t grid_thw[3], uint32_t *tokens);

/*
 * A video from decoded RGB frames (as vlm_video_from_frames: frames[k] is height rows of
 * row_stride bytes, 3 bytes per pixel, all of one size; the frames vopts keeps, NULL = all;
 * per-frame pixel bounds of opts, else cfg, NULL cfg = vlm_video_config_default; opts->dtype)
 * preprocessed straight into the connection's arena and added to the request like
 * vlm_request_add_image with the video's second_per_grid_ts: no intermediate buffer and no copy
 * (vlm_conn_stats: tensors_copied stays). The patches are bit-identical to vlm_video_from_frames'
 * with the same arguments. The memo keeps it like vlm_request_add_video_files' videos, keyed by
 * the SHA-256 of the kept frames' pixel rows, their size and every setting. grid_thw / tokens
 * (may be NULL) as vlm_request_add_image_file; give it the video pad. Returns what
 * vlm_video_from_frames and vlm_request_add_image return; on an error nothing is added and the
 * request stays usable. Since 0.3.
 */
VLM_EXPORT int vlm_request_add_video_rgb(struct vlm_request *req, int32_t placeholder_id,
					 const uint8_t *const *frames, size_t n_frames,
					 uint32_t width, uint32_t height, size_t row_stride,
					 const struct vlm_vision_config *cfg,
					 const struct vlm_image_opts *opts,
					 const struct vlm_video_opts *vopts,
					 uint32_t grid_thw[3], uint32_t *tokens);

/*
 * Grids before preprocessing. A prompt holds t*h*w / merge_size^2 placeholder tokens per image
 * or video, so it can only be built once every grid is known, i.e. before the request that
 * carries the media. These calls give the grid (t, h, w) and that token count (either pointer may
 * be NULL) without decoding: from the encoded image's header (JPEG SOF and APP1 Exif orientation,
 * PNG IHDR and an eXIf chunk before the image data, WebP's features and EXIF chunk; EXIF
 * orientations 5..8 swap width and height), or from the given size, with smart_resize under the
 * same configuration and options. The answer equals the grid that preprocessing the same source
 * with the same arguments gives (vlm_image_load_* / vlm_request_add_image_* / vlm_video_* /
 * vlm_request_add_video_*), and so do the errors of the checks that come before decoding: the
 * file, the options, the format and the header (named by the file's path, with the decoder's
 * text), the source-pixel limit, the aspect ratio. A file whose header the libraries do not read
 * cleanly (or a PNG whose eXIf chunk follows the image data) is decoded here to answer exactly:
 * an error is then the decoder's own. What only decoding finds (data damaged after the header,
 * video frames of different sizes) is reported by the preprocessing call that follows. So a tool
 * probes every medium, builds the prompt, then adds each medium to the request once (straight
 * into the arena): one decode per medium per request, whatever the memo keeps.
 * Returns 0, or the errno of the load it stands for (-EINVAL, -ENOENT / -EACCES, -ENOTSUP,
 * -EBADMSG, -E2BIG, -ERANGE, -ENOMEM) with vlm_last_error() saying why. Thread-safe; no
 * connection needed. Since 0.3.
 */
/* An image file (as vlm_image_load_file / vlm_request_add_image_file). */
VLM_EXPORT int vlm_image_probe_file(const char *path, const struct vlm_vision_config *cfg,
				    const struct vlm_image_opts *opts, uint32_t grid_thw[3],
				    uint32_t *tokens);
/* An encoded image in memory (as vlm_image_load_memory / vlm_request_add_image_memory). */
VLM_EXPORT int vlm_image_probe_memory(const void *data, size_t len,
				      const struct vlm_vision_config *cfg,
				      const struct vlm_image_opts *opts, uint32_t grid_thw[3],
				      uint32_t *tokens);
/* Decoded RGB pixels of width x height (as vlm_image_from_rgb / vlm_request_add_image_rgb). */
VLM_EXPORT int vlm_image_probe_size(uint32_t width, uint32_t height,
				    const struct vlm_vision_config *cfg,
				    const struct vlm_image_opts *opts, uint32_t grid_thw[3],
				    uint32_t *tokens);
/* A video of frame files (as vlm_video_load_frames / vlm_request_add_video_files: sampling
 * first, every kept frame opened (never read), then the first kept frame's header; cfg NULL =
 * vlm_video_config_default). */
VLM_EXPORT int vlm_video_probe_files(const char *const *paths, size_t n_frames,
				     const struct vlm_vision_config *cfg,
				     const struct vlm_image_opts *opts,
				     const struct vlm_video_opts *vopts, uint32_t grid_thw[3],
				     uint32_t *tokens);
/* A video of n_frames decoded frames of width x height (as vlm_video_from_frames /
 * vlm_request_add_video_rgb; cfg NULL = vlm_video_config_default). */
VLM_EXPORT int vlm_video_probe_size(size_t n_frames, uint32_t width, uint32_t height,
				    const struct vlm_vision_config *cfg,
				    const struct vlm_image_opts *opts,
				    const struct vlm_video_opts *vopts, uint32_t grid_thw[3],
				    uint32_t *tokens);

/* ---- requests: running ---------------------------------------------------------------------- */

/*
 * Submits the request to vlmd without blocking. The request must have tokens. A request is
 * submitted once.
 * Returns 0; -EAGAIN when the submission ring is full, or -ENOSPC when the arena has no room for
 * the item descriptors (192 bytes per tensor) — in both cases nothing changed: read completions,
 * then retry. Reading is required, not only waiting: vlmd takes no new submissions from a
 * connection while completions it sent wait unread (backpressure), so a caller that retries
 * without vlm_stream_read / vlm_conn_process (which routes every waiting completion to its
 * request and never blocks) can wait forever; -EINVAL (no tokens, submitted before); -ECONNRESET / -ENOTCONN (the request then
 * failed: its tensors are released and reads return the error). Thread-safe with respect to the
 * connection.
 */
VLM_EXPORT int vlm_submit(struct vlm_request *req);

/*
 * Reads the next generated token ids into ids[0..max) (max >= 1), in order, each token once.
 * timeout_ms: -1 waits forever, 0 does not wait, > 0 waits at most that long.
 * Returns the number of ids (> 0); 0 at the end of a request that finished (all its tokens were
 * read; vlm_request_finish_info has the reason and usage; reading again returns 0 again);
 * -EAGAIN (timeout 0) or -ETIMEDOUT when no token came in time; the request's error when it
 * failed (after its tokens that came before the failure were read): vlmd's code (e.g.
 * -EOPNOTSUPP: no model; -EINVAL: vlmd refused the request; -E2BIG, -ENOSPC, -EBUSY,
 * -ESHUTDOWN: see the table above), with vlmd's reason in vlm_last_error() ("vlmd: REASON;
 * error -ECODE") and vlm_request_error_message(); -ECONNRESET (vlmd lost), -ENOTCONN
 * (disconnected); -EINVAL for bad arguments or a request never submitted.
 * One thread at a time per request; different requests may be read concurrently.
 */
VLM_EXPORT int vlm_stream_read(struct vlm_request *req, int32_t *ids, size_t max, int timeout_ms);

/*
 * Asks vlmd to stop the request. Non-blocking; the request then ends as usual (reads drain the
 * tokens already produced and return 0, with finish reason VLM_FINISH_CANCELLED unless it had
 * finished already). Calling it again, or on a finished request, does nothing. The cancel takes
 * effect in vlmd even while nobody reads the connection and its completion ring is full (vlmd
 * takes cancels under backpressure); the request's remaining completions are still queued for
 * the reader. With -EAGAIN nothing was sent: call it again after a read has routed completions.
 * Returns 0, -EINVAL (never submitted), -EAGAIN (submission ring full: retry), -ECONNRESET /
 * -ENOTCONN. Any thread may call it while another reads the request.
 */
VLM_EXPORT int vlm_cancel(struct vlm_request *req);

/* Why a request ended. */
enum vlm_finish_reason {
	VLM_FINISH_STOP = 0,         /* EOS or a stop id */
	VLM_FINISH_LENGTH = 1,       /* max_tokens reached */
	VLM_FINISH_CANCELLED = 2,    /* vlm_cancel */
	VLM_FINISH_ERROR = 3,        /* failed: see error */
};

/* How a request ended (vlm_request_finish_info). */
struct vlm_finish_info {
	enum vlm_finish_reason reason;
	int error;                   /* 0, or the negative errno the request failed with */
	uint32_t prompt_tokens;      /* tokens of the prompt */
	uint32_t cached_tokens;      /* prompt tokens served from vlmd's prefix cache */
	uint32_t completion_tokens;  /* tokens generated */
	uint64_t queue_us;           /* vlmd saw the submission -> first scheduled */
	uint64_t ttft_us;            /* vlmd saw the submission -> first token */
	uint64_t total_us;           /* vlmd saw the submission -> finished */
	uint64_t reserved[4];
};

/*
 * vlmd's reason for failing the request, once it ended with an error that vlmd reported (a
 * refusal such as "prompt 5000 tokens >= max-model-len 4096" or "queue full: 8 waiting
 * (max-waiting 8)", or a failure while it ran): a short NUL-terminated text (at most 47 bytes,
 * control characters replaced by '?'). "" when vlmd gave no reason (a vlmd older than this
 * field, a failure of the library itself such as -ECONNRESET, success, a request not ended yet,
 * NULL). Owned by the request: valid until vlm_request_free(req). Does not change
 * vlm_last_error(). Since 0.2.
 */
VLM_EXPORT const char *vlm_request_error_message(struct vlm_request *req);

/*
 * Fills *info once the request ended (its finish or error arrived: vlm_stream_read returned 0 or
 * a negative error other than -EAGAIN/-ETIMEDOUT). Returns 0, -EINPROGRESS (not ended yet),
 * -EINVAL. Timings are vlmd's; usage fields are 0 for requests that failed before running.
 */
VLM_EXPORT int vlm_request_finish_info(struct vlm_request *req, struct vlm_finish_info *info);

/* Log-probability of one generated token (requests with vlm_gen_params.logprobs). */
#define VLM_MAX_TOP_LOGPROBS 20
struct vlm_logprob {
	int32_t token;               /* the sampled token */
	float logprob;               /* its log-probability under the model's raw distribution
				      * (log_softmax of the logits, before penalties and temperature) */
	uint32_t n_top;              /* alternatives below, best first */
	int32_t top_ids[VLM_MAX_TOP_LOGPROBS];
	float top_logprobs[VLM_MAX_TOP_LOGPROBS];
};

/*
 * Log-probability of the index-th generated token (0 = the first token vlm_stream_read
 * returned), available once that token was read. Returns 0, -ENOENT (no logprobs for it: not
 * requested, or not read yet), -EINVAL.
 */
VLM_EXPORT int vlm_request_logprob(struct vlm_request *req, size_t index, struct vlm_logprob *out);

/*
 * Number of events (token ids, finish or error) waiting to be read from the request without
 * blocking; 0 when none. Never blocks; does not read the ring. -EINVAL.
 */
VLM_EXPORT int vlm_request_pending(struct vlm_request *req);

/* The request's id (unique within its connection; shown by vlmctl), 0 for NULL. */
VLM_EXPORT uint64_t vlm_request_id(struct vlm_request *req);

/* A pointer the application attaches to a request (e.g. for vlm_conn_next_ready); NULL by
 * default. The library never dereferences it. */
VLM_EXPORT void vlm_request_set_user(struct vlm_request *req, void *user);
VLM_EXPORT void *vlm_request_user(struct vlm_request *req);

#ifdef __cplusplus
}
#endif

#endif /* VLM_VLM_H */
