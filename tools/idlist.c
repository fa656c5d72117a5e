/*
 * tools/idlist.c — token id lists for the command-line tools (tools/idlist.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tools/idlist.h"

int tool_parse_ids(const char *s, int32_t min, int32_t **ret, size_t *n)
{
	size_t cap = 64, k = 0;
	int32_t *ids = malloc(cap * sizeof(*ids));

	if (!ids)
		return -ENOMEM;
	for (;;) {
		char *end;
		long v;

		while (*s && strchr(" ,\n\t\r[]", *s))
			s++;
		if (!*s)
			break;
		errno = 0;
		v = strtol(s, &end, 10);
		if (end == s || errno || v < min || v > INT32_MAX) {
			free(ids);
			return -EINVAL;
		}
		if (k == cap) {
			int32_t *p = realloc(ids, 2 * cap * sizeof(*ids));

			if (!p) {
				free(ids);
				return -ENOMEM;
			}
			ids = p;
			cap *= 2;
		}
		ids[k++] = (int32_t)v;
		s = end;
	}
	*ret = ids;
	*n = k;
	return 0;
}
