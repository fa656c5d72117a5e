/*
 * kernels/cuda/gemm.h — out = x @ W^T (+ bias) on cuBLASLt / cuBLAS (private, C++).
 */
#ifndef VLM_KERNELS_CUDA_GEMM_H
#define VLM_KERNELS_CUDA_GEMM_H

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdint.h>

#define VK_CUDA_GEMM_PLANS 256

struct vk_cuda_gemm_plan {
	int32_t m, n, k;
	int dtype;                 /* enum vk_dtype of A and B */
	int bias;
	int align;                 /* smallest alignment (bytes, <= 256) of x, w and out */
	int ok;                    /* 1: Lt algo found; 0: use cublasGemmEx + bias kernel */
	cublasLtMatmulDesc_t desc;
	cublasLtMatrixLayout_t a, b, c;
	cublasLtMatmulAlgo_t algo;
	size_t ws;
};

struct vk_cuda_gemm {
	cublasHandle_t blas;
	cublasLtHandle_t lt;
	void *workspace;           /* device, workspace_bytes: shared by cuBLAS and cuBLASLt */
	size_t workspace_bytes;
	int use_lt;                /* 0 when VLM_CUDA_NO_LT=1 */
	int n_plans;
	int next_evict;
	struct vk_cuda_gemm_plan plans[VK_CUDA_GEMM_PLANS];
};

/* Creates the handles and the workspace; binds them to stream. Returns 0 or -ENOMEM / -EIO with
 * a message in err. */
int vk_cuda_gemm_init(struct vk_cuda_gemm *g, cudaStream_t stream, char *err, size_t err_len);
void vk_cuda_gemm_fini(struct vk_cuda_gemm *g);

/*
 * out [n, m] fp32 = x [n, k] @ w [m, k]^T (+ bias [m] fp32), x and w both of dtype (BF16, F16
 * or F32), row-major; fp32 accumulation (no TF32 for F32). Returns 0, or -EIO with the cuBLAS
 * status in err. A plan (layouts + algorithm) is cached per (m, n, k, dtype, bias).
 */
int vk_cuda_gemm_run(struct vk_cuda_gemm *g, cudaStream_t stream, const void *x, const void *w,
                     int dtype, const float *bias, int32_t n, int32_t m, int32_t k, float *out,
                     char *err, size_t err_len);

#endif /* VLM_KERNELS_CUDA_GEMM_H */
