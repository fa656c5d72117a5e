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
#include <atomic>
#include <semaphore>
#include <cstdint>
#include <cstring>
#include <functional>
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

/* fake_cudart.cc: the list a capturing stream records into, NULL when it is not capturing */
std::vector<std::function<void()>> *emu_capture_list(cudaStream_t s);

/* A persistent pool of 1024 threads (creating a thread per GPU thread per block made the tests
 * spend minutes in the kernel). run(n, job) runs job(0..n-1) on n of them and waits. */
class emu_pool {
public:
	emu_pool()
	{
		for (unsigned i = 0; i < 1024; i++)
			go_.push_back(std::make_unique<std::binary_semaphore>(0));
		for (unsigned i = 0; i < 1024; i++)
			th_.emplace_back([this, i] { loop(i); });
	}
	~emu_pool()
	{
		stop_ = true;
		for (auto &g : go_)
			g->release();
		for (auto &t : th_)
			t.join();
	}
	void run(unsigned n, const std::function<void(unsigned)> &job)
	{
		job_ = &job;
		remaining_.store(n);
		for (unsigned i = 0; i < n; i++)   /* wake exactly the n threads of this block */
			go_[i]->release();
		done_.acquire();
		job_ = nullptr;
	}

private:
	void loop(unsigned i)
	{
		for (;;) {
			go_[i]->acquire();
			if (stop_)
				return;
			(*job_)(i);
			if (remaining_.fetch_sub(1) == 1)
				done_.release();
		}
	}
	std::vector<std::thread> th_;
	std::vector<std::unique_ptr<std::binary_semaphore>> go_;
	std::binary_semaphore done_{ 0 };
	const std::function<void(unsigned)> *job_ = nullptr;
	std::atomic<unsigned> remaining_{ 0 };
	std::atomic<bool> stop_{ false };
};

inline emu_pool &emu_threads()
{
	static emu_pool pool;
	return pool;
}

/* Runs every block of the grid, one after another, each as block.x*y*z pool threads. */
template <typename F>
void emu_run_grid(dim3 grid, dim3 block, size_t smem, const F &f)
{
	const unsigned nt = block.x * block.y * block.z;
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
				const std::function<void(unsigned)> job = [&](unsigned t) {
					emu_tidx = uint3{ t % block.x, (t / block.x) % block.y,
					                  t / (block.x * block.y) };
					emu_bidx = uint3{ bx, by, bz };
					emu_bdim = block;
					emu_gdim = grid;
					f();
					b.warps[t / 32]->arrive_and_drop();
					b.block->arrive_and_drop();
				};
				emu_threads().run(nt, job);
				emu_cur() = nullptr;
			}
}

/* A launch: runs now, or is recorded (by value) when the stream is capturing a graph. */
template <typename F>
cudaError_t emu_launch(dim3 grid, dim3 block, size_t smem, cudaStream_t s, F f)
{
	const unsigned nt = block.x * block.y * block.z;
	if (nt == 0 || nt > 1024 || nt % 32 || grid.x == 0 || grid.y == 0 || grid.z == 0)
		return cudaErrorInvalidConfiguration;
	if (auto *l = emu_capture_list(s))
		l->push_back([=] { emu_run_grid(grid, block, smem, f); });
	else
		emu_run_grid(grid, block, smem, f);
	return cudaSuccess;
}

#endif /* VLM_TESTS_CUDA_EMU_H */
