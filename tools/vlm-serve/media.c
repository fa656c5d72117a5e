/*
 * tools/vlm-serve/media.c — image_url parts to images for vlmd (media.h).
 *
 * Why the bytes are kept and only their header read here: the prompt needs the image's grid
 * before the request exists, and libvlmclient reads it from the header (vlm_image_probe_memory:
 * the format, size, source-pixel limit and aspect ratio checked as preprocessing checks them),
 * so each request's add preprocesses the image once, straight into the shared arena, where the
 * library's memo keeps it for the n choices and a rebuild after a full arena (images over a
 * quarter of the arena are preprocessed again per add: the memo does not keep them). Loading
 * used to preprocess into a scratch request for the grid, which the add then did again for every
 * image the memo did not keep. Damage the header does not show fails at the add, as a 400 naming
 * the same part (vsv_media_add's caller).
 *
 * Untrusted URLs: `data:` is always allowed (decoded strictly: the media type is not trusted,
 * the library sniffs the bytes); `file://` only below --allowed-local-media-path, checked on the
 * path with every symlink resolved and opened without following a last-moment symlink;
 * `http(s)://` only for the hosts in --allowed-media-domains, checked on every redirect hop
 * (redirects are followed by hand for that), with a byte cap and a time limit. Nothing else.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "tools/vlm-serve/b64.h"
#include "tools/vlm-serve/imgapi.h"
#include "tools/vlm-serve/media.h"

bool vsv_media_fault(int r)
{
	return !(r == -ENOSPC || r == -E2BIG || r == -ECONNRESET || r == -ENOTCONN ||
		 r == -ESHUTDOWN || r == -ECONNABORTED || r == -ENOMEM || r == -EAGAIN);
}

/* Checks the image data[0, len) (malloc'd: *ret takes it, also on failure it is freed) from its
 * header and learns its grid. */
static int from_memory(struct vsv_server *s, uint8_t *data, size_t len, uint64_t min_px,
		       uint64_t max_px, const char *param, struct vsv_media *ret,
		       struct vsv_err *e)
{
	struct vlm_image_opts o = { .min_pixels = min_px, .max_pixels = max_px,
				    .dtype = s->model.pixel_dtype };
	int r;
	if (!vsv_have_images()) {
		free(data);
		return vsv_fail(e, 400, param, "this vlm-serve runs with a libvlmclient without "
				"image support (0.3 adds it)");
	}
	r = vlm_image_probe_memory(data, len, &s->model.vision, &o, ret->grid, NULL);
	if (r < 0) {
		free(data);
		return vsv_fail(e, 400, param, "the image could not be used: %s", vlm_last_error()[0] ?
				vlm_last_error() : vlm_strerror(r));
	}
	ret->data = data;
	ret->len = len;
	ret->min_px = min_px;
	ret->max_px = max_px;
	snprintf(ret->param, sizeof(ret->param), "%s", param ? param : "");
	return 0;
}

int vsv_media_add(struct vsv_server *s, struct vlm_request *req, int32_t placeholder_id,
		  const struct vsv_media *m)
{
	struct vlm_image_opts o = { .min_pixels = m->min_px, .max_pixels = m->max_px,
				    .dtype = s->model.pixel_dtype };
	uint32_t g[3];
	int r = vlm_request_add_image_memory(req, placeholder_id, m->data, m->len, &s->model.vision,
					     &o, g, NULL);
	/* the header gave the grid the preprocessing gives: a difference would be a library bug */
	if (r == 0 && memcmp(g, m->grid, sizeof(g)))
		r = -EPROTO;
	return r;
}

void vsv_media_fini(struct vsv_media *m)
{
	free(m->data);
	memset(m, 0, sizeof(*m));
}

static int data_url(struct vsv_server *s, const char *url, uint64_t min_px, uint64_t max_px,
		    const char *param, struct vsv_media *ret, struct vsv_err *e)
{
	const char *comma = strchr(url, ',');
	if (!comma)
		return vsv_fail(e, 400, param, "a data: URL needs a ','");
	/* the last ;-parameter before the comma must be base64 */
	if (comma - url < 12 || strncasecmp(comma - 7, ";base64", 7))
		return vsv_fail(e, 400, param, "Only base64 data URLs are supported");
	const char *b64 = comma + 1;
	size_t len = strlen(b64);
	uint64_t cap = vsv_conf_u64(s->conf, VSV_CFG_MEDIA_MAX_BYTES);
	if (len / 4 * 3 > cap)
		return vsv_fail(e, 413, param, "the image is larger than media-max-bytes (%llu)",
				(unsigned long long)cap);
	uint8_t *bytes = malloc(len / 4 * 3 + 1);
	if (!bytes)
		return vsv_fail(e, 500, NULL, "out of memory");
	long n = vsv_base64_decode(b64, len, bytes);
	if (n < 0) {
		free(bytes);
		return vsv_fail(e, 400, param, "the data: URL is not valid base64");
	}
	return from_memory(s, bytes, (size_t)n, min_px, max_px, param, ret, e);
}

static int unhex(char c)
{
	return isdigit((unsigned char)c) ? c - '0' : isxdigit((unsigned char)c) ?
	       tolower((unsigned char)c) - 'a' + 10 : -1;
}

static int file_url(struct vsv_server *s, const char *url, uint64_t min_px, uint64_t max_px,
		    const char *param, struct vsv_media *ret, struct vsv_err *e)
{
	const char *allowed = vsv_conf_str(s->conf, VSV_CFG_ALLOWED_LOCAL_MEDIA_PATH);
	if (!allowed[0])
		return vsv_fail(e, 400, param,
				"Cannot load local files without `--allowed-local-media-path`");
	const char *p = url + 7;
	if (!strncmp(p, "localhost/", 10))
		p += 9;
	if (p[0] != '/')
		return vsv_fail(e, 400, param, "a file: URL needs an absolute path (file:///...)");
	char path[PATH_MAX], real[PATH_MAX], base[PATH_MAX];
	size_t o = 0;
	for (; *p && o + 1 < sizeof(path); p++) {
		if (p[0] == '%' && unhex(p[1]) >= 0 && unhex(p[2]) >= 0) {
			path[o++] = (char)(unhex(p[1]) << 4 | unhex(p[2]));
			p += 2;
		} else {
			path[o++] = *p;
		}
	}
	path[o] = '\0';
	if (memchr(path, '\0', o))
		return vsv_fail(e, 400, param, "the file: URL holds a NUL byte");
	if (!realpath(allowed, base))
		return vsv_fail(e, 500, NULL, "--allowed-local-media-path %s: %s", allowed,
				strerror(errno));
	if (!realpath(path, real))
		return vsv_fail(e, 400, param, "cannot open %s: %s", path, strerror(errno));
	size_t bl = strlen(base);
	if (strncmp(real, base, bl) || (real[bl] != '/' && !(bl == 1 && base[0] == '/')))
		return vsv_fail(e, 400, param, "%s must be a subpath of --allowed-local-media-path",
				path);
	int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return vsv_fail(e, 400, param, "cannot open %s: %s", path, strerror(errno));
	struct stat st;
	uint64_t cap = vsv_conf_u64(s->conf, VSV_CFG_MEDIA_MAX_BYTES);
	int r;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		r = vsv_fail(e, 400, param, "%s is not a regular file", path);
	} else if ((uint64_t)st.st_size > cap) {
		r = vsv_fail(e, 413, param, "%s is larger than media-max-bytes (%llu)", path,
			     (unsigned long long)cap);
	} else {
		uint8_t *buf = malloc((size_t)st.st_size + 1);
		size_t got = 0;
		ssize_t n = 1;
		while (buf && got < (size_t)st.st_size &&
		       (n = read(fd, buf + got, (size_t)st.st_size - got)) > 0)
			got += (size_t)n;
		if (!buf || n < 0) {
			r = !buf ? vsv_fail(e, 500, NULL, "out of memory") :
			    vsv_fail(e, 400, param, "reading %s: %s", path, strerror(errno));
			free(buf);
		} else {
			r = from_memory(s, buf, got, min_px, max_px, param, ret, e);
		}
	}
	close(fd);
	return r;
}

/* ---- http(s) ---- */

struct dl {
	uint8_t *p;
	size_t len, cap, max;
	bool too_big;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct dl *d = ud;
	size_t n = size * nmemb;
	if (d->len + n > d->max) {
		d->too_big = true;
		return 0;
	}
	if (d->len + n > d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 65536;
		while (cap < d->len + n)
			cap *= 2;
		uint8_t *q = realloc(d->p, cap);
		if (!q)
			return 0;
		d->p = q;
		d->cap = cap;
	}
	memcpy(d->p + d->len, ptr, n);
	d->len += n;
	return n;
}

/* Is the URL's host in --allowed-media-domains? */
static bool host_allowed(struct vsv_server *s, const char *url, char *host_out, size_t hlen)
{
	CURLU *u = curl_url();
	char *host = NULL, *scheme = NULL;
	bool ok = false;
	if (u && !curl_url_set(u, CURLUPART_URL, url, 0) &&
	    !curl_url_get(u, CURLUPART_HOST, &host, 0) &&
	    !curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) &&
	    (!strcasecmp(scheme, "http") || !strcasecmp(scheme, "https"))) {
		snprintf(host_out, hlen, "%s", host);
		const char *list = vsv_conf_str(s->conf, VSV_CFG_ALLOWED_MEDIA_DOMAINS);
		size_t hl = strlen(host);
		for (const char *p = list; *p && !ok;) {
			while (*p == ',' || *p == ' ')
				p++;
			const char *end = p;
			while (*end && *end != ',' && *end != ' ')
				end++;
			ok = (size_t)(end - p) == hl && hl && !strncasecmp(p, host, hl);
			p = end;
		}
	} else {
		snprintf(host_out, hlen, "?");
	}
	curl_free(host);
	curl_free(scheme);
	curl_url_cleanup(u);
	return ok;
}

static int http_url(struct vsv_server *s, const char *url, uint64_t min_px, uint64_t max_px,
		    const char *param, struct vsv_media *ret, struct vsv_err *e)
{
	char host[256], *cur = strdup(url);
	struct dl d = { .max = vsv_conf_u64(s->conf, VSV_CFG_MEDIA_MAX_BYTES) };
	CURL *c = curl_easy_init();
	int r = -1;
	if (!cur || !c) {
		vsv_fail(e, 500, NULL, "out of memory");
		goto out;
	}
	for (int hop = 0;; hop++) {
		if (!host_allowed(s, cur, host, sizeof(host))) {
			vsv_fail(e, 400, param, "the host '%s' is not in --allowed-media-domains", host);
			goto out;
		}
		if (hop == 5) {
			vsv_fail(e, 422, param, "too many redirects");
			goto out;
		}
		d.len = 0;
		curl_easy_reset(c);
		curl_easy_setopt(c, CURLOPT_URL, cur);
		curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
		curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
				 (long)vsv_conf_u64(s->conf, VSV_CFG_MEDIA_TIMEOUT_MS));
		curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)d.max);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &d);
		curl_easy_setopt(c, CURLOPT_USERAGENT, "vlm-serve");
		CURLcode cc = curl_easy_perform(c);
		long code = 0;
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
		if (d.too_big || cc == CURLE_FILESIZE_EXCEEDED) {
			vsv_fail(e, 413, param, "the image is larger than media-max-bytes (%zu)", d.max);
			goto out;
		}
		if (cc != CURLE_OK) {
			vsv_fail(e, 422, param, "fetching the image failed: %s", curl_easy_strerror(cc));
			goto out;
		}
		if (code >= 300 && code < 400) {
			char *loc = NULL;
			curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &loc);
			if (!loc) {
				vsv_fail(e, 422, param, "redirect %ld without a location", code);
				goto out;
			}
			char *next = strdup(loc);
			free(cur);
			if (!(cur = next)) {
				vsv_fail(e, 500, NULL, "out of memory");
				goto out;
			}
			continue;
		}
		if (code < 200 || code >= 300) {
			vsv_fail(e, 422, param, "fetching the image failed: HTTP %ld", code);
			goto out;
		}
		break;
	}
	r = from_memory(s, d.p, d.len, min_px, max_px, param, ret, e);
	d.p = NULL; /* from_memory took it */
out:
	curl_easy_cleanup(c);
	free(cur);
	free(d.p);
	return r;
}

int vsv_media_load(struct vsv_server *s, const char *url, uint64_t min_px, uint64_t max_px,
		   const char *param, struct vsv_media *ret, struct vsv_err *e)
{
	memset(ret, 0, sizeof(*ret));
	if (!strncmp(url, "data:", 5))
		return data_url(s, url, min_px, max_px, param, ret, e);
	if (!strncmp(url, "file://", 7))
		return file_url(s, url, min_px, max_px, param, ret, e);
	if (!strncasecmp(url, "http://", 7) || !strncasecmp(url, "https://", 8))
		return http_url(s, url, min_px, max_px, param, ret, e);
	return vsv_fail(e, 400, param, "image URLs must be data:, file:// or http(s)://");
}
