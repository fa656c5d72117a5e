/* examples/generate.c — generate from prompt token ids with libvlmclient (the README's example).
 * Build: cc generate.c $(pkg-config --cflags --libs libvlmclient)
 * Run:   ./generate 1 5 17 33     (vlmd at $VLM_SOCKET, else /run/vlmd/vlmd.sock) */
#include <stdio.h>
#include <stdlib.h>
#include <vlm/vlm.h>

int main(int argc, char **argv)
{
	struct vlm_gen_params params = { .max_tokens = 16 };     /* zero = default: greedy */
	struct vlm_finish_info fin;
	struct vlm_request *req = NULL;
	struct vlm_conn *conn;
	int32_t prompt[256], out[64];
	int n = 0, got;

	for (int i = 1; i < argc && n < 256; i++)
		prompt[n++] = atoi(argv[i]);
	if (vlm_connect(NULL, &conn) < 0 || vlm_request_new(conn, &req) < 0 ||
	    vlm_request_set_tokens(req, prompt, n) < 0 || vlm_request_set_params(req, &params) < 0 ||
	    vlm_submit(req) < 0) {
		fprintf(stderr, "generate: %s\n", vlm_last_error());
		return 1;
	}
	while ((got = vlm_stream_read(req, out, 64, -1)) > 0)     /* blocks until tokens come */
		for (int i = 0; i < got; i++)
			printf("%d\n", out[i]);
	if (got == 0 && vlm_request_finish_info(req, &fin) == 0)
		printf("finish: reason %d, %u prompt + %u generated tokens, %llu us\n", fin.reason,
		       fin.prompt_tokens, fin.completion_tokens, (unsigned long long)fin.total_us);
	else
		fprintf(stderr, "generate: %s\n", vlm_last_error());   /* with vlmd's reason */
	vlm_request_free(req);
	vlm_disconnect(conn);
	return got < 0;
}
