/*
 * tests/cuda/cuda-embed-bench.cu — embedding substitution cost vs one copy of the image bytes.
 *
 * The issue's goal: substituting a 1,024-row image costs <= 1.2x one device-to-device copy of
 * those bytes. Measured in the same run, on the same stream, with CUDA events:
 *   copy_src  one cudaMemcpyAsync of the image rows (rows x hidden x source dtype)
 *   copy_out  one cudaMemcpyAsync of the fp32 hidden-state rows the substitution must write
 *   kernel    the fused gather+substitution kernel writing the 1,024 rows into the hidden states
 *   op        the backend's embed op end to end (host validation + upload + kernel), wall clock
 * With an fp32 image copy_src = copy_out is the true minimum; with a bf16 image the kernel reads
 * half the bytes it writes, so copy_out is the fair floor (the activations are fp32).
 * Prints a table and, last, one JSON line. Exit 77 without a GPU. Not a unit test (timings).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime.h>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/ops.h"

#define ROWS 1024
#define REPS 200

#define CK(x)                                                                                    \
	do {                                                                                     \
		cudaError_t e_ = (x);                                                            \
		if (e_ != cudaSuccess) {                                                         \
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x,               \
			        cudaGetErrorString(e_));                                         \
			exit(1);                                                                 \
		}                                                                                \
	} while (0)

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

template <typename F>
static double time_us(cudaStream_t s, F f)
{
	cudaEvent_t a, b;
	CK(cudaEventCreate(&a));
	CK(cudaEventCreate(&b));
	for (int i = 0; i < 10; i++)
		f();
	CK(cudaEventRecord(a, s));
	for (int i = 0; i < REPS; i++)
		f();
	CK(cudaEventRecord(b, s));
	CK(cudaEventSynchronize(b));
	float ms = 0;
	CK(cudaEventElapsedTime(&ms, a, b));
	cudaEventDestroy(a);
	cudaEventDestroy(b);
	return ms * 1e3 / REPS;
}

int main(void)
{
	char err[256];
	struct vk_backend *be = NULL;
	int rc = vk_cuda_backend_open(&be, err, sizeof(err));
	if (rc == -ENODEV) {
		printf("SKIP: %s\n", err);
		return 77;
	}
	if (rc < 0) {
		fprintf(stderr, "backend: %s\n", err);
		return 1;
	}
	cudaStream_t s;
	CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
	const int hiddens[2] = { 1536, 3584 };
	const int dtypes[2] = { VK_DTYPE_BF16, VK_DTYPE_F32 };
	char json[2048];
	size_t jl = (size_t)snprintf(json, sizeof(json), "{\"bench\":\"embed_substitution\",\"rows\":%d,\"cases\":[", ROWS);
	printf("%-6s %-5s %10s %10s %10s %10s %9s %9s\n", "hidden", "src", "copy_src", "copy_out",
	       "kernel", "op", "k/src", "k/out");
	int first = 1;
	double worst_fp32 = 0.0;
	for (int hi = 0; hi < 2; hi++)
		for (int di = 0; di < 2; di++) {
			const int hidden = hiddens[hi], dt = dtypes[di];
			const size_t es = dt == VK_DTYPE_F32 ? 4 : 2;
			const size_t src_bytes = (size_t)ROWS * hidden * es;
			const size_t out_bytes = (size_t)ROWS * hidden * 4;
			void *src, *dst, *table;
			float *x;
			CK(cudaMalloc(&src, src_bytes));
			CK(cudaMalloc(&dst, out_bytes));
			CK(cudaMalloc(&x, out_bytes));
			CK(cudaMemset(src, 0x3c, src_bytes));
			/* a small bf16 table: every row is substituted, the table is not read */
			uint16_t *ht = (uint16_t *)calloc((size_t)16 * hidden, 2);
			struct vk_weight tw;
			if (be->ops->weight_load(be, ht, VK_DTYPE_BF16, 16, hidden, &tw)) {
				fprintf(stderr, "weight_load: %s\n", be->error);
				return 1;
			}
			table = tw.data;
			int32_t *tok = (int32_t *)calloc(ROWS, 4), *pos = (int32_t *)calloc(3 * ROWS, 4);
			int32_t *rsub = (int32_t *)calloc(ROWS, 4);
			int32_t *dtok, *drsub;
			struct vk_cuda_sub sub = { src, (int64_t)(hidden * es), 0, dt }, *dsub;
			CK(cudaMalloc(&dtok, ROWS * 4));
			CK(cudaMalloc(&drsub, ROWS * 4));
			CK(cudaMalloc(&dsub, sizeof(sub)));
			CK(cudaMemcpy(dtok, tok, ROWS * 4, cudaMemcpyHostToDevice));
			CK(cudaMemcpy(drsub, rsub, ROWS * 4, cudaMemcpyHostToDevice));
			CK(cudaMemcpy(dsub, &sub, sizeof(sub), cudaMemcpyHostToDevice));
			CK(cudaDeviceSynchronize());   /* legacy-stream setup done before stream s runs */

			const double t_src = time_us(s, [&] {
				CK(cudaMemcpyAsync(dst, src, src_bytes, cudaMemcpyDeviceToDevice, s));
			});
			const double t_out = time_us(s, [&] {
				CK(cudaMemcpyAsync(dst, x, out_bytes, cudaMemcpyDeviceToDevice, s));
			});
			const double t_k = time_us(s, [&] {
				CK(vk_cuda_embed(s, table, VK_DTYPE_BF16, hidden, dtok, drsub, dsub, ROWS, x));
			});
			/* the whole op, including host validation and descriptor upload */
			struct vk_row_source rs = { 0, ROWS, (enum vk_dtype)dt, 1, (int64_t)(hidden * es), src };
			struct vk_seq seq = { 0, ROWS, 0, 0, NULL };
			struct vk_batch b = { ROWS, 1, tok, pos, &seq, 1, &rs };
			for (int i = 0; i < 10; i++)
				be->ops->embed(be, &tw, &b, x);
			be->ops->sync(be);
			const double t0 = now();
			for (int i = 0; i < REPS; i++)
				if (be->ops->embed(be, &tw, &b, x)) {
					fprintf(stderr, "embed: %s\n", be->error);
					return 1;
				}
			be->ops->sync(be);
			const double t_op = (now() - t0) * 1e6 / REPS;
			const char *dn = dt == VK_DTYPE_F32 ? "fp32" : "bf16";
			printf("%-6d %-5s %8.2fus %8.2fus %8.2fus %8.2fus %8.2fx %8.2fx\n", hidden, dn, t_src,
			       t_out, t_k, t_op, t_k / t_src, t_k / t_out);
			if (dt == VK_DTYPE_F32 && t_k / t_src > worst_fp32)
				worst_fp32 = t_k / t_src;
			jl += (size_t)snprintf(json + jl, sizeof(json) - jl,
			                       "%s{\"hidden\":%d,\"src\":\"%s\",\"copy_src_us\":%.3f,"
			                       "\"copy_out_us\":%.3f,\"kernel_us\":%.3f,\"op_us\":%.3f,"
			                       "\"kernel_over_copy_src\":%.3f,\"kernel_over_copy_out\":%.3f}",
			                       first ? "" : ",", hidden, dn, t_src, t_out, t_k, t_op,
			                       t_k / t_src, t_k / t_out);
			first = 0;
			be->ops->weight_free(be, &tw);
			cudaFree(src);
			cudaFree(dst);
			cudaFree(x);
			cudaFree(dtok);
			cudaFree(drsub);
			cudaFree(dsub);
			free(ht);
			free(tok);
			free(pos);
			free(rsub);
		}
	snprintf(json + jl, sizeof(json) - jl, "],\"worst_fp32_kernel_over_copy\":%.3f,\"goal\":1.2}",
	         worst_fp32);
	printf("%s\n", json);
	cudaStreamDestroy(s);
	be->ops->destroy(be);
	return 0;
}
