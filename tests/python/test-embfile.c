/*
 * tests/python/test-embfile.c — vlm-generate's embedding file reader (tools/npy.c,
 * tools/embfile.c): .npy versions and dtypes, safetensors with and without a tensor name, the
 * squeeze of leading 1s, and every refusal (Fortran order, big endian, structured, truncated,
 * malformed headers, wrong rank, missing file/tensor). Files are written by hand here, byte by
 * byte as the formats specify, so the test does not depend on NumPy.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/embfile.h"
#include "tools/npy.h"

static char tmpdir[64];

/* Writes a .npy with the given dict text (padded as NumPy does) and data; returns the path. */
static const char *write_npy(const char *name, int major, const char *dict, const void *data,
			     size_t n)
{
	static char path[128];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	size_t pre = major == 1 ? 10 : 12, dl = strlen(dict);
	size_t total = (pre + dl + 1 + 63) / 64 * 64, hlen = total - pre;
	unsigned char *b = calloc(1, total + n);
	memcpy(b, "\x93NUMPY", 6);
	b[6] = (unsigned char)major;
	b[8] = hlen & 0xff;
	b[9] = (hlen >> 8) & 0xff;
	if (major != 1) {
		b[10] = (hlen >> 16) & 0xff;
		b[11] = 0;
	}
	memset(b + pre, ' ', hlen);
	memcpy(b + pre, dict, dl);
	b[total - 1] = '\n';
	if (n)
		memcpy(b + total, data, n);
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(b, 1, total + n, f), total + n);
	fclose(f);
	free(b);
	return path;
}

/* Writes a safetensors file from a JSON header and a data area. */
static const char *write_st(const char *name, const char *json, const void *data, size_t n)
{
	static char path[128];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	uint64_t hl = strlen(json);
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	unsigned char len8[8];
	for (int i = 0; i < 8; i++)
		len8[i] = (hl >> (8 * i)) & 0xff;
	fwrite(len8, 1, 8, f);
	fwrite(json, 1, hl, f);
	if (n)
		fwrite(data, 1, n, f);
	fclose(f);
	return path;
}

static float fdata[24];

static void setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/vlm-embfile-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	for (int i = 0; i < 24; i++)
		fdata[i] = (float)i * 0.5f - 3.0f;
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

static void expect_tensor(const char *spec, uint8_t code, uint8_t bits, int64_t rows, int64_t cols,
			  const void *want)
{
	DLManagedTensor *t = NULL;
	char err[256];
	int r = emb_load(spec, &t, err, sizeof(err));
	ck_assert_msg(r == 0, "%s: %d %s", spec, r, err);
	ck_assert_int_eq(t->dl_tensor.device.device_type, kDLCPU);
	ck_assert_int_eq(t->dl_tensor.ndim, 2);
	ck_assert_int_eq(t->dl_tensor.dtype.code, code);
	ck_assert_int_eq(t->dl_tensor.dtype.bits, bits);
	ck_assert_int_eq(t->dl_tensor.dtype.lanes, 1);
	ck_assert_int_eq(t->dl_tensor.shape[0], rows);
	ck_assert_int_eq(t->dl_tensor.shape[1], cols);
	ck_assert_ptr_null(t->dl_tensor.strides);
	ck_assert_uint_eq((uintptr_t)t->dl_tensor.data % 64, 0);
	ck_assert_mem_eq(t->dl_tensor.data, want, (size_t)(rows * cols * bits / 8));
	t->deleter(t);
}

static void expect_fail(const char *spec, int code, const char *needle)
{
	DLManagedTensor *t = (DLManagedTensor *)1;
	char err[256];
	int r = emb_load(spec, &t, err, sizeof(err));
	ck_assert_msg(r == code, "%s: got %d (%s), want %d", spec, r, err, code);
	ck_assert_ptr_null(t);
	ck_assert_msg(strstr(err, needle), "%s: message '%s' lacks '%s'", spec, err, needle);
}

START_TEST(npy_f32_versions)
{
	const char *p = write_npy("a.npy", 1, "{'descr': '<f4', 'fortran_order': False, "
				  "'shape': (4, 6), }", fdata, sizeof(fdata));
	expect_tensor(p, kDLFloat, 32, 4, 6, fdata);
	p = write_npy("b.npy", 2, "{\"shape\": (6, 4), \"descr\": \"=f4\", \"fortran_order\": False}",
		      fdata, sizeof(fdata));
	expect_tensor(p, kDLFloat, 32, 6, 4, fdata);
	p = write_npy("c.npy", 3, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 3, 8)}",
		      fdata, sizeof(fdata));
	expect_tensor(p, kDLFloat, 32, 3, 8, fdata);
}
END_TEST

START_TEST(npy_f16_bf16_f64)
{
	uint16_t h[6] = { 0x3c00, 0x4000, 0xbc00, 0, 0x7bff, 0x0001 };
	const char *p = write_npy("h.npy", 1, "{'descr': '<f2', 'fortran_order': False, "
				  "'shape': (2, 3), }", h, sizeof(h));
	expect_tensor(p, kDLFloat, 16, 2, 3, h);
	p = write_npy("bf.npy", 1, "{'descr': '|V2', 'fortran_order': False, 'shape': (3, 2), }", h,
		      sizeof(h));
	expect_tensor(p, kDLBfloat, 16, 3, 2, h);
	double d[6] = { 1.5, -2.25, 3e10, 0.0, 1.0 / 3.0, -7.0 };
	float want[6];
	for (int i = 0; i < 6; i++)
		want[i] = (float)d[i];
	p = write_npy("d.npy", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", d,
		      sizeof(d));
	expect_tensor(p, kDLFloat, 32, 2, 3, want);
}
END_TEST

START_TEST(npy_refusals)
{
	const char *p;
	p = write_npy("fo.npy", 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (4, 6), }",
		      fdata, sizeof(fdata));
	expect_fail(p, -EBADMSG, "Fortran");
	p = write_npy("be.npy", 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (4, 6), }",
		      fdata, sizeof(fdata));
	expect_fail(p, -EBADMSG, ">f4");
	p = write_npy("i4.npy", 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (4, 6), }",
		      fdata, sizeof(fdata));
	expect_fail(p, -EBADMSG, "not supported");
	p = write_npy("st.npy", 1, "{'descr': [('a', '<f4')], 'fortran_order': False, "
		      "'shape': (4,), }", fdata, 16);
	expect_fail(p, -EBADMSG, "structured");
	p = write_npy("tr.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (5, 6), }",
		      fdata, sizeof(fdata));
	expect_fail(p, -EBADMSG, "truncated");
	p = write_npy("key.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 6), "
		      "'evil': 1}", fdata, sizeof(fdata));
	expect_fail(p, -EBADMSG, "evil");
	p = write_npy("miss.npy", 1, "{'descr': '<f4', 'shape': (4, 6), }", fdata, sizeof(fdata));
	expect_fail(p, -EBADMSG, "fortran_order");
	p = write_npy("ovf.npy", 1, "{'descr': '<f4', 'fortran_order': False, "
		      "'shape': (99999999999, 99999999999), }", fdata, sizeof(fdata));
	expect_fail(p, -EBADMSG, "");
	p = write_npy("r1.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (24,), }",
		      fdata, sizeof(fdata));
	expect_fail(p, -ENOTSUP, "2-D");
	p = write_npy("r3.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }",
		      fdata, sizeof(fdata));
	expect_fail(p, -ENOTSUP, "[2, 3, 4]");
	p = write_npy("z.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 6), }",
		      fdata, 0);
	expect_fail(p, -ENOTSUP, "2-D");
	p = write_npy("v9.npy", 9, "{}", NULL, 0);
	expect_fail(p, -EBADMSG, "version");

	char path[128];
	snprintf(path, sizeof(path), "%s/garbage.npy", tmpdir);
	FILE *f = fopen(path, "wb");
	static const char g[] = "\x93NUMPY\x01\x00\xff\x7f{'descr'";
	fwrite(g, 1, sizeof(g) - 1, f);
	fclose(f);
	expect_fail(path, -EBADMSG, "truncated");
	expect_fail("/nonexistent/emb.npy", -ENOENT, "/nonexistent/emb.npy");
	expect_fail(tmpdir, -EINVAL, "regular");
}
END_TEST

START_TEST(npy_parser_direct)
{
	/* Every prefix of a valid file must fail cleanly (no read past the buffer: ASan). */
	const char *p = write_npy("ok.npy", 1, "{'descr': '<f4', 'fortran_order': False, "
				  "'shape': (4, 6), }", fdata, sizeof(fdata));
	FILE *f = fopen(p, "rb");
	unsigned char buf[512];
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	struct npy_info info;
	char err[128];
	ck_assert_int_eq(npy_parse(buf, n, &info, err, sizeof(err)), 0);
	ck_assert_uint_eq(info.data_off, 128);
	ck_assert_uint_eq(info.data_bytes, sizeof(fdata));
	for (size_t k = 0; k < n; k++) {
		unsigned char *cp = malloc(k ? k : 1);
		memcpy(cp, buf, k);
		ck_assert_int_eq(npy_parse(cp, k, &info, err, sizeof(err)), -EBADMSG);
		free(cp);
	}
}
END_TEST

START_TEST(npy_parser_mutations)
{
	/* A small deterministic fuzz: random byte changes in the header of a valid file never
	 * crash (ASan), and whatever parses describes data inside the buffer. */
	const char *p = write_npy("m.npy", 1, "{'descr': '<f4', 'fortran_order': False, "
				  "'shape': (4, 6), }", fdata, sizeof(fdata));
	FILE *f = fopen(p, "rb");
	unsigned char buf[512], cp[512];
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	static const char alphabet[] = "{}()[],:' \"0123456789<>|=fFiV2L\n";
	uint64_t x = 0x9e3779b97f4a7c15u;
	int ok = 0;
	for (int it = 0; it < 20000; it++) {
		memcpy(cp, buf, n);
		int k = 1 + (int)(x % 4);
		for (int j = 0; j < k; j++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			size_t at = x % 128;
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			cp[at] = (x & 1) ? (unsigned char)(x >> 8) :
				 (unsigned char)alphabet[(x >> 8) % (sizeof(alphabet) - 1)];
		}
		size_t len = n - (x >> 20) % 8;
		struct npy_info info;
		char err[128];
		int r = npy_parse(cp, len, &info, err, sizeof(err));
		ck_assert_msg(r == 0 || r == -EBADMSG, "r=%d", r);
		if (r == 0) {
			ok++;
			ck_assert_uint_le(info.data_off, len);
			ck_assert_uint_le(info.data_bytes, len - info.data_off);
			ck_assert_uint_gt(npy_dtype_size(info.dtype), 0);
		} else {
			ck_assert_uint_gt(strlen(err), 0);
		}
	}
	ck_assert_int_gt(ok, 0); /* some mutations (spaces, digits) stay valid */
}
END_TEST

START_TEST(safetensors_files)
{
	/* one tensor: no name needed; data at an odd offset inside the data area */
	char json[512];
	unsigned char area[1 + sizeof(fdata)];
	area[0] = 0xee;
	memcpy(area + 1, fdata, sizeof(fdata));
	snprintf(json, sizeof(json), "{\"emb\": {\"dtype\": \"F32\", \"shape\": [6, 4], "
		 "\"data_offsets\": [1, %zu]}}", 1 + sizeof(fdata));
	const char *p = write_st("one.safetensors", json, area, sizeof(area));
	expect_tensor(p, kDLFloat, 32, 6, 4, fdata);
	char spec[192];
	snprintf(spec, sizeof(spec), "%s:emb", p);
	expect_tensor(spec, kDLFloat, 32, 6, 4, fdata);
	snprintf(spec, sizeof(spec), "%s:nope", p);
	expect_fail(spec, -ENOENT, "nope");

	/* two tensors: the name picks one; without a name it is an error naming the choice */
	snprintf(json, sizeof(json), "{\"__metadata__\": {\"a\": \"b\"}, "
		 "\"x.emb0\": {\"dtype\": \"BF16\", \"shape\": [1, 2, 3], \"data_offsets\": [0, 12]}, "
		 "\"x.ids\": {\"dtype\": \"I32\", \"shape\": [3], \"data_offsets\": [12, 24]}}");
	p = write_st("two.safetensors", json, fdata, 24);
	snprintf(spec, sizeof(spec), "%s:x.emb0", p);
	expect_tensor(spec, kDLBfloat, 16, 2, 3, fdata);
	expect_fail(p, -EINVAL, "x.emb0");
	snprintf(spec, sizeof(spec), "%s:x.ids", p);
	expect_fail(spec, -ENOTSUP, "I32");

	p = write_st("bad.safetensors", "{\"emb\": {\"dtype\": \"F32\", \"shape\": [6, 4], "
		     "\"data_offsets\": [0, 999]}}", fdata, sizeof(fdata));
	expect_fail(p, -EBADMSG, "bad.safetensors");
	p = write_st("npyname.safetensors", "not json at all", NULL, 0);
	expect_fail(p, -EBADMSG, "npyname");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("embfile");
	TCase *tc = tcase_create("files");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, npy_f32_versions);
	tcase_add_test(tc, npy_f16_bf16_f64);
	tcase_add_test(tc, npy_refusals);
	tcase_add_test(tc, npy_parser_direct);
	tcase_add_test(tc, npy_parser_mutations);
	tcase_add_test(tc, safetensors_files);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
