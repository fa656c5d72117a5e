/*
 * tests/model/refckpt.h — the checkpoint side of the reference tests (test-model-reference,
 * test-vision-reference): make a checkpoint with vlm-mkmodel from a manifest's arguments, check
 * it is byte for byte the one the committed fixtures were computed on, and remove it.
 */
#ifndef VLM_TESTS_MODEL_REFCKPT_H
#define VLM_TESTS_MODEL_REFCKPT_H

#include <stdbool.h>

#include <jansson.h>

/* Run `exe ARGS... dir` (args: a JSON array of strings). 0, -EIO (non-zero exit), -errno. */
int rc_mkmodel(const char *exe, json_t *args, const char *dir);

/* Generator drift: every file of files ({"name": "FNV-1a 64 hex"}) exists in dir with that hash,
 * and with no_extra, dir holds no other file. Prints a FAIL line naming the checkpoint (name)
 * and the generator script to rerun for each problem; returns how many. */
int rc_check_files(const char *dir, json_t *files, const char *name, const char *generator,
		   bool no_extra);

/* Remove dir and the files in it (one level). */
void rc_rm_dir(const char *dir);

#endif
