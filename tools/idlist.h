/*
 * tools/idlist.h — token id lists as the command-line tools read them ("1,2,3", "[1, 2, 3]",
 * one per line: spaces, commas, tabs, newlines and brackets all separate), so vlm-generate and
 * vlm-tokenize accept the same spellings.
 */
#ifndef VLM_TOOLS_IDLIST_H
#define VLM_TOOLS_IDLIST_H

#include <stddef.h>
#include <stdint.h>

/* Parse s into *ret (malloc'd, caller frees) holding *n ids, each in [min, INT32_MAX].
 * Returns 0, -EINVAL (not a number, out of range) or -ENOMEM. */
int tool_parse_ids(const char *s, int32_t min, int32_t **ret, size_t *n);

#endif /* VLM_TOOLS_IDLIST_H */
