/*
 * shm/wire.h — the vlmd wire protocol: handshake messages, the layout/offsets struct, submission
 * and completion entries, multimodal item descriptors. docs/PROTOCOL.md is the prose version.
 *
 * Why it looks like this: every struct that crosses a process boundary has a fixed size and fixed
 * field offsets (checked below with _Static_assert) so that daemon and client agree byte for byte,
 * holds no pointers (only (offset, length) pairs into the client's arena), and uses explicit
 * widths and explicit padding. Both sides are the same machine, so native byte order is used.
 * The layout struct tells the client where everything lives, so the segment layout can evolve
 * without a protocol version bump (io_uring_setup's sq_off/cq_off idea).
 */
#ifndef VLM_SHM_WIRE_H
#define VLM_SHM_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define VS_MAGIC 0x444d4c56u /* "VLMD" in memory on little endian */

/* Protocol versions this build speaks. The daemon picks the highest version both sides speak. */
#define VS_PROTO_MIN 1u
#define VS_PROTO_MAX 1u

/* Distance between hot words written by different sides (adjacent-line prefetcher pairs lines). */
#define VS_HOT_STRIDE 128u

/* ---------------------------------------------------------------- handshake (socket) */

/* client -> daemon, the first and only message the client sends on the socket. */
struct vs_hello {
	uint32_t magic;          /* VS_MAGIC */
	uint16_t proto_min;      /* lowest protocol version the client speaks */
	uint16_t proto_max;      /* highest */
	uint32_t sq_entries;     /* wanted submission ring size (0 = daemon default), rounded up to 2^k */
	uint32_t cq_entries;     /* wanted completion ring size (0 = default) */
	uint64_t arena_bytes;    /* wanted arena size in bytes (0 = default) */
	uint32_t flags;          /* VS_HELLO_*; other bits 0 */
	uint32_t pid;            /* informational only (SO_PEERCRED is what the daemon trusts) */
	char name[32];           /* client name for vlmctl, NUL-padded, not necessarily terminated */
};
_Static_assert(sizeof(struct vs_hello) == 64, "vs_hello size");

/* Hello flags. VS_HELLO_ADMIN: an admin connection (vlmctl). The daemon checks the peer's
 * credentials (root, or a member of an admin-gid group) and answers with a welcome carrying no
 * descriptors and no layout (status VS_OK, or VS_REFUSED_NOT_ALLOWED with a message). After an OK
 * welcome the socket carries newline-terminated JSON: one request object per line from the
 * client, one response object per line from the daemon, in order (docs/PROTOCOL.md, "Admin"). */
#define VS_HELLO_ADMIN 1u
_Static_assert(offsetof(struct vs_hello, arena_bytes) == 16, "vs_hello.arena_bytes");
_Static_assert(offsetof(struct vs_hello, name) == 32, "vs_hello.name");

/* Segment layout, sent in the welcome. All offsets are bytes from the start of their segment.
 * dseg: written only by the daemon, mapped read-only by the client (F_SEAL_FUTURE_WRITE).
 * cseg: written by the client (the daemon maps it read-only and trusts nothing in it). */
struct vs_layout {
	uint32_t size;           /* sizeof(struct vs_layout) the daemon was built with */
	uint32_t version;        /* negotiated protocol version */
	uint64_t dseg_bytes;     /* size of the daemon-written segment */
	uint64_t cseg_bytes;     /* size of the client-written segment */
	/* dseg words, each uint32_t, each on its own VS_HOT_STRIDE line */
	uint32_t cq_tail;        /* completion ring producer index (daemon) */
	uint32_t sq_head;        /* submission ring consumer index (daemon) */
	uint32_t d_waiting;      /* daemon sleeps: client must ring the doorbell (eventfd) */
	uint32_t d_flags;        /* VS_DF_* */
	uint32_t d_heartbeat;    /* daemon tick counter, advanced every tick_ms */
	uint32_t cqes;           /* completion entries [cq_entries] of struct vs_cqe */
	uint32_t cq_entries;     /* power of two */
	uint32_t tick_ms;        /* daemon heartbeat period */
	/* cseg words */
	uint32_t sq_tail;        /* submission ring producer index (client) */
	uint32_t cq_head;        /* completion ring consumer index (client) */
	uint32_t c_waiting;      /* client sleeps: VS_WAIT_FUTEX and/or VS_WAIT_FD */
	uint32_t c_heartbeat;    /* client activity counter (informational) */
	uint32_t sqes;           /* submission entries [sq_entries] of struct vs_sqe */
	uint32_t sq_entries;     /* power of two */
	uint64_t arena;          /* arena start in cseg */
	uint64_t arena_bytes;    /* arena size */
	uint32_t sqe_size;       /* sizeof(struct vs_sqe) */
	uint32_t cqe_size;       /* sizeof(struct vs_cqe) */
	uint32_t item_size;      /* sizeof(struct vs_mm_item) */
	uint32_t reserved;
};
_Static_assert(sizeof(struct vs_layout) == 112, "vs_layout size");
_Static_assert(offsetof(struct vs_layout, sq_tail) == 56, "vs_layout.sq_tail");
_Static_assert(offsetof(struct vs_layout, arena) == 80, "vs_layout.arena");

/* Welcome status codes. */
enum vs_status {
	VS_OK = 0,
	VS_REFUSED_VERSION = 1,  /* no common protocol version */
	VS_REFUSED_NOT_ALLOWED = 2, /* peer credentials not on the allow-list */
	VS_REFUSED_FULL = 3,     /* daemon has max clients */
	VS_REFUSED_BAD_HELLO = 4, /* malformed hello */
	VS_REFUSED_NO_MEMORY = 5, /* daemon could not create the segments */
	VS_REFUSED_SHUTDOWN = 6, /* daemon is shutting down */
};

/* daemon -> client, the only message the daemon sends. On VS_OK it carries VS_NFDS descriptors
 * (SCM_RIGHTS) in this order: dseg memfd, cseg memfd, sq doorbell eventfd (client writes),
 * cq notify eventfd (daemon writes when the client asked for VS_WAIT_FD). */
#define VS_NFDS 4
enum { VS_FD_DSEG = 0, VS_FD_CSEG = 1, VS_FD_SQ_BELL = 2, VS_FD_CQ_BELL = 3 };

struct vs_welcome {
	uint32_t magic;          /* VS_MAGIC */
	uint16_t status;         /* enum vs_status */
	uint16_t version;        /* negotiated version (VS_OK), or the daemon's max (refusals) */
	uint16_t daemon_proto_min;
	uint16_t daemon_proto_max;
	int32_t error;           /* negative errno matching status (0 on VS_OK) */
	uint32_t client_id;      /* daemon-side client number, for vlmctl and logs */
	uint32_t reserved;
	struct vs_layout layout; /* valid on VS_OK */
	char message[120];       /* human-readable reason, NUL-terminated */
};
_Static_assert(sizeof(struct vs_welcome) == 256, "vs_welcome size");
_Static_assert(offsetof(struct vs_welcome, layout) == 24, "vs_welcome.layout");

/* Control messages, client -> daemon, on the socket after the welcome: descriptors that must
 * travel as capabilities (a CUDA VMM allocation exported as a POSIX fd) are registered in a small
 * per-client table and named by slot in vs_mm_item.vmm_fd_slot. The daemon closes all of them
 * when the client goes away. Anything else on the socket is a protocol error. */
#define VS_MAX_FD_SLOTS 64
enum vs_ctl_type {
	VS_CTL_FD_ADD = 1,       /* exactly one fd attached (SCM_RIGHTS) goes into slot */
	VS_CTL_FD_DEL = 2,       /* close slot */
};
struct vs_ctl {
	uint32_t magic;          /* VS_MAGIC */
	uint16_t type;           /* enum vs_ctl_type */
	uint16_t slot;           /* < VS_MAX_FD_SLOTS */
	uint64_t reserved;       /* 0 */
};
_Static_assert(sizeof(struct vs_ctl) == 16, "vs_ctl size");

/* ---------------------------------------------------------------- entries */

enum vs_opcode {
	VS_OP_NOP = 0,           /* completes with a FINISH (reason STOP), nothing else */
	VS_OP_ECHO = 1,          /* tokens echoed back as TOKENS completions, then FINISH */
	VS_OP_GENERATE = 2,      /* generation request (serving engine) */
	VS_OP_CANCEL = 3,        /* cancel request user_data == target */
	VS_OP__COUNT
};

/* Waiter flags a side stores in its own *_waiting word before it sleeps. */
#define VS_WAIT_FUTEX 1u         /* sleeping in futex_wait on the peer's index */
#define VS_WAIT_FD 2u            /* wants the notify eventfd written (poll/epoll users) */

/* Daemon flags (dseg d_flags). */
#define VS_DF_CQ_OVERFLOW 1u     /* daemon holds completions the CQ had no room for: after
				  * advancing cq_head the client must ring the doorbell */
#define VS_DF_SHUTDOWN 2u        /* daemon is shutting down cleanly; expect EOF */
/* Why vlmd closed this connection, set before it does (EOF without any of these: vlmd died) */
#define VS_DF_DROPPED_HUNG 4u    /* completions went unread (client-timeout without heartbeat,
				  * or the backlog limit): the client looked hung */
#define VS_DF_DROPPED 8u         /* vlmctl disconnect, or the client broke the protocol */

/* Wire limits: the most one request may carry. vlmd refuses more (its defaults for
 * daemon/io/validate.h's limits) and libvlmclient checks the same numbers before it writes. */
#define VS_MAX_PROMPT_TOKENS (1u << 20) /* token ids of a prompt */
#define VS_MAX_ITEMS 256u        /* multimodal items */
#define VS_MAX_STOP_IDS 64u      /* stop token ids */
#define VS_MAX_COLS 65536u       /* columns of an item tensor (hidden size) */
#define VS_MAX_NEW_TOKENS (1u << 20) /* params.max_tokens */

/* Generation parameters; zero means "default" for every field. */
#define VS_GEN_IGNORE_EOS 1u
#define VS_GEN_HAS_SEED 2u
#define VS_GEN_LOGPROBS 4u       /* report each sampled token's log-probability (LOGPROBS
				  * completions), with params.logprobs top alternatives */
#define VS_MAX_LOGPROBS 20u      /* most alternatives per token */
struct vs_gen_params {
	uint32_t max_tokens;
	uint32_t min_tokens;
	float temperature;       /* 0 = greedy */
	float top_p;             /* 0 = off (1.0) */
	float min_p;
	float repetition_penalty; /* 0 = off (1.0) */
	float frequency_penalty;
	float presence_penalty;
	int32_t top_k;           /* 0 = off */
	uint32_t logprobs;       /* with VS_GEN_LOGPROBS: top-N alternatives per token (<= 20) */
	uint64_t seed;           /* used when VS_GEN_HAS_SEED */
	int32_t priority;        /* higher runs first; 0 = FCFS */
	uint32_t flags;          /* VS_GEN_* */
	uint64_t reserved;
};
_Static_assert(sizeof(struct vs_gen_params) == 64, "vs_gen_params size");
_Static_assert(offsetof(struct vs_gen_params, seed) == 40, "vs_gen_params.seed");

/* Submission entry: one request. Variable data lives in the arena, referenced by (offset, count). */
struct vs_sqe {
	uint8_t opcode;          /* enum vs_opcode */
	uint8_t flags;           /* reserved, 0 */
	uint16_t reserved0;
	uint32_t n_items;        /* multimodal items at items_off: struct vs_mm_item[n_items] */
	uint64_t user_data;      /* request id chosen by the client; echoed in every completion.
				  * VS_OP_CANCEL: the id of the request to cancel */
	uint64_t tokens_off;     /* arena offset of uint32_t token ids [n_tokens], 4-byte aligned */
	uint32_t n_tokens;
	uint32_t n_stop_ids;     /* uint32_t stop token ids [n_stop_ids] at stop_ids_off */
	uint64_t items_off;      /* arena offset, 8-byte aligned */
	uint64_t stop_ids_off;
	struct vs_gen_params params;
	uint64_t reserved1[2];
};
_Static_assert(sizeof(struct vs_sqe) == 128, "vs_sqe size");
_Static_assert(offsetof(struct vs_sqe, user_data) == 8, "vs_sqe.user_data");
_Static_assert(offsetof(struct vs_sqe, tokens_off) == 16, "vs_sqe.tokens_off");
_Static_assert(offsetof(struct vs_sqe, items_off) == 32, "vs_sqe.items_off");
_Static_assert(offsetof(struct vs_sqe, params) == 48, "vs_sqe.params");

/* Same numbering as kernels/backend.h's enum vk_dtype (asserted where the two meet,
 * daemon/engine/engine_req.c), so a validated item's dtype is the backend's. */
enum vs_dtype { VS_DTYPE_F32 = 0, VS_DTYPE_F16 = 1, VS_DTYPE_BF16 = 2, VS_DTYPE__COUNT };
enum vs_device {
	VS_DEV_ARENA = 0,        /* host rows in the client's arena at data_off */
	VS_DEV_CUDA_IPC = 1,     /* legacy cudaIpcMemHandle of the allocation base + data_off */
	VS_DEV_CUDA_VMM = 2,     /* cuMemCreate memory exported as a POSIX fd (sent with SCM_RIGHTS) */
	VS_DEV__COUNT
};
#define VS_ITEM_HAS_FINGERPRINT 1u
#define VS_ITEM_FP256 2u         /* fingerprint is 256 bits (else the first 128 bits count) */
/* Pixel item: the rows are preprocessed pixel patches [grid_t*grid_h*grid_w, cols] (cols =
 * 3 * temporal_patch * patch^2 = 1176 for Qwen2-VL) in 2x2 merge-block order, grid_t/h/w is the
 * PATCH grid (HF image_grid_thw, before the spatial merge), and vlmd runs the vision tower on
 * them; the placeholder run is t*h*w / merge^2 tokens long. reserved0 carries, for a video (its
 * placeholder is the video pad), the seconds per temporal grid step (transformers'
 * second_per_grid_ts = temporal_patch / sampled fps) as the bits of a float32 in (0, 86400],
 * 0 = 1.0; Qwen2.5-VL spaces the video's temporal position ids by it; it must be 0 on images.
 * vlmd refuses pixel values that are NaN or infinite. */
#define VS_ITEM_PIXELS 4u

/* Multimodal item: one embedding tensor [rows, cols] substituted at the placeholder run. */
struct vs_mm_item {
	uint32_t placeholder_id; /* token id whose k-th run this item fills */
	uint8_t dtype;           /* enum vs_dtype */
	uint8_t device;          /* enum vs_device */
	uint16_t flags;          /* VS_ITEM_* */
	uint32_t rows;           /* [rows, cols]: rows = placeholder run length */
	uint32_t cols;           /* hidden size */
	uint64_t row_stride;     /* bytes between rows (>= cols * dtype size) */
	uint32_t grid_t, grid_h, grid_w; /* M-RoPE grid after merging */
	int32_t device_index;    /* CUDA ordinal for CUDA devices */
	uint64_t data_off;       /* arena offset (ARENA) or offset inside the IPC allocation */
	uint64_t data_bytes;     /* bytes readable from data_off */
	uint64_t tensor_id;      /* client handle, echoed in the TENSOR_RELEASED completion */
	uint8_t ipc_handle[64];  /* cudaIpcMemHandle_t of the allocation base (CUDA_IPC) */
	uint8_t fingerprint[32]; /* content identity (128 or 256 bits) for prefix reuse */
	uint32_t vmm_fd_slot;    /* CUDA_VMM: slot of the fd registered with VS_CTL_FD_ADD */
	uint32_t reserved0;
	uint64_t alloc_bytes;    /* CUDA: size of the exported allocation, for range validation */
	uint64_t reserved1[2];
};
_Static_assert(sizeof(struct vs_mm_item) == 192, "vs_mm_item size");
_Static_assert(offsetof(struct vs_mm_item, data_off) == 40, "vs_mm_item.data_off");
_Static_assert(offsetof(struct vs_mm_item, ipc_handle) == 64, "vs_mm_item.ipc_handle");
_Static_assert(offsetof(struct vs_mm_item, fingerprint) == 128, "vs_mm_item.fingerprint");

enum vs_cqe_type {
	VS_CQE_TOKENS = 1,       /* count token ids in u.tokens (one step's worth, or a part) */
	VS_CQE_FINISH = 2,       /* request done: u.finish; last completion of a request */
	VS_CQE_ERROR = 3,        /* request failed with result (negative errno); last completion;
				  * with VS_CQEF_MESSAGE, u.message says why */
	VS_CQE_TENSOR_RELEASED = 4, /* daemon no longer needs item tensor u.released.tensor_id */
	VS_CQE_LOGPROBS = 5,     /* u.logprobs of one sampled token (VS_GEN_LOGPROBS requests);
				  * sent before the TOKENS completion that carries the token */
};
enum vs_finish_reason {
	VS_FINISH_STOP = 0,      /* EOS or stop token */
	VS_FINISH_LENGTH = 1,    /* max_tokens reached */
	VS_FINISH_CANCELLED = 2,
	VS_FINISH_ERROR = 3,     /* reserved: vlmd ends a failed request with VS_CQE_ERROR instead
				  * (u.finish leaves no room for a message) */
};

/* Completion flags. */
#define VS_CQEF_CANCEL 1u        /* reply to a CANCEL entry (user_data = the cancel's target) */
#define VS_CQEF_MORE 2u          /* LOGPROBS: more alternatives of the same token follow */
#define VS_CQEF_MESSAGE 4u       /* ERROR: u.message holds a human-readable reason, NUL-terminated
				  * within its VS_CQE_MESSAGE_LEN bytes. Additive: a daemon that
				  * leaves it clear sends zeros there, and a reader that ignores it
				  * loses only the text (docs/PROTOCOL.md, "Completion entry") */

#define VS_CQE_MESSAGE_LEN 48    /* bytes of u.message: at most 47 characters and the NUL */

#define VS_CQE_MAX_TOKENS 12

/* LOGPROBS: the sampled token's log-probability under the model's raw distribution (log_softmax
 * of the logits, before penalties, masks and temperature) and `count` alternatives (<= 5, best
 * first). A token with more alternatives continues in further LOGPROBS completions with
 * VS_CQEF_MORE set on all but the last; continuations repeat token/index and carry the next five. */
#define VS_CQE_MAX_ALTS 5
struct vs_logprobs {
	uint32_t token;          /* the sampled token */
	float logprob;
	uint32_t alt_ids[VS_CQE_MAX_ALTS];
	float alt_logprobs[VS_CQE_MAX_ALTS];
};
_Static_assert(sizeof(struct vs_logprobs) == 48, "vs_logprobs size");

struct vs_finish {
	uint8_t reason;          /* enum vs_finish_reason */
	uint8_t pad[3];
	uint32_t prompt_tokens;
	uint32_t cached_tokens;  /* prompt tokens served from the prefix cache */
	uint32_t completion_tokens;
	uint64_t queue_us;       /* submission seen -> first scheduled */
	uint64_t ttft_us;        /* submission seen -> first token */
	uint64_t total_us;
};
_Static_assert(sizeof(struct vs_finish) == 40, "vs_finish size");

struct vs_cqe {
	uint64_t user_data;      /* the request's id (0 for connection-level errors) */
	uint8_t type;            /* enum vs_cqe_type */
	uint8_t flags;           /* VS_CQEF_* */
	uint16_t count;          /* TOKENS: number of valid tokens */
	int32_t result;          /* ERROR: negative errno; else 0 */
	union {
		uint32_t tokens[VS_CQE_MAX_TOKENS];
		struct vs_finish finish;
		struct { uint64_t tensor_id; } released;
		struct vs_logprobs logprobs;
		char message[VS_CQE_MESSAGE_LEN]; /* ERROR with VS_CQEF_MESSAGE */
		uint8_t raw[48];
	} u;
};
_Static_assert(sizeof(struct vs_cqe) == 64, "vs_cqe size");
_Static_assert(offsetof(struct vs_cqe, u) == 16, "vs_cqe.u");
_Static_assert(sizeof(((struct vs_cqe *)0)->u.message) == 48, "vs_cqe.u.message");

/* ---------------------------------------------------------------- helpers */

/* True when [off, off + len) lies inside [0, size): overflow-safe. */
static inline int vs_range_ok(uint64_t off, uint64_t len, uint64_t size)
{
	return off <= size && len <= size - off;
}

/* True when [off, off + count * elem) lies inside [0, size): overflow-safe in the multiply too. */
static inline int vs_array_ok(uint64_t off, uint64_t count, uint64_t elem, uint64_t size)
{
	if (elem && count > UINT64_MAX / elem)
		return 0;
	return vs_range_ok(off, count * elem, size);
}

/* Bytes of one element of wire dtype dtype; 0 for an unknown dtype. The one table of it for the
 * wire (the client's DLPack check, vlmd's validation and request conversion use it). */
static inline unsigned vs_dtype_size(unsigned dtype)
{
	return dtype == VS_DTYPE_F32 ? 4u : dtype == VS_DTYPE_F16 || dtype == VS_DTYPE_BF16 ? 2u : 0u;
}

/* The one check of generation parameters, run by libvlmclient before it writes them and by vlmd
 * on its private copy: every float finite and in range, top_k >= 0, min_tokens <= max_tokens,
 * max_tokens <= max_new_tokens, logprobs <= VS_MAX_LOGPROBS, no unknown flag. Returns 0, or
 * -EINVAL / -E2BIG with a short reason with the numbers in why [whylen] (sized for an ERROR
 * completion's message, e.g. "top_p 1.5: need 0..1"). */
int vs_gen_params_check(const struct vs_gen_params *p, uint32_t max_new_tokens, char *why,
			size_t whylen);

/* Put msg (may be NULL or "": nothing is set) into an ERROR completion: at most
 * VS_CQE_MESSAGE_LEN - 1 bytes of it, NUL-terminated and zero-padded, and VS_CQEF_MESSAGE. A longer
 * text is cut after its last whole word that leaves room for "...", which marks the cut (never
 * inside a word, so never inside a number: a cut "max-model-len 4096" must not read 409). */
static inline void vs_cqe_set_message(struct vs_cqe *c, const char *msg)
{
	size_t n = 0, keep;
	int cut;

	if (!msg || !*msg)
		return;
	while (n < VS_CQE_MESSAGE_LEN - 1 && msg[n])
		n++;
	cut = msg[n] != 0;
	keep = n;
	if (cut) {
		keep = VS_CQE_MESSAGE_LEN - 4;   /* room for "..." */
		while (keep && msg[keep] != ' ')
			keep--;
		while (keep && msg[keep - 1] == ' ')
			keep--;
		if (!keep) {   /* one long word: cut at a UTF-8 character boundary */
			keep = VS_CQE_MESSAGE_LEN - 4;
			while (keep && ((unsigned char)msg[keep] & 0xc0) == 0x80)
				keep--;
		}
	}
	for (size_t i = 0; i < VS_CQE_MESSAGE_LEN; i++)
		c->u.message[i] = i < keep ? msg[i] : 0;
	if (cut)
		for (size_t i = 0; i < 3; i++)
			c->u.message[keep + i] = '.';
	c->flags |= VS_CQEF_MESSAGE;
}

/* Compute the layout of a client's segments for the given sizes (each rounded up to a power of
 * two, clamped to [lo, hi]). Fills *lay; returns 0 or -EINVAL. */
int vs_layout_compute(struct vs_layout *lay, uint32_t version, uint32_t sq_entries,
		      uint32_t cq_entries, uint64_t arena_bytes, uint32_t tick_ms);

/* Check a layout received from the daemon against the real segment sizes: every word and array in
 * bounds, sizes powers of two, entry sizes matching this build. Returns 0 or -EPROTO. */
int vs_layout_check(const struct vs_layout *lay, uint64_t dseg_bytes, uint64_t cseg_bytes);


#endif /* VLM_SHM_WIRE_H */
