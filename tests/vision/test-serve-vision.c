/*
 * tests/vision/test-serve-vision.c — the engine's vision stage in a real vlmd, from real client
 * requests carrying pixel items (VS_ITEM_PIXELS) on the raw protocol (tests/serve/sv.h).
 *
 * usage: test-serve-vision   ($VLMD, $VLM_MKMODEL, $VLMCTL from meson)
 *
 * Checkpoint without a vision tower (preset tiny: a vision_config, no visual.* weights):
 *  - a pixel item is refused at submission with -ENOTSUP "item 0: model has no vision tower",
 *    the second item of a request with its index; a text request right after still runs
 *    (nothing else breaks); vlmctl info shows "tower none" with the reason.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../serve/sv.h"

#define SEC 1000000000ll
#define TIMEOUT (60 * SEC)

static const char *vlmctl;

/* Run vlmctl --socket SOCK ARGS... and put its output in out [len]. Returns its exit status. */
static int ctl(const struct th_daemon *d, char *out, size_t len, const char *args)
{
	char cmd[1024];
	FILE *p;
	size_t n = 0;

	snprintf(cmd, sizeof(cmd), "%s --socket %s %s 2>&1", vlmctl, d->sock, args);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	while (n + 1 < len) {
		size_t k = fread(out + n, 1, len - 1 - n, p);

		if (!k)
			break;
		n += k;
	}
	out[n] = 0;
	return pclose(p);
}

/* The value of metric NAME (a Prometheus line "vlmd_NAME VALUE") in vlmctl metrics, or -1. */
static double metric(const struct th_daemon *d, const char *name)
{
	static char buf[1 << 16];
	char key[128];
	const char *p;

	if (ctl(d, buf, sizeof(buf), "metrics") != 0)
		return -1;
	snprintf(key, sizeof(key), "\nvlmd_%s ", name);
	p = strstr(buf, key);
	return p ? atof(p + strlen(key)) : -1;
}

/* A request of n tokens: text ids, then for each item a run of its pad tokens. */
static void refused(struct vc_conn *c, const struct sv_req *r, int code, const char *want,
                    const char *what)
{
	struct sv_res res;

	CHECK(sv_run(c, r, &res, TIMEOUT) == 0, "%s: no answer", what);
	CHECK(res.error == code, "%s: error %d, want %d (%s)", what, res.error, code, res.msg);
	CHECK(!strcmp(res.msg, want), "%s: message '%s', want '%s'", what, res.msg, want);
	CHECK(strlen(res.msg) <= 47, "%s: message over 47 bytes", what);
	CHECK(!res.bad && res.n_tok == 0, "%s: bad completions", what);
}

/* ---------------------------------------------------------------- no tower */

static void no_tower(void)
{
	static const char *args[] = { "--preset", "tiny", "--dtype", "f32", "--seed", "11", NULL };
	static float px[16 * 1176];
	char dir[256], out[8192];
	struct th_daemon d;
	struct vc_conn *c;
	int32_t tok[24];

	if (sv_make_model(args, dir) < 0) {
		CHECK(0, "vlm-mkmodel tiny");
		return;
	}
	if (sv_start(&d, dir, NULL) < 0) {
		CHECK(0, "vlmd on tiny");
		sv_rm_model(dir);
		return;
	}
	CHECK(th_connect(&d, "no-tower", &c) == 0, "connect");
	for (int i = 0; i < 24; i++)
		tok[i] = 3 + i;
	for (int i = 4; i < 8; i++)
		tok[i] = 250;   /* image pad of the tiny preset: 16 patches / 4 */
	for (int i = 0; i < 16 * 1176; i++)
		px[i] = (float)(i % 7) * 0.1f;
	{
		struct sv_item it = { .emb = px, .dtype = VS_DTYPE_F32, .rows = 16, .cols = 1176,
		                      .grid = { 1, 4, 4 }, .placeholder = 250, .flags = VS_ITEM_PIXELS,
		                      .tensor_id = 1 };
		struct sv_item two[2] = { { .emb = px, .dtype = VS_DTYPE_F32, .rows = 4, .cols = 128,
		                            .grid = { 1, 2, 2 }, .placeholder = 250, .tensor_id = 1 },
		                          it };
		struct sv_req r = { .ud = 1, .tok = tok, .n = 24, .items = &it, .n_items = 1,
		                    .p = sv_greedy(4) };
		struct sv_res res;

		refused(c, &r, -ENOTSUP, "item 0: model has no vision tower", "no tower");
		for (int i = 12; i < 16; i++)
			tok[i] = 250;   /* a second run for the second item */
		r.items = two;
		r.n_items = 2;
		r.ud = 2;
		refused(c, &r, -ENOTSUP, "item 1: model has no vision tower", "no tower, item 1");
		/* text only: still served */
		for (int i = 0; i < 24; i++)
			tok[i] = 3 + i;
		r = (struct sv_req){ .ud = 3, .tok = tok, .n = 24, .p = sv_greedy(4) };
		CHECK(sv_run(c, &r, &res, TIMEOUT) == 0 && !res.error && res.n_tok == 4,
		      "text request after the refusals: error %d, %d tokens", res.error, res.n_tok);
	}
	CHECK(ctl(&d, out, sizeof(out), "info") == 0, "vlmctl info: %s", out);
	CHECK(strstr(out, "vision:") && strstr(out, "tower") && strstr(out, "none") &&
	      strstr(out, "note"), "vlmctl info has no vision section with the reason:\n%s", out);
	CHECK(metric(&d, "requests_refused_total") == 2, "refused counter %g",
	      metric(&d, "requests_refused_total"));
	vc_conn_free(c);
	CHECK(th_stop(&d) == 0, "vlmd did not exit cleanly");
	sv_rm_model(dir);
	printf("ok no tower: pixel items refused with the reason, text still served\n");
}

int main(void)
{
	vlmctl = getenv("VLMCTL");
	if (!vlmctl) {
		fprintf(stderr, "VLMCTL not set\n");
		return 1;
	}
	no_tower();
	return sv_failures ? 1 : 0;
}
