/*
 * test-hostile-checkpoint — replacing the served checkpoint's files in place must not kill vlmd
 * or change what it serves (issue 15, item 5).
 *
 * usage: test-hostile-checkpoint   ($VLMD, $VLM_MKMODEL from meson)
 *
 * A bf16 tiny checkpoint served by vlmd (CPU backend: it uses the weights where the loader put
 * them). A greedy request gives the reference tokens; then the file is changed under vlmd:
 *  - truncated in place to 4 KiB (what `cp` over it or a restarted download does first): the same
 *    request gives the same tokens, vlmd stays up;
 *  - rewritten in place, same size, every data byte changed: the same tokens again;
 *  - vlmd still exits 0 on SIGTERM (no SIGBUS on the way);
 *  - a new vlmd on the truncated file refuses to start.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../serve/sv.h"

#define SEC 1000000000ll

static const char *args[] = { "--preset", "tiny", "--dtype", "bf16", "--seed", "7", NULL };

static int32_t prompt[40];

static void same_output(struct vc_conn *c, const struct sv_res *ref, uint64_t ud,
                        const char *what)
{
	struct sv_req r = { .ud = ud, .tok = prompt, .n = 40, .p = sv_greedy(24) };
	struct sv_res res;
	int rc = sv_run(c, &r, &res, 30 * SEC);

	CHECK(rc == 0 && !res.error && res.n_tok == 24 &&
	      sv_first_diff(res.tok, ref->tok, 24) == 24, "%s: rc %d error %d '%s', %d tokens, "
	      "first difference at %d", what, rc, res.error, res.msg, res.n_tok,
	      sv_first_diff(res.tok, ref->tok, 24));
}

int main(void)
{
	char dir[256], path[300];
	struct th_daemon d, d2;
	struct vc_conn *c = NULL;
	struct sv_res ref;
	struct sv_req r = { .ud = 1, .tok = prompt, .n = 40, .p = sv_greedy(24) };
	unsigned char *orig = NULL;
	struct stat sb;
	FILE *f;
	int fd;

	for (int i = 0; i < 40; i++)
		prompt[i] = 3 + (i * 37) % 240;
	if (sv_make_model(args, dir) < 0)
		return 1;
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	if (stat(path, &sb) < 0 || !(orig = malloc((size_t)sb.st_size)) || !(f = fopen(path, "rb")) ||
	    fread(orig, 1, (size_t)sb.st_size, f) != (size_t)sb.st_size) {
		fprintf(stderr, "cannot read %s\n", path);
		return 1;
	}
	fclose(f);
	if (sv_start(&d, dir, NULL) < 0 || th_connect(&d, "ckpt", &c) < 0) {
		fprintf(stderr, "setup failed\n");
		return 1;
	}
	CHECK(sv_run(c, &r, &ref, 30 * SEC) == 0 && !ref.error && ref.n_tok == 24, "reference run");

	/* truncated in place */
	fd = open(path, O_WRONLY | O_TRUNC);
	CHECK(fd >= 0 && write(fd, orig, 4096) == 4096, "truncate");
	close(fd);
	same_output(c, &ref, 2, "after truncation to 4 KiB");
	same_output(c, &ref, 3, "again");

	/* a new vlmd does not serve the truncated file */
	CHECK(sv_start(&d2, dir, NULL) < 0, "vlmd started on a truncated checkpoint");

	/* rewritten in place: same size, other bytes after the header */
	{
		uint64_t hlen;
		unsigned char *other = malloc((size_t)sb.st_size);

		memcpy(&hlen, orig, 8);
		memcpy(other, orig, (size_t)sb.st_size);
		for (size_t i = 8 + hlen; i < (size_t)sb.st_size; i++)
			other[i] ^= 0x5a;
		fd = open(path, O_WRONLY | O_TRUNC);
		CHECK(fd >= 0 && write(fd, other, (size_t)sb.st_size) == sb.st_size, "rewrite");
		close(fd);
		free(other);
	}
	same_output(c, &ref, 4, "after rewriting the data in place");

	vc_conn_free(c);
	CHECK(th_stop(&d) == 0, "vlmd did not exit cleanly after its checkpoint was replaced "
	      "(killed by a signal?)");
	printf("checkpoint replaced in place: %s\n", sv_failures ? "FAILED" : "ok");
	/* restore for cleanup */
	fd = open(path, O_WRONLY | O_TRUNC);
	if (fd >= 0) {
		if (write(fd, orig, (size_t)sb.st_size) != sb.st_size)
			fprintf(stderr, "restore failed\n");
		close(fd);
	}
	free(orig);
	sv_rm_model(dir);
	return sv_failures ? 1 : 0;
}
