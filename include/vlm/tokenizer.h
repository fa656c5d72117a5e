/*
 * include/vlm/tokenizer.h — text in, token ids out (and back), for Qwen2 / Qwen2-VL models.
 *
 * A tokenizer is loaded from a Hugging Face `tokenizer.json` (byte-level BPE: vocab + merges, the
 * pre-tokenizer's Split regex, ByteLevel mapping, added/special tokens with their flags, the NFC
 * normalizer) and gives the same ids as Hugging Face `tokenizers`. The chat functions turn a
 * conversation with images/videos into the ids of Qwen2-VL's ChatML prompt plus the list of
 * placeholder runs a request needs (one per image/video).
 *
 * Conventions: functions returning int give >= 0 on success and a negative errno on failure.
 * Memory a function hands out is owned by the caller and released with the function named in its
 * comment. Every function taking a `const struct vlm_tokenizer *` may be called from any number
 * of threads at once; objects of the other types (vlm_detok, vlm_chat) are used by one thread at a
 * time. All functions exist since 0.1.
 */
#ifndef VLM_TOKENIZER_H
#define VLM_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vlm/export.h"

#ifdef __cplusplus
extern "C" {
#endif

struct vlm_tokenizer;
struct vlm_detok;
struct vlm_chat;

/* ---- loading ---------------------------------------------------------------------------- */

/*
 * Loads a tokenizer.json file. On success *ret owns a new tokenizer (free with
 * vlm_tokenizer_free). On failure *ret is NULL and, when errbuf is not NULL, a NUL-terminated
 * message naming what is wrong is written into errbuf (truncated to errbuf_len).
 * Returns 0, -EINVAL (NULL path/ret), -ENOENT/-EACCES/... (opening or reading the file),
 * -EBADMSG (not JSON, or a field has the wrong type/value), -ENOTSUP (valid but uses a feature
 * this tokenizer does not implement, e.g. a WordPiece model), -ENOMEM.
 * Since 0.1.
 */
VLM_EXPORT int vlm_tokenizer_load(const char *path, struct vlm_tokenizer **ret,
				  char *errbuf, size_t errbuf_len);

/* As vlm_tokenizer_load, from the file's contents in memory (json need not be NUL-terminated;
 * it is not retained). Since 0.1. */
VLM_EXPORT int vlm_tokenizer_load_buffer(const char *json, size_t json_len,
					 struct vlm_tokenizer **ret, char *errbuf,
					 size_t errbuf_len);

/* Frees a tokenizer; NULL is a no-op. No other thread may be using it. Since 0.1. */
VLM_EXPORT void vlm_tokenizer_free(struct vlm_tokenizer *tok);

/* ---- encoding --------------------------------------------------------------------------- */

/* Flags of vlm_tokenizer_encode. */
enum {
	/* Treat special added tokens (e.g. "<|im_end|>") in the text as plain text instead of
	 * parsing them into their ids (HF: tokenizer.encode_special_tokens = True). Use for text
	 * from untrusted sources. Non-special added tokens are still matched. */
	VLM_ENCODE_SPECIAL_AS_TEXT = 1u << 0,
};

/*
 * Encodes len bytes of UTF-8 text. On success *ret_ids is a new array of *ret_n token ids
 * (NULL when *ret_n is 0), owned by the caller: free it with vlm_tokens_free().
 * Returns the number of ids (as int, clamped to INT_MAX), -EINVAL (bad arguments or unknown
 * flags), -EILSEQ (text is not valid UTF-8), -E2BIG (the pre-tokenizer regex hit PCRE2's match
 * limit), -ENOMEM. Thread-safe: concurrent calls on one tokenizer never block each other.
 * Since 0.1.
 */
VLM_EXPORT int vlm_tokenizer_encode(const struct vlm_tokenizer *tok, const char *text, size_t len,
				    unsigned flags, int32_t **ret_ids, size_t *ret_n);

/* Frees an id array returned by this library; NULL is a no-op. Since 0.1. */
VLM_EXPORT void vlm_tokens_free(int32_t *ids);

/* ---- decoding --------------------------------------------------------------------------- */

/* Flags of vlm_tokenizer_decode and vlm_detok_new. */
enum {
	VLM_DECODE_SKIP_SPECIAL = 1u << 0, /* leave out special tokens (HF skip_special_tokens) */
};

/*
 * Decodes ids into UTF-8 text exactly as HF `decode` does: bytes of every token concatenated,
 * invalid UTF-8 replaced by U+FFFD per maximal invalid subsequence; ids outside the vocabulary
 * are ignored. On success *ret_text is a new NUL-terminated string of *ret_len bytes owned by
 * the caller (free with vlm_text_free()); ret_len may be NULL.
 * Returns 0, -EINVAL, -ENOMEM.
 * Since 0.1.
 */
VLM_EXPORT int vlm_tokenizer_decode(const struct vlm_tokenizer *tok, const int32_t *ids, size_t n,
				    unsigned flags, char **ret_text, size_t *ret_len);

/* Frees a string returned by this library; NULL is a no-op. Since 0.1. */
VLM_EXPORT void vlm_text_free(char *text);

/*
 * Streaming decoder for generated tokens: feed ids one at a time and get back only complete
 * UTF-8; bytes of a character split across tokens are held back until it is complete (or until
 * it can no longer become valid, then U+FFFD is emitted as vlm_tokenizer_decode would).
 * The concatenation of everything emitted plus vlm_detok_flush() equals vlm_tokenizer_decode()
 * of all the ids. The tokenizer must outlive the decoder.
 * vlm_detok_new: *ret owns a new decoder (free with vlm_detok_free). Returns 0, -EINVAL, -ENOMEM.
 * Since 0.1.
 */
VLM_EXPORT int vlm_detok_new(const struct vlm_tokenizer *tok, unsigned flags,
			     struct vlm_detok **ret);
/* Frees a decoder; NULL is a no-op. Since 0.1. */
VLM_EXPORT void vlm_detok_free(struct vlm_detok *d);
/*
 * Feeds one id. *ret_text points to the text completed by this id (*ret_len bytes, possibly 0,
 * NUL-terminated), owned by the decoder and valid until the next call on it.
 * Returns *ret_len as int, -EINVAL, -ENOMEM.
 * Since 0.1.
 */
VLM_EXPORT int vlm_detok_feed(struct vlm_detok *d, int32_t id, const char **ret_text,
			      size_t *ret_len);
/* Emits what is still held back (as U+FFFD, since it is incomplete) and resets the decoder
 * for a new sequence. Same return and ownership as vlm_detok_feed. Since 0.1. */
VLM_EXPORT int vlm_detok_flush(struct vlm_detok *d, const char **ret_text, size_t *ret_len);

/* ---- vocabulary ------------------------------------------------------------------------- */

/* Number of ids: the largest id + 1 over the model's vocab and the added tokens. Since 0.1. */
VLM_EXPORT size_t vlm_tokenizer_vocab_size(const struct vlm_tokenizer *tok);
/* Id of a token given by its vocab string (the byte-level form, e.g. "Ġthe") or an added token's
 * content (e.g. "<|im_end|>"). Returns the id (>= 0) or -ENOENT, -EINVAL. Since 0.1. */
VLM_EXPORT int32_t vlm_tokenizer_token_to_id(const struct vlm_tokenizer *tok, const char *token);
/* The vocab string / added-token content of an id, NUL-terminated, owned by the tokenizer;
 * NULL when the id is unknown. Since 0.1. */
VLM_EXPORT const char *vlm_tokenizer_id_to_token(const struct vlm_tokenizer *tok, int32_t id);
/* True when id is a special added token. Since 0.1. */
VLM_EXPORT bool vlm_tokenizer_is_special(const struct vlm_tokenizer *tok, int32_t id);

/* ---- chat template (Qwen2-VL ChatML) ------------------------------------------------------ */

/* Kind of a multimodal item. */
enum vlm_chat_item_kind {
	VLM_CHAT_IMAGE = 1,
	VLM_CHAT_VIDEO = 2,
};

/*
 * A conversation: messages with a role ("system", "user", "assistant", ...) whose content is a
 * sequence of text parts and image/video parts. vlm_chat_new: *ret owns a new empty conversation
 * (free with vlm_chat_free). Returns 0, -EINVAL, -ENOMEM.
 * Since 0.1.
 */
VLM_EXPORT int vlm_chat_new(struct vlm_chat **ret);
/* Frees a conversation; NULL is a no-op. Since 0.1. */
VLM_EXPORT void vlm_chat_free(struct vlm_chat *chat);
/* Starts a new message with the given role (copied). Returns 0, -EINVAL, -ENOMEM. Since 0.1. */
VLM_EXPORT int vlm_chat_add_message(struct vlm_chat *chat, const char *role);
/* Appends text (len bytes, copied) to the current message. A message whose content is only one
 * text part renders exactly like HF's string content. Returns 0, -EINVAL (no message yet),
 * -ENOMEM. Since 0.1. */
VLM_EXPORT int vlm_chat_add_text(struct vlm_chat *chat, const char *text, size_t len);
/* Appends an image or video to the current message. grid_t/h/w is the item's patch grid
 * (Qwen2-VL's image_grid_thw / video_grid_thw, before the spatial merge): it gets
 * t*h*w / merge_size^2 pad tokens. Returns 0, -EINVAL (no message, zero grid), -ENOMEM. Since 0.1. */
VLM_EXPORT int vlm_chat_add_media(struct vlm_chat *chat, enum vlm_chat_item_kind kind,
				  uint32_t grid_t, uint32_t grid_h, uint32_t grid_w);
/*
 * Builds a conversation from JSON text in Hugging Face's messages format:
 *   [{"role": "user", "content": "text"},
 *    {"role": "user", "content": [{"type": "image", "grid_thw": [1, 28, 28]},
 *                                 {"type": "video", "grid_thw": [4, 28, 28]},
 *                                 {"type": "text", "text": "Describe."}]}]
 * (or an object {"messages": [...]}). *ret owns a new conversation (free with vlm_chat_free).
 * Returns 0, -EINVAL, -EBADMSG (with a message in errbuf when not NULL), -ENOMEM.
 * Since 0.1.
 */
VLM_EXPORT int vlm_chat_from_json(const char *json, size_t len, struct vlm_chat **ret,
				  char *errbuf, size_t errbuf_len);

/* Options of vlm_chat_encode; zero-initialised = the defaults noted per field. */
struct vlm_chat_options {
	uint32_t merge_size;         /* spatial merge size; 0 = 2 (Qwen2-VL) */
	bool add_generation_prompt;  /* end with "<|im_start|>assistant\n" */
	bool add_vision_id;          /* "Picture N: " / "Video N: " before each item */
	bool content_special_as_text; /* encode message text with VLM_ENCODE_SPECIAL_AS_TEXT (the
				       * template's own special tokens are always parsed); false
				       * matches transformers' apply_chat_template */
	const char *default_system;  /* system prompt used when the first message is not
				      * "system"; NULL = "You are a helpful assistant." */
};

/* One run of placeholder tokens in the encoded prompt. */
struct vlm_chat_item {
	enum vlm_chat_item_kind kind;
	int32_t placeholder_id; /* <|image_pad|> or <|video_pad|> */
	uint32_t offset;        /* index of the run's first id in ids[] */
	uint32_t length;        /* number of placeholder ids = t*h*w / merge_size^2 */
	uint32_t grid_t, grid_h, grid_w;
};

/* The output of vlm_chat_encode; release with vlm_chat_result_fini. */
struct vlm_chat_result {
	int32_t *ids;                 /* [n_ids] */
	size_t n_ids;
	struct vlm_chat_item *items;  /* [n_items], in prompt order */
	size_t n_items;
};

/*
 * Renders the conversation with Qwen2-VL's chat template and encodes it: the same ids as
 * transformers' apply_chat_template followed by Qwen2VLProcessor's pad expansion.
 * opts may be NULL (defaults). On success *out holds new arrays owned by the caller.
 * Returns the number of ids (clamped to INT_MAX), -EINVAL (bad arguments, a grid not divisible
 * by merge_size^2), -ENOENT (the tokenizer lacks a ChatML/vision special token), -E2BIG (the
 * prompt would exceed vlmd's 2^20 prompt tokens: refused before allocating), -ENOMEM.
 * Since 0.1.
 */
VLM_EXPORT int vlm_chat_encode(const struct vlm_tokenizer *tok, const struct vlm_chat *chat,
			       const struct vlm_chat_options *opts, struct vlm_chat_result *out);
/* Frees the arrays of a result and zeroes it; a zeroed result is a no-op. Since 0.1. */
VLM_EXPORT void vlm_chat_result_fini(struct vlm_chat_result *res);

/*
 * Which chat template to render for a checkpoint. vlm_chat_encode renders one template family
 * exactly (written as code, not evaluated as Jinja); this checks that a checkpoint asks for it.
 * override NULL: model_dir's template (chat_template.jinja, chat_template.json, or
 * "chat_template" of tokenizer_config.json, a string or the "default" of a list), recognised by
 * its exact text. override: a known name ("qwen2-vl": Qwen2-VL / Qwen2.5-VL Instruct) or a file
 * holding a template (text, or JSON with "chat_template"), checked the same way.
 * Returns 0 with *ret_name (static); -ENOENT (no template in the folder, no such file),
 * -ENOTSUP (a template vlm_chat_encode cannot render), -EINVAL (bad arguments, unreadable
 * JSON); err [errlen] (may be NULL) says which file and what to do. Since 0.3.
 */
VLM_EXPORT int vlm_chat_template_find(const char *model_dir, const char *override,
				      const char **ret_name, char *err, size_t errlen);

/* ---- stop strings ------------------------------------------------------------------------- */

/*
 * Stop strings over streamed text, as OpenAI's `stop`: generation output is fed piece by piece
 * (e.g. each vlm_detok_feed result); text that can no longer be part of a stop string is released
 * at once, text that may be the start of one is held back until later pieces settle it, so a stop
 * string that spans several tokens is found and never shown. The released text excludes the stop
 * string and everything after it. When several stop strings occur, the one starting earliest wins
 * (ties: the first listed). Matching is bytewise; with whole-UTF-8 input (the detokenizer's) the
 * released text is whole UTF-8 too. One thread at a time per object.
 */
struct vlm_stop;

/*
 * Creates a matcher for n stop strings (NUL-terminated, non-empty, copied; n may be 0: nothing
 * ever matches, text passes through). *ret owns it (vlm_stop_free).
 * Returns 0, -EINVAL (NULL ret, NULL or empty string), -ENOMEM. Since 0.3.
 */
VLM_EXPORT int vlm_stop_new(const char *const *stops, size_t n, struct vlm_stop **ret);
/* Frees a matcher; NULL is a no-op. Since 0.3. */
VLM_EXPORT void vlm_stop_free(struct vlm_stop *s);
/*
 * Feeds len bytes of generated text. *ret_text / *ret_len: the text released by this call
 * (possibly empty, NUL-terminated, owned by s and valid until its next call).
 * Returns 0 (no stop string yet), 1 (a stop string matched: the released text ends right before
 * it; generation should stop; later feeds release nothing and return 1), -EINVAL, -ENOMEM.
 * Since 0.3.
 */
VLM_EXPORT int vlm_stop_feed(struct vlm_stop *s, const char *text, size_t len,
			     const char **ret_text, size_t *ret_len);
/*
 * At the end of generation: releases the text still held back (nothing after a match). Same
 * ownership as vlm_stop_feed. Returns 0, -EINVAL, -ENOMEM. Since 0.3.
 */
VLM_EXPORT int vlm_stop_flush(struct vlm_stop *s, const char **ret_text, size_t *ret_len);
/* Index of the stop string that matched, or -1 (none yet, or NULL). Since 0.3. */
VLM_EXPORT int vlm_stop_matched(const struct vlm_stop *s);
/* The index-th stop string (owned by s), or NULL when out of range. Since 0.3. */
VLM_EXPORT const char *vlm_stop_string(const struct vlm_stop *s, int index);

#ifdef __cplusplus
}
#endif

#endif /* VLM_TOKENIZER_H */
