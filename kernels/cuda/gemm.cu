/*
 * kernels/cuda/gemm.cu — the matmul of the CUDA backend on cuBLASLt, with cuBLAS as fallback.
 *
 * Why this way: HF Linear weights are [out, in] row-major, which is column-major [in, out]: with
 * op(A) = T the product needs no transposed copy of the weights. cuBLASLt adds the bias in the
 * GEMM epilogue (one pass over the output instead of two); its heuristic runs once per shape and the
 * plan is cached, so a decode step costs no host-side search. If Lt offers no algorithm (or
 * VLM_CUDA_NO_LT=1), cublasGemmEx plus a bias kernel computes the same thing. Both use one
 * preallocated workspace, which also makes them legal inside CUDA graph capture.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/ops.h"

namespace {

cudaDataType_t cuda_type(int dtype)
{
	return dtype == VK_DTYPE_BF16 ? CUDA_R_16BF : dtype == VK_DTYPE_F16 ? CUDA_R_16F : CUDA_R_32F;
}

void plan_destroy(struct vk_cuda_gemm_plan *p)
{
	if (p->c)
		cublasLtMatrixLayoutDestroy(p->c);
	if (p->b)
		cublasLtMatrixLayoutDestroy(p->b);
	if (p->a)
		cublasLtMatrixLayoutDestroy(p->a);
	if (p->desc)
		cublasLtMatmulDescDestroy(p->desc);
	memset(p, 0, sizeof(*p));
}

/* Builds the Lt descriptors and asks the heuristic for the best algorithm; p->ok = 0 when Lt
 * cannot do this shape (the fallback path is used then). */
void plan_build(struct vk_cuda_gemm *g, struct vk_cuda_gemm_plan *p)
{
	const cudaDataType_t t = cuda_type(p->dtype);
	const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
	const cublasLtEpilogue_t epi = p->bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
	const cublasComputeType_t ct = CUBLAS_COMPUTE_32F;
	cublasLtMatmulPreference_t pref = NULL;
	cublasLtMatmulHeuristicResult_t res;
	int found = 0;

	p->ok = 0;
	if (cublasLtMatmulDescCreate(&p->desc, ct, CUDA_R_32F) != CUBLAS_STATUS_SUCCESS)
		return;
	if (cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)) ||
	    cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)) ||
	    cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)))
		return;
	if (p->bias) {
		const int32_t bt = CUDA_R_32F;
		if (cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt,
		                                   sizeof(bt)))
			return;
	}
	/* A = W as stored: column-major [k, m], ld k; B = x: column-major [k, n], ld k;
	 * C = D = out: column-major [m, n], ld m (= row-major [n, m]). */
	if (cublasLtMatrixLayoutCreate(&p->a, t, (uint64_t)p->k, (uint64_t)p->m, p->k) ||
	    cublasLtMatrixLayoutCreate(&p->b, t, (uint64_t)p->k, (uint64_t)p->n, p->k) ||
	    cublasLtMatrixLayoutCreate(&p->c, CUDA_R_32F, (uint64_t)p->m, (uint64_t)p->n, p->m))
		return;
	if (cublasLtMatmulPreferenceCreate(&pref))
		return;
	/* the heuristic assumes 256-byte aligned operands unless told otherwise */
	const uint32_t al = (uint32_t)p->align;
	if (!cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
	                                          &g->workspace_bytes, sizeof(g->workspace_bytes)) &&
	    !cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
	                                          &al, sizeof(al)) &&
	    !cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
	                                          &al, sizeof(al)) &&
	    !cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
	                                          &al, sizeof(al)) &&
	    !cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
	                                          &al, sizeof(al)) &&
	    !cublasLtMatmulAlgoGetHeuristic(g->lt, p->desc, p->a, p->b, p->c, p->c, pref, 1, &res,
	                                    &found) &&
	    found > 0 && res.state == CUBLAS_STATUS_SUCCESS) {
		p->algo = res.algo;
		p->ws = res.workspaceSize;
		p->ok = 1;
	}
	cublasLtMatmulPreferenceDestroy(pref);
}

int align_of(const void *a, const void *b, const void *c)
{
	uintptr_t v = (uintptr_t)a | (uintptr_t)b | (uintptr_t)c | 256;
	return (int)(v & (~v + 1));
}

struct vk_cuda_gemm_plan *plan_get(struct vk_cuda_gemm *g, int32_t m, int32_t n, int32_t k,
                                   int dtype, int bias, int align)
{
	for (int i = 0; i < g->n_plans; i++) {
		struct vk_cuda_gemm_plan *p = &g->plans[i];
		if (p->m == m && p->n == n && p->k == k && p->dtype == dtype && p->bias == bias &&
		    p->align == align)
			return p;
	}
	struct vk_cuda_gemm_plan *p;
	if (g->n_plans < VK_CUDA_GEMM_PLANS) {
		p = &g->plans[g->n_plans++];
	} else {
		p = &g->plans[g->next_evict];
		g->next_evict = (g->next_evict + 1) % VK_CUDA_GEMM_PLANS;
		plan_destroy(p);
	}
	memset(p, 0, sizeof(*p));
	p->m = m;
	p->n = n;
	p->k = k;
	p->dtype = dtype;
	p->bias = bias;
	p->align = align;
	plan_build(g, p);
	return p;
}

} /* namespace */

int vk_cuda_gemm_init(struct vk_cuda_gemm *g, cudaStream_t stream, char *err, size_t err_len)
{
	const char *env = getenv("VLM_CUDA_NO_LT");
	memset(g, 0, sizeof(*g));
	g->use_lt = !(env && env[0] == '1');
	g->workspace_bytes = 32u << 20;
	cublasStatus_t st = cublasCreate(&g->blas);
	if (st != CUBLAS_STATUS_SUCCESS) {
		snprintf(err, err_len, "cublasCreate: %s", cublasGetStatusString(st));
		return st == CUBLAS_STATUS_ALLOC_FAILED ? -ENOMEM : -EIO;
	}
	st = cublasLtCreate(&g->lt);
	if (st != CUBLAS_STATUS_SUCCESS) {
		snprintf(err, err_len, "cublasLtCreate: %s", cublasGetStatusString(st));
		vk_cuda_gemm_fini(g);
		return st == CUBLAS_STATUS_ALLOC_FAILED ? -ENOMEM : -EIO;
	}
	cudaError_t ce = cudaMalloc(&g->workspace, g->workspace_bytes);
	if (ce != cudaSuccess) {
		snprintf(err, err_len, "GEMM workspace (%zu MiB): %s", g->workspace_bytes >> 20,
		         cudaGetErrorString(ce));
		g->workspace = NULL;
		vk_cuda_gemm_fini(g);
		return -ENOMEM;
	}
	if (cublasSetStream(g->blas, stream) ||
	    cublasSetWorkspace(g->blas, g->workspace, g->workspace_bytes) ||
	    cublasSetMathMode(g->blas, CUBLAS_DEFAULT_MATH)) {
		snprintf(err, err_len, "cuBLAS stream/workspace setup failed");
		vk_cuda_gemm_fini(g);
		return -EIO;
	}
	return 0;
}

void vk_cuda_gemm_fini(struct vk_cuda_gemm *g)
{
	for (int i = 0; i < g->n_plans; i++)
		plan_destroy(&g->plans[i]);
	g->n_plans = 0;
	if (g->lt)
		cublasLtDestroy(g->lt);
	if (g->blas)
		cublasDestroy(g->blas);
	if (g->workspace)
		cudaFree(g->workspace);
	g->lt = NULL;
	g->blas = NULL;
	g->workspace = NULL;
}

int vk_cuda_gemm_run(struct vk_cuda_gemm *g, cudaStream_t stream, const void *x, const void *w,
                     int dtype, const float *bias, int32_t n, int32_t m, int32_t k, float *out,
                     char *err, size_t err_len)
{
	const float one = 1.0f, zero = 0.0f;
	cublasStatus_t st;

	if (n <= 0)
		return 0;
	if (g->use_lt) {
		struct vk_cuda_gemm_plan *p = plan_get(g, m, n, k, dtype, bias != NULL,
		                                       align_of(x, w, out));
		if (p->ok) {
			if (bias &&
			    cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
			                                   &bias, sizeof(bias))) {
				snprintf(err, err_len, "cublasLt: cannot set the bias pointer");
				return -EIO;
			}
			st = cublasLtMatmul(g->lt, p->desc, &one, w, p->a, x, p->b, &zero, out, p->c,
			                    out, p->c, &p->algo, g->workspace, g->workspace_bytes,
			                    stream);
			if (st == CUBLAS_STATUS_SUCCESS)
				return 0;
			/* fall through to cublasGemmEx: it reports its own failure */
		}
	}
	const cudaDataType_t t = cuda_type(dtype);
	st = cublasGemmEx(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, w, t, k, x, t, k, &zero,
	                  out, CUDA_R_32F, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
	if (st != CUBLAS_STATUS_SUCCESS) {
		snprintf(err, err_len, "cublasGemmEx [%d x %d] x [%d x %d]^T: %s", n, k, m, k,
		         cublasGetStatusString(st));
		return -EIO;
	}
	if (bias) {
		cudaError_t ce = vk_cuda_add_bias(stream, out, bias, n, m);
		if (ce != cudaSuccess) {
			snprintf(err, err_len, "bias kernel: %s", cudaGetErrorString(ce));
			return -EIO;
		}
	}
	return 0;
}
