/*
 * replay.c — the main of every fuzz target when it is not built with libFuzzer: runs
 * LLVMFuzzerTestOneInput over files and directories (a committed corpus), so every build replays
 * the corpus (also under ASan+UBSan) and a crash found by a fuzzer stays fixed.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *b = NULL;
	size_t len = 0, cap = 0, r;

	if (!f) {
		perror(path);
		return -1;
	}
	do {
		if (len == cap) {
			cap = cap ? cap * 2 : 4096;
			b = realloc(b, cap);
			if (!b)
				abort();
		}
		r = fread(b + len, 1, cap - len, f);
		len += r;
	} while (r);
	fclose(f);
	LLVMFuzzerTestOneInput(b, len);
	free(b);
	return 0;
}

int main(int argc, char **argv)
{
	int n = 0;

	for (int i = 1; i < argc; i++) {
		struct stat sb;
		DIR *d;
		struct dirent *e;
		char p[4096];

		if (stat(argv[i], &sb) < 0) {
			perror(argv[i]);
			return 1;
		}
		if (!S_ISDIR(sb.st_mode)) {
			if (run_file(argv[i]) < 0)
				return 1;
			n++;
			continue;
		}
		d = opendir(argv[i]);
		while (d && (e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			snprintf(p, sizeof(p), "%.2000s/%.1000s", argv[i], e->d_name);
			if (run_file(p) < 0)
				return 1;
			n++;
		}
		if (d)
			closedir(d);
	}
	printf("replayed %d inputs\n", n);
	return n ? 0 : 1;
}
