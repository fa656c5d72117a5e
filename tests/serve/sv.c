/*
 * tests/serve/sv.c — serving test helpers (sv.h).
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sv.h"
#include "shm/doorbell.h"

extern char **environ;

int sv_failures;

int sv_make_model(const char *const *args, char *dir)
{
	const char *exe = getenv("VLM_MKMODEL");
	const char *tmp = getenv("TMPDIR");
	char tmpl[200];
	char *argv[32];
	int n = 0, st;
	pid_t pid;

	if (!exe)
		exe = "tools/vlm-mkmodel";
	snprintf(tmpl, sizeof(tmpl), "%.150s/vlm-serve-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(tmpl))
		return -1;
	snprintf(dir, 256, "%s/model", tmpl);
	argv[n++] = (char *)exe;
	for (int i = 0; args && args[i] && n < 30; i++)
		argv[n++] = (char *)args[i];
	argv[n++] = dir;
	argv[n] = NULL;
	if (posix_spawn(&pid, exe, NULL, NULL, argv, environ))
		return -1;
	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
		return -1;
	return 0;
}

void sv_rm_model(const char *dir)
{
	DIR *d = opendir(dir);
	char p[600];
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			snprintf(p, sizeof(p), "%.300s/%.255s", dir, e->d_name);
			unlink(p);
		}
	closedir(d);
	rmdir(dir);
	snprintf(p, sizeof(p), "%.300s", dir);
	char *slash = strrchr(p, '/');
	if (slash) {
		*slash = 0;
		rmdir(p);
	}
}

int sv_start(struct th_daemon *d, const char *model, const char *const *extra)
{
	const char *args[48];
	int n = 0;

	args[n++] = "--model";
	args[n++] = model;
	args[n++] = "--threads";
	args[n++] = "1";
	for (int i = 0; extra && extra[i] && n < 46; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	return th_start(d, args);
}

struct vs_gen_params sv_greedy(uint32_t n)
{
	struct vs_gen_params p;

	memset(&p, 0, sizeof(p));
	p.max_tokens = n;
	p.flags = VS_GEN_IGNORE_EOS;
	return p;
}

static const unsigned dsize[3] = { 4, 2, 2 };

static void free_arena(struct vc_conn *c, struct sv_res *res)
{
	for (int i = 0; i < res->n_off; i++)
		vc_conn_arena_free(c, res->off[i], res->len[i]);
	res->n_off = 0;
}

static void *put(struct vc_conn *c, struct sv_res *res, uint64_t len, uint64_t *off)
{
	void *p = vc_conn_arena_alloc(c, len ? len : 8, off);

	if (p) {
		res->off[res->n_off] = *off;
		res->len[res->n_off++] = len ? len : 8;
	}
	return p;
}

int sv_submit(struct vc_conn *c, const struct sv_req *r, struct sv_res *res)
{
	struct vs_sqe e;
	uint64_t off;
	uint32_t *t;
	int rc;

	memset(res, 0, sizeof(*res));
	res->ud = r->ud;
	memset(&e, 0, sizeof(e));
	e.opcode = VS_OP_GENERATE;
	e.user_data = r->ud;
	e.params = r->p;
	t = put(c, res, (uint64_t)r->n * 4, &off);
	if (!t)
		goto nospace;
	for (int32_t i = 0; i < r->n; i++)
		t[i] = (uint32_t)r->tok[i];
	e.tokens_off = off;
	e.n_tokens = (uint32_t)r->n;
	if (r->n_stop) {
		t = put(c, res, (uint64_t)r->n_stop * 4, &off);
		if (!t)
			goto nospace;
		memcpy(t, r->stop, (size_t)r->n_stop * 4);
		e.stop_ids_off = off;
		e.n_stop_ids = (uint32_t)r->n_stop;
	}
	if (r->n_items) {
		struct vs_mm_item *it = put(c, res, sizeof(*it) * (uint64_t)r->n_items, &off);

		if (!it)
			goto nospace;
		e.items_off = off;
		e.n_items = (uint32_t)r->n_items;
		memset(it, 0, sizeof(*it) * (size_t)r->n_items);
		for (int32_t k = 0; k < r->n_items; k++) {
			const struct sv_item *s = &r->items[k];
			uint64_t bytes = (uint64_t)s->rows * (uint64_t)s->cols * dsize[s->dtype];
			void *data = put(c, res, bytes, &off);

			if (!data)
				goto nospace;
			memcpy(data, s->emb, bytes);
			it[k].placeholder_id = s->placeholder;
			it[k].dtype = s->dtype;
			it[k].device = VS_DEV_ARENA;
			it[k].flags = s->flags;
			it[k].rows = (uint32_t)s->rows;
			it[k].cols = (uint32_t)s->cols;
			it[k].row_stride = (uint64_t)s->cols * dsize[s->dtype];
			it[k].grid_t = (uint32_t)s->grid[0];
			it[k].grid_h = (uint32_t)s->grid[1];
			it[k].grid_w = (uint32_t)s->grid[2];
			it[k].data_off = off;
			it[k].data_bytes = bytes;
			it[k].tensor_id = s->tensor_id;
			memcpy(it[k].fingerprint, s->fp, 32);
			it[k].reserved0 = s->reserved0;
		}
	}
	rc = vc_conn_submit(c, &e);
	if (rc < 0)
		free_arena(c, res);
	return rc;
nospace:
	free_arena(c, res);
	return -ENOSPC;
}

static void handle(struct vc_conn *c, const struct vs_cqe *q, struct sv_res *res, int n)
{
	struct sv_res *r = NULL;

	for (int i = 0; i < n; i++)
		if (res[i].ud == q->user_data && !res[i].done) {
			r = &res[i];
			break;
		}
	if (!r) {
		for (int i = 0; i < n; i++)
			if (res[i].ud == q->user_data)
				res[i].bad++;   /* completion after the last one */
		return;
	}
	switch (q->type) {
	case VS_CQE_TOKENS:
		if (r->lp_more)
			r->bad++;   /* alternatives cut short */
		for (int i = 0; i < q->count && r->n_tok < SV_MAX_TOK; i++)
			r->tok[r->n_tok++] = (int32_t)q->u.tokens[i];
		break;
	case VS_CQE_LOGPROBS:
		r->n_lp_alts += q->count;
		if (!r->lp_more) {
			if (r->n_lp < SV_MAX_LP)
				r->lp[r->n_lp] = q->u.logprobs;
			r->n_lp++;
		} else if (r->n_lp > SV_MAX_LP || r->lp[r->n_lp - 1].token != q->u.logprobs.token) {
			r->bad++;   /* a continuation of another token */
		}
		r->lp_more = (q->flags & VS_CQEF_MORE) != 0;
		if (r->n_lp > r->n_tok + 1)
			r->bad++;   /* LOGPROBS must precede the TOKENS of its token */
		break;
	case VS_CQE_TENSOR_RELEASED:
		if (r->n_released < SV_MAX_ITEMS * 2)
			r->released[r->n_released] = q->u.released.tensor_id;
		r->n_released++;
		break;
	case VS_CQE_FINISH:
		r->fin = q->u.finish;
		r->done = 1;
		free_arena(c, r);
		break;
	case VS_CQE_ERROR:
		r->error = q->result;
		if (q->flags & VS_CQEF_MESSAGE) {
			memcpy(r->msg, q->u.message, sizeof(r->msg));
			if (memchr(r->msg, 0, sizeof(r->msg)) == NULL)
				r->bad++;   /* the message must be terminated within its 48 bytes */
			r->msg[sizeof(r->msg) - 1] = 0;
		}
		r->done = 1;
		free_arena(c, r);
		break;
	default:
		r->bad++;
	}
}

int sv_poll(struct vc_conn *c, struct sv_res *res, int n)
{
	struct vs_cqe q[64];
	uint32_t k, total = 0;

	while ((k = vc_conn_reap(c, q, 64)) > 0) {
		for (uint32_t i = 0; i < k; i++)
			handle(c, &q[i], res, n);
		total += k;
	}
	return (int)total;
}

int sv_wait(struct vc_conn *c, struct sv_res *res, int n, int64_t timeout_ns)
{
	uint64_t end = vs_now_ns() + (uint64_t)timeout_ns;

	for (;;) {
		int all = 1, rc;

		sv_poll(c, res, n);
		for (int i = 0; i < n; i++)
			all &= res[i].done;
		if (all)
			return 0;
		if (vs_now_ns() >= end)
			return -ETIMEDOUT;
		rc = vc_conn_wait(c, 100 * 1000000ll);
		if (rc == -ECONNRESET)
			return rc;
	}
}

int sv_run(struct vc_conn *c, const struct sv_req *r, struct sv_res *res, int64_t timeout_ns)
{
	int rc = sv_submit(c, r, res);

	return rc < 0 ? rc : sv_wait(c, res, 1, timeout_ns);
}

int sv_cancel(struct vc_conn *c, uint64_t ud)
{
	struct vs_sqe e;

	memset(&e, 0, sizeof(e));
	e.opcode = VS_OP_CANCEL;
	e.user_data = ud;
	return vc_conn_submit(c, &e);
}

int sv_fixture_open(const char *path, struct sv_fixture *f)
{
	struct stat sb;
	char err[256];
	int fd = open(path, O_RDONLY);

	memset(f, 0, sizeof(*f));
	if (fd < 0 || fstat(fd, &sb) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	f->len = (size_t)sb.st_size;
	f->map = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (f->map == MAP_FAILED) {
		f->map = NULL;
		return -1;
	}
	if (vd_st_parse(f->map, f->len, &f->st, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: %s\n", path, err);
		return -1;
	}
	return 0;
}

void sv_fixture_close(struct sv_fixture *f)
{
	vd_st_free(f->st);
	if (f->map)
		munmap(f->map, f->len);
	memset(f, 0, sizeof(*f));
}

static const struct vd_st_tensor *fx(const struct sv_fixture *f, const char *prompt,
                                     const char *what)
{
	char key[128];

	snprintf(key, sizeof(key), "%s.%s", prompt, what);
	return vd_st_find(f->st, key);
}

int sv_prompt(const struct sv_fixture *f, const char *name, int32_t hidden, int32_t merge,
              struct sv_prompt *p)
{
	const struct vd_st_tensor *tt = fx(f, name, "tokens"), *it = fx(f, name, "items"),
	                          *gt = fx(f, name, "greedy");
	const int32_t *iv;

	memset(p, 0, sizeof(*p));
	if (!tt || !it || !gt)
		return -1;
	p->tok = tt->data;
	p->n = (int32_t)tt->shape[0];
	p->greedy = gt->data;
	p->n_greedy = (int32_t)gt->shape[0];
	p->n_items = (int32_t)it->shape[0];
	if (p->n_items > SV_MAX_ITEMS)
		return -1;
	iv = it->data;
	for (int32_t k = 0; k < p->n_items; k++) {
		struct sv_item *s = &p->items[k];
		char what[16];
		const struct vd_st_tensor *et;

		snprintf(what, sizeof(what), "emb%d", k);
		et = fx(f, name, what);
		if (!et || et->shape[1] != hidden)
			return -1;
		s->emb = et->data;
		s->dtype = VS_DTYPE_F32;
		s->rows = iv[5 * k + 1];
		s->cols = hidden;
		s->placeholder = (uint32_t)iv[5 * k];
		if (iv[5 * k + 2]) {   /* fixture grids are before the merge, the wire's after */
			s->grid[0] = iv[5 * k + 2];
			s->grid[1] = iv[5 * k + 3] / merge;
			s->grid[2] = iv[5 * k + 4] / merge;
		}
		s->tensor_id = 1000 + (uint64_t)k;
	}
	return 0;
}

int sv_first_diff(const int32_t *a, const int32_t *b, int n)
{
	int i = 0;

	while (i < n && a[i] == b[i])
		i++;
	return i;
}

static void *loop_main(void *arg)
{
	struct sv_loop *l = arg;
	int e = vd_server_new(&l->so, &l->srv);

	__atomic_store_n(&l->state, e < 0 ? e : 1, __ATOMIC_RELEASE);
	if (e >= 0)
		vd_server_run(l->srv);
	return NULL;
}

int sv_loop_start(struct sv_loop *l, const char *sock, struct vd_engine *e)
{
	return sv_loop_start_timeout(l, sock, e, 0);
}

int sv_loop_start_timeout(struct sv_loop *l, const char *sock, struct vd_engine *e,
			  uint32_t client_timeout_ms)
{
	memset(l, 0, sizeof(*l));
	vd_conf_server_defaults(&l->so);
	if (client_timeout_ms)
		l->so.client_timeout_ms = client_timeout_ms;
	l->so.socket_path = sock;
	l->so.sink_new = vd_engine_sink_new;
	l->so.sink_ctx = e;
	if (pthread_create(&l->thr, NULL, loop_main, l))
		return -1;
	while (!__atomic_load_n(&l->state, __ATOMIC_ACQUIRE))
		usleep(1000);
	if (l->state < 0) {
		pthread_join(l->thr, NULL);
		return -1;
	}
	return 0;
}

void sv_loop_stop(struct sv_loop *l)
{
	vd_server_stop(l->srv);
	pthread_join(l->thr, NULL);
	vd_server_free(l->srv);
}
