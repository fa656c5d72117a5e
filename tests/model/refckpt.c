/* tests/model/refckpt.c — see refckpt.h. */
#include <dirent.h>
#include <errno.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/model/refckpt.h"

extern char **environ;

static uint64_t fnv1a_file(const char *path, int *ok)
{
	uint64_t h = 0xcbf29ce484222325ull;
	unsigned char buf[65536];
	FILE *f = fopen(path, "rb");
	size_t n;

	*ok = f != NULL;
	if (!f)
		return 0;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		for (size_t i = 0; i < n; i++)
			h = (h ^ buf[i]) * 0x100000001b3ull;
	fclose(f);
	return h;
}

int rc_mkmodel(const char *exe, json_t *args, const char *dir)
{
	size_t n = json_array_size(args);
	char **argv = calloc(n + 3, sizeof(*argv));
	pid_t pid;
	int rc, st;

	if (!argv)
		return -ENOMEM;
	argv[0] = (char *)exe;
	for (size_t i = 0; i < n; i++)
		argv[i + 1] = (char *)json_string_value(json_array_get(args, i));
	argv[n + 1] = (char *)dir;
	rc = posix_spawn(&pid, exe, NULL, NULL, argv, environ);
	free(argv);
	if (rc)
		return -rc;
	if (waitpid(pid, &st, 0) < 0)
		return -errno;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

int rc_check_files(const char *dir, json_t *files, const char *name, const char *generator,
		   bool no_extra)
{
	char path[8192], got[17];
	const char *fname;
	json_t *fh;
	int bad = 0, ok;

	json_object_foreach(files, fname, fh) {
		snprintf(path, sizeof(path), "%s/%s", dir, fname);
		snprintf(got, sizeof(got), "%016llx", (unsigned long long)fnv1a_file(path, &ok));
		if (!ok) {
			fprintf(stderr, "FAIL %s: vlm-mkmodel did not write %s\n", name, fname);
			bad++;
		} else if (strcmp(got, json_string_value(fh))) {
			fprintf(stderr, "FAIL %s/%s: FNV-1a %s, manifest says %s: vlm-mkmodel's output "
				"drifted; regenerate the fixtures with %s\n", name, fname, got,
				json_string_value(fh), generator);
			bad++;
		}
	}
	if (no_extra) {
		DIR *d = opendir(dir);

		for (struct dirent *e; d && (e = readdir(d));)
			if (e->d_name[0] != '.' && !json_object_get(files, e->d_name)) {
				fprintf(stderr, "FAIL %s: unexpected file %s\n", name, e->d_name);
				bad++;
			}
		if (d)
			closedir(d);
	}
	return bad;
}

void rc_rm_dir(const char *dir)
{
	char p[8192];
	DIR *d = opendir(dir);

	if (!d)
		return;
	for (struct dirent *e; (e = readdir(d));)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
			unlink(p);
		}
	closedir(d);
	rmdir(dir);
}
