/*
 * tests/cuda/emu/fake_cudart.cc — the parts of the CUDA runtime, cuBLAS and cuBLASLt that the
 * CUDA backend calls, implemented on the host, so the whole backend (descriptor caching, staging
 * ring, validation, split GEMM, decode-graph capture/replay bookkeeping) runs in CI without a GPU,
 * with the kernels executed by cuda_emu.h.
 *
 * Semantics kept: device memory is host memory; work on a stream runs at once, except while the
 * stream is capturing, when launches, copies and GEMMs are recorded (by value) and a graph launch
 * replays them; cuBLASLt offers no algorithm, so the backend's cublasGemmEx fallback is what runs
 * (a reference GEMM with fp32 accumulation). Not emulated: asynchrony, sticky errors, IPC, timing.
 * Test-only code; signatures come from the real CUDA headers.
 */
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda_emu.h"

struct emu_stream {
	bool capturing;
	std::vector<std::function<void()>> ops;
};

struct emu_graph {
	std::vector<std::function<void()>> ops;
};

struct emu_event {
	std::chrono::steady_clock::time_point t;
};

struct emu_blas {
	cudaStream_t stream;
};

static emu_stream *S(cudaStream_t s)
{
	return reinterpret_cast<emu_stream *>(s);
}

std::vector<std::function<void()>> *emu_capture_list(cudaStream_t s)
{
	return s && S(s)->capturing ? &S(s)->ops : nullptr;
}

/* runs op now, or records it when the stream is capturing */
static void run_or_record(cudaStream_t s, std::function<void()> op)
{
	if (auto *l = emu_capture_list(s))
		l->push_back(std::move(op));
	else
		op();
}

extern "C" {

cudaError_t cudaGetDeviceCount(int *count)
{
	const char *e = getenv("VLM_CUDA_EMU_NODEV");
	if (e && *e == '1')
		return cudaErrorInsufficientDriver;
	*count = 1;
	return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int)
{
	memset(prop, 0, sizeof(*prop));
	snprintf(prop->name, sizeof(prop->name), "emulated (tests/cuda/emu)");
	prop->major = 9;
	prop->minor = 0;
	prop->multiProcessorCount = 4;   /* small: decode steps take the split-K path */
	return cudaSuccess;
}

cudaError_t cudaSetDevice(int)
{
	return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t bytes)
{
	*p = aligned_alloc(256, (bytes + 255) / 256 * 256 + 256);
	if (!*p)
		return cudaErrorMemoryAllocation;
	memset(*p, 0xa5, bytes);   /* garbage, as on the GPU */
	return cudaSuccess;
}

cudaError_t cudaFree(void *p)
{
	free(p);
	return cudaSuccess;
}

cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned int)
{
	return cudaMalloc(p, bytes);
}

cudaError_t cudaFreeHost(void *p)
{
	free(p);
	return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *fr, size_t *tot)
{
	*fr = (size_t)8 << 30;
	*tot = (size_t)16 << 30;
	return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind,
                            cudaStream_t s)
{
	run_or_record(s, [=] { memcpy(dst, src, n); });
	return cudaSuccess;
}

cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch,
                              size_t width, size_t height, enum cudaMemcpyKind, cudaStream_t s)
{
	run_or_record(s, [=] {
		for (size_t r = 0; r < height; r++)
			memcpy((char *)dst + r * dpitch, (const char *)src + r * spitch, width);
	});
	return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s)
{
	run_or_record(s, [=] { memset(p, v, n); });
	return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int)
{
	*s = reinterpret_cast<cudaStream_t>(new emu_stream{ false, {} });
	return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t s)
{
	delete S(s);
	return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s)
{
	return s && S(s)->capturing ? cudaErrorStreamCaptureUnsupported : cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned int)
{
	return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *e)
{
	*e = reinterpret_cast<cudaEvent_t>(new emu_event{ std::chrono::steady_clock::now() });
	return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int)
{
	return cudaEventCreate(e);
}

cudaError_t cudaEventDestroy(cudaEvent_t e)
{
	delete reinterpret_cast<emu_event *>(e);
	return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t)
{
	reinterpret_cast<emu_event *>(e)->t = std::chrono::steady_clock::now();
	return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t)
{
	return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b)
{
	*ms = std::chrono::duration<float, std::milli>(reinterpret_cast<emu_event *>(b)->t -
	                                               reinterpret_cast<emu_event *>(a)->t).count();
	if (*ms <= 0)
		*ms = 1e-3f;
	return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, enum cudaStreamCaptureMode)
{
	if (!s || S(s)->capturing)
		return cudaErrorIllegalState;
	S(s)->capturing = true;
	S(s)->ops.clear();
	return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g)
{
	if (!s || !S(s)->capturing)
		return cudaErrorIllegalState;
	S(s)->capturing = false;
	*g = reinterpret_cast<cudaGraph_t>(new emu_graph{ std::move(S(s)->ops) });
	S(s)->ops.clear();
	return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long)
{
	*e = reinterpret_cast<cudaGraphExec_t>(new emu_graph(*reinterpret_cast<emu_graph *>(g)));
	return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t g)
{
	delete reinterpret_cast<emu_graph *>(g);
	return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e)
{
	delete reinterpret_cast<emu_graph *>(e);
	return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s)
{
	const emu_graph *g = reinterpret_cast<emu_graph *>(e);
	for (const auto &op : g->ops)
		run_or_record(s, op);
	return cudaSuccess;
}

cudaError_t cudaPeekAtLastError(void)
{
	return cudaSuccess;
}

const char *cudaGetErrorString(cudaError_t e)
{
	return e == cudaSuccess ? "no error" : "emulated CUDA error";
}

const char *cudaGetErrorName(cudaError_t e)
{
	return e == cudaSuccess ? "cudaSuccess" : "cudaErrorEmulated";
}

/* ---- cuBLAS ---------------------------------------------------------------------------------- */

cublasStatus_t cublasCreate_v2(cublasHandle_t *h)
{
	*h = reinterpret_cast<cublasHandle_t>(new emu_blas{ nullptr });
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t h)
{
	delete reinterpret_cast<emu_blas *>(h);
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s)
{
	reinterpret_cast<emu_blas *>(h)->stream = s;
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t, void *, size_t)
{
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t)
{
	return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusString(cublasStatus_t s)
{
	return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : "emulated cuBLAS error";
}

static float load(const void *p, cudaDataType_t t, size_t i)
{
	if (t == CUDA_R_16BF)
		return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
	if (t == CUDA_R_16F)
		return __half2float(((const __half *)p)[i]);
	return ((const float *)p)[i];
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType_t at,
                            int lda, const void *B, cudaDataType_t bt, int ldb, const void *beta,
                            void *C, cudaDataType_t ct, int ldc, cublasComputeType_t,
                            cublasGemmAlgo_t)
{
	/* only what the backend uses: C (fp32) = alpha * A^T B + beta * C, column-major */
	if (ta != CUBLAS_OP_T || tb != CUBLAS_OP_N || ct != CUDA_R_32F || at != bt)
		return CUBLAS_STATUS_NOT_SUPPORTED;
	const float al = *(const float *)alpha, be = *(const float *)beta;
	run_or_record(reinterpret_cast<emu_blas *>(h)->stream, [=] {
		for (int j = 0; j < n; j++)
			for (int i = 0; i < m; i++) {
				float acc = 0.0f;   /* fp32 accumulation, like the tensor-core GEMM */
				for (int kk = 0; kk < k; kk++)
					acc += load(A, at, (size_t)i * lda + kk) * load(B, bt, (size_t)j * ldb + kk);
				float *c = (float *)C + (size_t)j * ldc + i;
				*c = al * acc + (be != 0.0f ? be * *c : 0.0f);
			}
	});
	return CUBLAS_STATUS_SUCCESS;
}

/* cuBLASLt: descriptors exist, the heuristic finds nothing, so the backend takes cublasGemmEx */
cublasStatus_t cublasLtCreate(cublasLtHandle_t *h)
{
	*h = reinterpret_cast<cublasLtHandle_t>(new int(0));
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t h)
{
	delete reinterpret_cast<int *>(h);
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t, cudaDataType_t)
{
	*d = reinterpret_cast<cublasLtMatmulDesc_t>(new int(0));
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d)
{
	delete reinterpret_cast<int *>(d);
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t, cublasLtMatmulDescAttributes_t,
                                              const void *, size_t)
{
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType, uint64_t,
                                          uint64_t, int64_t)
{
	*l = reinterpret_cast<cublasLtMatrixLayout_t>(new int(0));
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l)
{
	delete reinterpret_cast<int *>(l);
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p)
{
	*p = reinterpret_cast<cublasLtMatmulPreference_t>(new int(0));
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p)
{
	delete reinterpret_cast<int *>(p);
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t,
                                                    cublasLtMatmulPreferenceAttributes_t,
                                                    const void *, size_t)
{
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t,
                                              cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                                              cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                                              cublasLtMatmulPreference_t, int,
                                              cublasLtMatmulHeuristicResult_t[], int *found)
{
	*found = 0;
	return CUBLAS_STATUS_NOT_SUPPORTED;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t, const void *, const void *,
                              cublasLtMatrixLayout_t, const void *, cublasLtMatrixLayout_t,
                              const void *, const void *, cublasLtMatrixLayout_t, void *,
                              cublasLtMatrixLayout_t, const cublasLtMatmulAlgo_t *, void *, size_t,
                              cudaStream_t)
{
	return CUBLAS_STATUS_NOT_SUPPORTED;
}

} /* extern "C" */
