/*
 * tests/ops/prom.h — a small, strict parser of the Prometheus text exposition format 0.0.4, for
 * the tests: it rejects what a Prometheus server would reject or misread, and a little more:
 * metric and label names outside [a-zA-Z_:][a-zA-Z0-9_:]*, malformed label sets or escapes,
 * values that are not floats, a TYPE after samples of its family or twice, an unknown type,
 * HELP twice, a family's samples not contiguous, a counter not ending in _total, histogram
 * buckets without le, not cumulative, without +Inf, or a _count that differs from the +Inf
 * bucket, missing _sum/_count, and text not ending in a newline.
 */
#ifndef VLM_TESTS_PROM_H
#define VLM_TESTS_PROM_H

#include <stddef.h>

struct prom_sample {
	char name[128];
	char le[32];                 /* the le label, "" when absent */
	double value;
};

struct prom {
	struct prom_sample *s;       /* [n], owned */
	int n;
	int n_families;
};

/* Returns 0, or -1 with "line N: why" in err. */
int prom_parse(const char *text, struct prom *p, char *err, size_t errlen);
/* Value of the sample name (with le == le when le is not NULL); NAN when absent. */
double prom_value(const struct prom *p, const char *name, const char *le);
void prom_free(struct prom *p);

#endif
