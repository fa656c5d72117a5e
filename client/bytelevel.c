/*
 * client/bytelevel.c — the byte <-> stand-in character table (GPT-2 bytes_to_unicode).
 *
 * Printable Latin-1 bytes (!..~, ¡..¬, ®..ÿ) stand for themselves; the other 68 bytes get
 * U+0100.. in byte order. The table is computed, not stored, so it cannot drift from the rule.
 */
#include "bytelevel.h"

#include <stdbool.h>

#include "utf8.h"

static bool printable(unsigned b)
{
	return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

static uint32_t vt_bytelevel_char(uint8_t b)
{
	if (printable(b))
		return b;
	unsigned n = 0;
	for (unsigned i = 0; i < b; i++)
		n += !printable(i);
	return 0x100 + n;
}

static int16_t g_rev[0x100 + 68]; /* code point -> byte + 1, 0 = none; filled on first use */

static void fill_rev(void)
{
	if (g_rev['!'])
		return;
	int16_t tmp[0x100 + 68] = {0};
	for (unsigned b = 0; b < 256; b++)
		tmp[vt_bytelevel_char((uint8_t)b)] = (int16_t)(b + 1);
	/* Idempotent, identical writes: safe if two threads race here. */
	for (size_t i = 0; i < sizeof(tmp) / sizeof(tmp[0]); i++)
		__atomic_store_n(&g_rev[i], tmp[i], __ATOMIC_RELAXED);
}

int vt_bytelevel_to_bytes(const char *s, size_t n, uint8_t *out)
{
	fill_rev();
	const uint8_t *p = (const uint8_t *)s;
	size_t i = 0;
	int k = 0;
	while (i < n) {
		uint32_t cp;
		int l = vt_utf8_step(p + i, n - i, &cp);
		if (l <= 0 || cp >= 0x100 + 68)
			return -1;
		int16_t b = __atomic_load_n(&g_rev[cp], __ATOMIC_RELAXED);
		if (!b)
			return -1;
		out[k++] = (uint8_t)(b - 1);
		i += (size_t)l;
	}
	return k;
}

int vt_bytelevel_utf8(uint8_t b, char *out)
{
	return vt_utf8_encode(vt_bytelevel_char(b), out);
}
