/*
 * client/jscan.h — a minimal, strict JSON scanner for the two big tables of tokenizer.json.
 *
 * jansson builds a node per value; for a 151k-entry vocab plus 151k merges that alone costs
 * ~350 ms and as much again to free, over the 200 ms load budget. The scanner validates and
 * reads "model.vocab" and "model.merges" in place (strings unescaped straight into the caller's
 * buffers) and locates them so the rest of the file — small — can still go through jansson.
 */
#ifndef VLM_CLIENT_JSCAN_H
#define VLM_CLIENT_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vt_jscan {
	const char *base;  /* start of the document, for error positions */
	const char *p;     /* cursor */
	const char *end;
	char *err;         /* message buffer (may be NULL) */
	size_t err_len;
};

/* Byte ranges of model.vocab and model.merges in a document (len 0 = not present). */
struct vt_jspans {
	size_t vocab_off, vocab_len;
	size_t merges_off, merges_len;
};

/* Validates the document and finds the two tables (whose strings are only delimited here: the
 * caller validates them when it reads them with vt_jscan_string). Returns 0 or -EBADMSG
 * (message with line and column in s->err). */
int vt_jscan_find_tables(struct vt_jscan *s, struct vt_jspans *spans);

/* Skips whitespace; returns the next byte or 0 at the end. */
char vt_jscan_peek(struct vt_jscan *s);
/* Consumes byte c (after whitespace) or fails with -EBADMSG. */
int vt_jscan_expect(struct vt_jscan *s, char c);
/* Reads a string at the cursor, unescaped into out (capacity >= its raw length; unescaping
 * never grows it); *len receives the byte count. Rejects \u0000 and invalid UTF-8. */
int vt_jscan_string(struct vt_jscan *s, char *out, size_t *len);
/* Reads an integer. */
int vt_jscan_int(struct vt_jscan *s, int64_t *v);
/* After an element or member: true and consumes ',' when another follows, false and consumes
 * close when the container ends; -EBADMSG otherwise. */
int vt_jscan_next(struct vt_jscan *s, char close);
/* Records an error at the cursor ("tokenizer.json: line L column C: what"); returns -EBADMSG. */
int vt_jscan_fail(struct vt_jscan *s, const char *what);

#endif
