/*
 * client/bytelevel.h — GPT-2's byte-to-unicode mapping used by byte-level BPE vocabularies.
 *
 * Every byte has a printable stand-in character so vocab strings are readable JSON; the tokenizer
 * works on raw bytes and uses this table only to turn vocab strings into bytes (load, decode) and
 * bytes into vocab strings (initial symbols of a word).
 */
#ifndef VLM_CLIENT_BYTELEVEL_H
#define VLM_CLIENT_BYTELEVEL_H

#include <stddef.h>
#include <stdint.h>

/*
 * Converts a byte-level string (UTF-8, n bytes) into the bytes it stands for, written to out
 * (capacity >= n). Returns the byte count, or -1 when a character is not in the table.
 */
int vt_bytelevel_to_bytes(const char *s, size_t n, uint8_t *out);

/* Writes the byte-level string for byte b into out[2]; returns its length (1 or 2). */
int vt_bytelevel_utf8(uint8_t b, char *out);

#endif
