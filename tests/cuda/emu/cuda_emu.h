/*
 * tests/cuda/emu/cuda_emu.h — run the backend's CUDA kernels on CPU threads (no GPU needed).
 *
 * Why: CI and the build machines have no GPU, yet an indexing slip, a barrier in divergent code or
 * a wrong reduction in a kernel is found fastest by running it. emu-transform.py rewrites each
 * launch into emu_launch(); here every block runs as blockDim real threads (blocks one after
 * another, so static __shared__ arrays are per block), __syncthreads is a block barrier and the
 * warp shuffles exchange through per-warp slots between two warp barriers. A thread that returns
 * drops out of its barriers, as on the GPU. What this cannot show: memory-model races the GPU
 * would expose, performance, and anything cuBLAS does. Test-only code.
 */
#ifndef VLM_TESTS_CUDA_EMU_H
#define VLM_TESTS_CUDA_EMU_H

#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#undef __global__
#undef __device__
#undef __shared__
#undef __forceinline__
#undef __launch_bounds__
#define __global__
#define __device__
#define __shared__ static
#define __forceinline__ inline
#define __launch_bounds__(...)

struct emu_block {
	unsigned nthreads;
	std::unique_ptr<std::barrier<>> block;
	std::vector<std::unique_ptr<std::barrier<>>> warps;
	std::vector<uint64_t> slots;   /* [warps][32] shuffle exchange */
	std::vector<char> smem;
};

inline emu_block *&emu_cur()
{
	static emu_block *b;
	return b;
}

inline thread_local uint3 emu_tidx, emu_bidx;
inline thread_local dim3 emu_bdim, emu_gdim;
#define threadIdx emu_tidx
#define blockIdx emu_bidx
#define blockDim emu_bdim
#define gridDim emu_gdim

inline void *emu_dynamic_smem()
{
	return emu_cur()->smem.data();
}

inline void __syncthreads()
{
	emu_cur()->block->arrive_and_wait();
}

inline void __syncwarp(unsigned = 0xffffffffu)
{
	emu_cur()->warps[emu_tidx.x / 32]->arrive_and_wait();
}

template <typename T>
T emu_exchange(T v, unsigned src_lane)
{
	emu_block *b = emu_cur();
	const unsigned w = emu_tidx.x / 32, lane = emu_tidx.x % 32;
	uint64_t bits = 0;
	std::memcpy(&bits, &v, sizeof(T));
	b->slots[w * 32 + lane] = bits;
	b->warps[w]->arrive_and_wait();
	bits = b->slots[w * 32 + (src_lane & 31)];
	b->warps[w]->arrive_and_wait();
	T r;
	std::memcpy(&r, &bits, sizeof(T));
	return r;
}

template <typename T>
T __shfl_xor_sync(unsigned, T v, int mask)
{
	return emu_exchange(v, (emu_tidx.x % 32) ^ (unsigned)mask);
}

template <typename T>
T __shfl_sync(unsigned, T v, int src)
{
	return emu_exchange(v, (unsigned)src);
}

inline float __uint_as_float(uint32_t u)
{
	float f;
	std::memcpy(&f, &u, 4);
	return f;
}

inline uint32_t __float_as_uint(float f)
{
	uint32_t u;
	std::memcpy(&u, &f, 4);
	return u;
}

template <typename A, typename B>
inline auto min(A a, B b) -> decltype(a + b)
{
	return a < b ? a : b;
}

template <typename A, typename B>
inline auto max(A a, B b) -> decltype(a + b)
{
	return a > b ? a : b;
}

#define cudaGetLastError() cudaSuccess
#define cudaFuncSetAttribute(...) cudaSuccess

/* Runs every block of the grid, one after another, each as block.x*y*z threads. */
template <typename F>
cudaError_t emu_launch(dim3 grid, dim3 block, size_t smem, cudaStream_t, F f)
{
	const unsigned nt = block.x * block.y * block.z;
	if (nt == 0 || nt > 1024 || nt % 32)
		return cudaErrorInvalidConfiguration;
	for (unsigned bz = 0; bz < grid.z; bz++)
		for (unsigned by = 0; by < grid.y; by++)
			for (unsigned bx = 0; bx < grid.x; bx++) {
				emu_block b;
				b.nthreads = nt;
				b.block = std::make_unique<std::barrier<>>(nt);
				for (unsigned w = 0; w < nt / 32; w++)
					b.warps.push_back(std::make_unique<std::barrier<>>(32));
				b.slots.assign(nt, 0);
				b.smem.assign(smem + 16, (char)0x7f);   /* garbage-ish, not zero */
				emu_cur() = &b;
				std::vector<std::thread> th;
				th.reserve(nt);
				for (unsigned t = 0; t < nt; t++)
					th.emplace_back([&, t] {
						emu_tidx = uint3{ t % block.x, (t / block.x) % block.y,
						                  t / (block.x * block.y) };
						emu_bidx = uint3{ bx, by, bz };
						emu_bdim = block;
						emu_gdim = grid;
						f();
						b.warps[t / 32]->arrive_and_drop();
						b.block->arrive_and_drop();
					});
				for (auto &x : th)
					x.join();
				emu_cur() = nullptr;
			}
	return cudaSuccess;
}

#endif /* VLM_TESTS_CUDA_EMU_H */
