/*
 * test-front — a front (daemon/io/server.h: vd_server_front_*) submits requests through the real
 * I/O loop's routing and gets their completions through its deliver hook, without an shm segment:
 * ECHO comes back as TOKENS + FINISH from the echo sink, NOP as a bare FINISH, GENERATE (no model)
 * is refused by the sink the loop routes it to, a detached front gets nothing more and is refused.
 * Run with the echo answered inline (events in the loop's private queue) and from a worker thread
 * (events through the shared queue and its eventfd). The front is driven from the loop thread
 * through the heartbeat hook, as a gateway living in the loop would be.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/io/server.h"
#include "daemon/ops/conf.h"

#define MAXEV 64

struct front_test {
	struct vd_server *srv;
	int id;
	int ticks;
	int phase;
	int rc_generate, rc_after_detach, rc_cancel;
	char why_generate[VS_CQE_MESSAGE_LEN];
	struct vs_cqe ev[MAXEV];
	int n_ev;
	int n_ev_at_detach;
	unsigned char arena[4096] __attribute__((aligned(64)));
};

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
	printf(__VA_ARGS__); printf("\n"); } } while (0)

static void deliver(void *ctx, const struct vs_cqe *cqe)
{
	struct front_test *t = ctx;

	if (t->n_ev < MAXEV)
		t->ev[t->n_ev++] = *cqe;
}

/* A request as a client would write it, validated by the loop's own validator. */
static struct vd_request *make(struct front_test *t, uint8_t op, uint64_t ud, uint32_t n_tokens)
{
	struct vs_sqe e = { .opcode = op, .user_data = ud, .tokens_off = 0, .n_tokens = n_tokens };
	struct vd_limits lim;
	struct vd_request *r = NULL;
	char why[VS_CQE_MESSAGE_LEN];

	vd_limits_default(&lim);
	if (vd_validate_sqe(&e, t->arena, sizeof(t->arena), &lim, &r, why, sizeof(why)) < 0) {
		CHECK(0, "validate: %s", why);
		return NULL;
	}
	return r;
}

static int finished(const struct front_test *t, uint64_t ud)
{
	for (int i = 0; i < t->n_ev; i++)
		if (t->ev[i].user_data == ud && t->ev[i].type == VS_CQE_FINISH)
			return 1;
	return 0;
}

/* Loop thread, every tick. */
static void on_tick(void *ctx, uint64_t now_ns)
{
	struct front_test *t = ctx;
	struct vd_front f = { deliver, t };
	char err[VS_CQE_MESSAGE_LEN] = "";
	uint32_t *tok = (uint32_t *)t->arena;

	(void)now_ns;
	t->ticks++;
	switch (t->phase) {
	case 0:
		t->id = vd_server_front_attach(t->srv, &f);
		CHECK(t->id >= 0, "attach: %d", t->id);
		tok[0] = 5;
		tok[1] = 6;
		tok[2] = 7;
		CHECK(vd_server_front_submit(t->srv, t->id, make(t, VS_OP_ECHO, 11, 3), err, sizeof(err)) == 0,
		      "echo submit: %s", err);
		CHECK(vd_server_front_submit(t->srv, t->id, make(t, VS_OP_NOP, 12, 0), err, sizeof(err)) == 0,
		      "nop submit: %s", err);
		t->rc_generate = vd_server_front_submit(t->srv, t->id, make(t, VS_OP_GENERATE, 13, 3),
							t->why_generate, sizeof(t->why_generate));
		t->rc_cancel = vd_server_front_cancel(t->srv, t->id, 999);
		t->phase = 1;
		break;
	case 1:
		if (finished(t, 11) && finished(t, 12)) {
			vd_server_front_detach(t->srv, t->id);
			t->n_ev_at_detach = t->n_ev;
			t->rc_after_detach = vd_server_front_submit(t->srv, t->id,
								    make(t, VS_OP_ECHO, 14, 3), err,
								    sizeof(err));
			t->phase = 2;
		}
		break;
	case 2:
		vd_server_stop(t->srv); /* a tick after the detach: nothing more may have come */
		break;
	}
	if (t->ticks > 2000) { /* 10 s of 5 ms ticks: something is stuck */
		CHECK(0, "no completions after %d ticks (phase %d)", t->ticks, t->phase);
		vd_server_stop(t->srv);
	}
}

static void run(int threaded)
{
	struct front_test *t = calloc(1, sizeof(*t));
	struct vd_server_opts o;
	char sock[64];
	int e, ntok = 0, fin = 0, nop_fin = 0;

	snprintf(sock, sizeof(sock), "/tmp/vlm-front-%d-%d.sock", (int)getpid(), threaded);
	vd_conf_server_defaults(&o);
	o.socket_path = sock;
	o.echo_threaded = threaded;
	o.tick_ms = 5;
	o.spin_us = 0;
	o.on_tick = on_tick;
	o.tick_ctx = t;
	e = vd_server_new(&o, &t->srv);
	CHECK(e == 0, "vd_server_new: %s", strerror(-e));
	if (e)
		return;
	e = vd_server_run(t->srv);
	CHECK(e == 0, "run: %d", e);
	vd_server_free(t->srv);

	CHECK(t->rc_generate == -EOPNOTSUPP, "GENERATE without a model: %d (%s)", t->rc_generate,
	      t->why_generate);
	CHECK(t->rc_cancel == -ENOENT, "cancel of an unknown request: %d", t->rc_cancel);
	CHECK(t->rc_after_detach == -ENOENT, "submit after detach: %d", t->rc_after_detach);
	CHECK(t->n_ev == t->n_ev_at_detach, "%d completions after detach", t->n_ev - t->n_ev_at_detach);
	for (int i = 0; i < t->n_ev; i++) {
		const struct vs_cqe *c = &t->ev[i];

		if (c->user_data == 11 && c->type == VS_CQE_TOKENS) {
			for (int k = 0; k < c->count; k++, ntok++)
				CHECK(c->u.tokens[k] == (uint32_t)(5 + ntok), "echoed token %d = %u", ntok,
				      c->u.tokens[k]);
		} else if (c->user_data == 11 && c->type == VS_CQE_FINISH) {
			fin++;
			CHECK(c->u.finish.reason == VS_FINISH_STOP && c->u.finish.prompt_tokens == 3,
			      "echo finish: reason %u prompt %u", c->u.finish.reason,
			      c->u.finish.prompt_tokens);
		} else if (c->user_data == 12 && c->type == VS_CQE_FINISH) {
			nop_fin++;
		} else {
			CHECK(0, "unexpected completion: user_data %llu type %u",
			      (unsigned long long)c->user_data, c->type);
		}
	}
	CHECK(ntok == 3, "%d tokens echoed", ntok);
	CHECK(fin == 1 && nop_fin == 1, "finishes: echo %d nop %d", fin, nop_fin);
	printf("front, echo %s: %d completions\n", threaded ? "threaded" : "inline", t->n_ev);
	free(t);
}

int main(void)
{
	sigset_t ss;

	/* the server reads SIGINT/SIGTERM from a signalfd: block them first */
	sigemptyset(&ss);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &ss, NULL);
	run(0);
	run(1);
	printf("%s\n", failures ? "FAILED" : "ok");
	return failures ? 1 : 0;
}
