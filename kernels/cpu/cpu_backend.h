/*
 * kernels/cpu/cpu_backend.h — the CPU backend ("cpu"): SIMD chosen at run time, a persistent
 * thread pool, bf16/fp16/fp32 weights used in place.
 */
#ifndef VLM_KERNELS_CPU_BACKEND_H
#define VLM_KERNELS_CPU_BACKEND_H

#include <stddef.h>

#include "kernels/backend.h"

/* Opens a new CPU backend in *ret (owned by the caller, free with vk_backend_free). Threads: all
 * online CPUs, or VLM_THREADS. SIMD level: the best the CPU has, or VLM_CPU_ISA
 * ("avx512", "avx2", "generic") to force a lower one (tests use it to cover every path).
 * Returns 0, -ENOMEM, -EAGAIN (threads) or -EINVAL (bad VLM_THREADS / VLM_CPU_ISA) with a
 * message in err. */
int vk_cpu_backend_open(struct vk_backend **ret, char *err, size_t err_len);

#endif
