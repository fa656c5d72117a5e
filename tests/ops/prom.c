/*
 * tests/ops/prom.c — the strict Prometheus text parser of prom.h.
 */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prom.h"

struct family {
	char name[128];
	char type[16];
	int help, typed, has_samples, closed;
	/* histogram state */
	double last_bucket, inf, count;
	int saw_inf, saw_sum, saw_count;
};

static int fail(char *err, size_t len, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t len, int line, const char *fmt, ...)
{
	va_list ap;
	int k = snprintf(err, len, "line %d: ", line);

	va_start(ap, fmt);
	vsnprintf(err + k, len - (size_t)k, fmt, ap);
	va_end(ap);
	return -1;
}

/* A metric name at s; its length, 0 when none. */
static size_t name_len(const char *s)
{
	size_t n = 0;

	if (!(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':'))
		return 0;
	while (isalnum((unsigned char)s[n]) || s[n] == '_' || s[n] == ':')
		n++;
	return n;
}

static int parse_value(const char *s, double *v, const char **end)
{
	char *e;

	if (!strncmp(s, "+Inf", 4)) {
		*v = INFINITY;
		*end = s + 4;
		return 0;
	}
	if (!strncmp(s, "-Inf", 4)) {
		*v = -INFINITY;
		*end = s + 4;
		return 0;
	}
	if (!strncmp(s, "NaN", 3)) {
		*v = NAN;
		*end = s + 3;
		return 0;
	}
	if (!(isdigit((unsigned char)*s) || *s == '-' || *s == '+' || *s == '.'))
		return -1;
	*v = strtod(s, &e);
	if (e == s)
		return -1;
	*end = e;
	return 0;
}

/* The family a sample name belongs to (strip _bucket/_sum/_count for histograms). */
static struct family *family_of(struct family *f, int nf, const char *name)
{
	for (int i = 0; i < nf; i++) {
		size_t n = strlen(f[i].name);

		if (!strcmp(f[i].name, name))
			return &f[i];
		if (!strcmp(f[i].type, "histogram") && !strncmp(name, f[i].name, n) &&
		    (!strcmp(name + n, "_bucket") || !strcmp(name + n, "_sum") || !strcmp(name + n, "_count")))
			return &f[i];
	}
	return NULL;
}

static int close_family(struct family *f, char *err, size_t len, int line)
{
	if (!f || f->closed)
		return 0;
	f->closed = 1;
	if (!f->has_samples)
		return fail(err, len, line, "family %s has no samples", f->name);
	if (!strcmp(f->type, "histogram")) {
		if (!f->saw_inf || !f->saw_sum || !f->saw_count)
			return fail(err, len, line, "histogram %s lacks +Inf bucket, _sum or _count", f->name);
		if (f->count != f->inf)
			return fail(err, len, line, "histogram %s: _count %g != +Inf bucket %g", f->name, f->count, f->inf);
	}
	return 0;
}

int prom_parse(const char *text, struct prom *p, char *err, size_t errlen)
{
	struct family fam[256];
	struct family *cur = NULL;
	int nf = 0, line = 0, cap = 0;
	const char *s = text;

	memset(p, 0, sizeof(*p));
	if (!*text || text[strlen(text) - 1] != '\n')
		return fail(err, errlen, 0, "text does not end in a newline");
	while (*s) {
		const char *nl = strchr(s, '\n');
		char buf[4096];
		size_t n = (size_t)(nl - s);

		line++;
		if (n >= sizeof(buf))
			return fail(err, errlen, line, "line too long");
		memcpy(buf, s, n);
		buf[n] = 0;
		s = nl + 1;
		if (!n)
			continue;
		if (buf[0] == '#') {
			char kw[8], name[128];
			size_t k;
			struct family *f;

			if (strncmp(buf, "# HELP ", 7) && strncmp(buf, "# TYPE ", 7))
				continue; /* a comment */
			memcpy(kw, buf + 2, 4);
			kw[4] = 0;
			k = name_len(buf + 7);
			if (!k || k >= sizeof(name) || buf[7 + k] != ' ')
				return fail(err, errlen, line, "bad metric name in %s", kw);
			memcpy(name, buf + 7, k);
			name[k] = 0;
			f = NULL;
			for (int i = 0; i < nf; i++)
				if (!strcmp(fam[i].name, name))
					f = &fam[i];
			if (!f) {
				if (nf == 256)
					return fail(err, errlen, line, "too many families");
				f = &fam[nf++];
				memset(f, 0, sizeof(*f));
				snprintf(f->name, sizeof(f->name), "%s", name);
				snprintf(f->type, sizeof(f->type), "untyped");
				f->last_bucket = -1;
			}
			if (f->closed)
				return fail(err, errlen, line, "%s %s after its samples ended", kw, name);
			if (!strcmp(kw, "HELP")) {
				if (f->help++)
					return fail(err, errlen, line, "HELP %s twice", name);
			} else {
				const char *t = buf + 7 + k + 1;

				if (f->typed++)
					return fail(err, errlen, line, "TYPE %s twice", name);
				if (f->has_samples)
					return fail(err, errlen, line, "TYPE %s after its samples", name);
				if (strcmp(t, "counter") && strcmp(t, "gauge") && strcmp(t, "histogram") &&
				    strcmp(t, "summary") && strcmp(t, "untyped"))
					return fail(err, errlen, line, "unknown type '%s'", t);
				snprintf(f->type, sizeof(f->type), "%s", t);
				if (!strcmp(t, "counter") && (strlen(name) < 6 || strcmp(name + strlen(name) - 6, "_total")))
					return fail(err, errlen, line, "counter %s does not end in _total", name);
			}
			if (cur != f && close_family(cur, err, errlen, line))
				return -1;
			cur = f;
			continue;
		}
		{
			struct prom_sample smp = { 0 };
			size_t k = name_len(buf);
			const char *q = buf + k, *end;
			struct family *f;

			if (!k || k >= sizeof(smp.name))
				return fail(err, errlen, line, "bad metric name");
			memcpy(smp.name, buf, k);
			if (*q == '{') {
				q++;
				while (*q != '}') {
					size_t ln = name_len(q);
					char lname[64], val[256];
					size_t vn = 0;

					if (!ln || ln >= sizeof(lname) || q[ln] != '=' || q[ln + 1] != '"')
						return fail(err, errlen, line, "bad label");
					memcpy(lname, q, ln);
					lname[ln] = 0;
					q += ln + 2;
					while (*q != '"') {
						if (!*q || vn + 1 >= sizeof(val))
							return fail(err, errlen, line, "unterminated label value");
						if (*q == '\\') {
							q++;
							if (*q != '\\' && *q != '"' && *q != 'n')
								return fail(err, errlen, line, "bad escape \\%c", *q);
						}
						val[vn++] = *q++;
					}
					val[vn] = 0;
					q++;
					if (!strcmp(lname, "le"))
						snprintf(smp.le, sizeof(smp.le), "%.31s", val);
					if (*q == ',')
						q++;
					else if (*q != '}')
						return fail(err, errlen, line, "expected , or } after a label");
				}
				q++;
			}
			if (*q != ' ')
				return fail(err, errlen, line, "expected a space before the value");
			if (parse_value(q + 1, &smp.value, &end))
				return fail(err, errlen, line, "bad value '%s'", q + 1);
			if (*end == ' ') { /* optional timestamp */
				char *e2;

				strtoll(end + 1, &e2, 10);
				if (e2 == end + 1 || *e2)
					return fail(err, errlen, line, "bad timestamp");
			} else if (*end) {
				return fail(err, errlen, line, "junk after the value");
			}
			f = family_of(fam, nf, smp.name);
			if (!f)
				return fail(err, errlen, line, "sample %s without TYPE", smp.name);
			if (f->closed)
				return fail(err, errlen, line, "samples of %s not contiguous", f->name);
			if (cur != f && close_family(cur, err, errlen, line))
				return -1;
			cur = f;
			f->has_samples = 1;
			if (!strcmp(f->type, "histogram")) {
				size_t fn = strlen(f->name);

				if (!strcmp(smp.name + fn, "_bucket")) {
					double le;
					const char *e3;

					if (!smp.le[0] || parse_value(smp.le, &le, &e3) || *e3)
						return fail(err, errlen, line, "bucket without a valid le");
					if (f->saw_inf)
						return fail(err, errlen, line, "bucket after +Inf");
					if (smp.value < f->last_bucket)
						return fail(err, errlen, line, "buckets not cumulative");
					f->last_bucket = smp.value;
					if (isinf(le)) {
						f->saw_inf = 1;
						f->inf = smp.value;
					}
				} else if (!strcmp(smp.name + fn, "_sum")) {
					f->saw_sum = 1;
				} else if (!strcmp(smp.name + fn, "_count")) {
					f->saw_count = 1;
					f->count = smp.value;
				} else {
					return fail(err, errlen, line, "histogram sample %s", smp.name);
				}
			} else if (strcmp(smp.name, f->name)) {
				return fail(err, errlen, line, "sample %s in family %s", smp.name, f->name);
			}
			if (p->n == cap) {
				struct prom_sample *ns;

				cap = cap ? 2 * cap : 256;
				ns = realloc(p->s, sizeof(*ns) * (size_t)cap);
				if (!ns)
					return fail(err, errlen, line, "out of memory");
				p->s = ns;
			}
			p->s[p->n++] = smp;
		}
	}
	if (close_family(cur, err, errlen, line))
		return -1;
	for (int i = 0; i < nf; i++)
		if (!fam[i].has_samples)
			return fail(err, errlen, line, "family %s has no samples", fam[i].name);
	p->n_families = nf;
	return 0;
}

double prom_value(const struct prom *p, const char *name, const char *le)
{
	for (int i = 0; i < p->n; i++)
		if (!strcmp(p->s[i].name, name) && (!le || !strcmp(p->s[i].le, le)))
			return p->s[i].value;
	return NAN;
}

void prom_free(struct prom *p)
{
	free(p->s);
	p->s = NULL;
	p->n = 0;
}
