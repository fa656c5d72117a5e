/*
 * test-hostile-fair — a hog slows itself, not others (issue 15, item 3).
 *
 * usage: test-hostile-fair   ($VLMD, $VLM_MKMODEL from meson)
 *
 * vlmd at --max-running 2 --max-waiting 16. A hog connection submits 40 long requests (300
 * tokens each) at once: the queue fills and the hog is refused beyond its share (-EBUSY "queue
 * full: share S of 18"). Then a victim connection submits 4 short requests. Checked:
 *  - every victim request is accepted (the hog is above its share, the victim below) and ends
 *    with its 4 tokens;
 *  - admission is round robin across clients: when the victim's last request finishes, at least
 *    4 of the hog's accepted requests have not produced a token yet (FCFS would have run every
 *    queued hog request before the victim's);
 *  - the hog's requests all complete (it only slowed itself);
 *  - --client-weights: a valid list is accepted, a weight 0 or a malformed list is refused at
 *    start with a message naming the setting.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../serve/sv.h"
#include "shm/doorbell.h"

#define SEC 1000000000ll
#define N_HOG 40
#define N_VIC 4

static const char *vl_args[] = { "--preset", "tiny", "--dtype", "f32", "--seed", "11", NULL };

int main(void)
{
	char dir[256], wbuf[64];
	struct th_daemon d;
	struct vc_conn *hog = NULL, *vic = NULL;
	static struct sv_res hr[N_HOG], vr[N_VIC];
	int32_t tok[20];
	static const char *const lim[] = { "--max-running", "2", "--max-waiting", "16",
	                                   "--client-weights", NULL, NULL };
	const char *args[8];
	int accepted = 0, busy = 0, unstarted = 0, vdone;
	uint64_t end;

	for (int i = 0; i < 20; i++)
		tok[i] = 3 + (i * 17) % 240;
	if (sv_make_model(vl_args, dir) < 0)
		return 1;
	memcpy(args, lim, sizeof(lim));
	snprintf(wbuf, sizeof(wbuf), "%u:3,4242:7", (unsigned)getuid());
	args[5] = wbuf;
	if (sv_start(&d, dir, args) < 0 || th_connect(&d, "hog", &hog) < 0 ||
	    th_connect(&d, "victim", &vic) < 0) {
		fprintf(stderr, "setup failed\n");
		return 1;
	}
	for (int i = 0; i < N_HOG; i++) {
		struct sv_req r = { .ud = 100 + (uint64_t)i, .tok = tok, .n = 20, .p = sv_greedy(300) };

		CHECK(sv_submit(hog, &r, &hr[i]) == 0, "hog submit %d", i);
	}
	/* the refusals come at once, in order: wait for the last submission's answer */
	end = vs_now_ns() + (uint64_t)(30 * SEC);
	while (!hr[N_HOG - 1].done && hr[N_HOG - 1].n_tok == 0 && vs_now_ns() < end) {
		sv_poll(hog, hr, N_HOG);
		vc_conn_wait(hog, 5 * 1000000ll);
	}
	for (int i = 0; i < N_HOG; i++)
		busy += hr[i].error == -EBUSY;
	CHECK(busy > 0, "the hog was never refused: the queue did not fill (test ineffective)");
	for (int i = 0; i < N_HOG && busy; i++)
		if (hr[i].error == -EBUSY) {
			CHECK(strstr(hr[i].msg, "queue full: share") != NULL, "hog refusal text '%s'",
			      hr[i].msg);
			break;
		}
	for (int i = 0; i < N_VIC; i++) {
		struct sv_req r = { .ud = 200 + (uint64_t)i, .tok = tok, .n = 20, .p = sv_greedy(4) };

		CHECK(sv_submit(vic, &r, &vr[i]) == 0, "victim submit %d", i);
	}
	end = vs_now_ns() + (uint64_t)(60 * SEC);
	do {
		sv_poll(hog, hr, N_HOG);
		sv_poll(vic, vr, N_VIC);
		vdone = 0;
		for (int i = 0; i < N_VIC; i++)
			vdone += vr[i].done;
		if (vdone < N_VIC)
			vc_conn_wait(vic, 5 * 1000000ll);
	} while (vdone < N_VIC && vs_now_ns() < end);
	sv_poll(hog, hr, N_HOG);
	for (int i = 0; i < N_HOG; i++) {
		accepted += hr[i].error != -EBUSY;
		unstarted += hr[i].error != -EBUSY && hr[i].n_tok == 0;
	}
	for (int i = 0; i < N_VIC; i++)
		CHECK(vr[i].done && !vr[i].error && vr[i].n_tok == 4, "victim request %d: done %d "
		      "error %d '%s', %d tokens (the hog's queue must not refuse or starve it)", i,
		      vr[i].done, vr[i].error, vr[i].msg, vr[i].n_tok);
	CHECK(unstarted >= 4, "when the victim finished only %d of the hog's %d accepted requests "
	      "were still unstarted: admission is not round robin", unstarted, accepted);
	printf("hog: %d accepted, %d refused; victim done with %d hog requests unstarted\n",
	       accepted, busy, unstarted);
	CHECK(sv_wait(hog, hr, N_HOG, 120 * SEC) == 0, "the hog's requests did not finish");
	for (int i = 0; i < N_HOG; i++)
		CHECK(hr[i].error == -EBUSY || hr[i].n_tok == 300, "hog request %d: error %d, %d "
		      "tokens", i, hr[i].error, hr[i].n_tok);
	vc_conn_free(hog);
	vc_conn_free(vic);
	CHECK(th_stop(&d) == 0, "vlmd did not exit cleanly");

	/* bad weight lists are refused at start */
	{
		static const char *const bad[][3] = { { "--client-weights", "1000:0", NULL },
		                                      { "--client-weights", "abc", NULL } };

		for (int i = 0; i < 2; i++) {
			struct th_daemon b;

			CHECK(sv_start(&b, dir, bad[i]) < 0, "vlmd started with --client-weights %s",
			      bad[i][1]);
		}
	}
	printf("fair share: %s\n", sv_failures ? "FAILED" : "ok");
	sv_rm_model(dir);
	return sv_failures ? 1 : 0;
}
