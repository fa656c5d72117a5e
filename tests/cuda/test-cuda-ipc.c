/*
 * tests/cuda/test-cuda-ipc.c — the CUDA IPC import path with two real processes.
 *
 * The test process (importer, like vlmd) spawns itself as the exporter (like a client holding a
 * vision encoder's output), connected by a UNIX socketpair. The exporter writes known patterns into
 * a cudaMalloc allocation (legacy IPC handle of its base), into a cuMemCreate allocation exported
 * as a POSIX fd (sent with SCM_RIGHTS), and records an interprocess event after an asynchronous
 * write. The importer checks: one open per allocation (cached, refcounted), range validation
 * (including overflow), the interprocess event ordering, the bytes read through every route, the
 * CUDA backend's embed substituting rows straight from the imported memory, and release closing
 * the mapping. Exits 77 when no GPU is usable.
 */
#include <errno.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cuda.h>
#include <cuda_runtime_api.h>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/ipc.h"

extern char **environ;

#define ALLOC (4u << 20)
#define TAIL (1u << 20)      /* last MiB: written asynchronously, complete before the send */
#define HIDDEN 1536

struct msg {
	unsigned char mem[VK_IPC_HANDLE_BYTES];
	uint64_t alloc;
	uint64_t vmm_size;        /* 0: no VMM allocation (fd not sent) */
};

static int failures;

#define EXPECT(cond, ...)                                                                        \
	do {                                                                                     \
		if (!(cond)) {                                                                   \
			fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, #cond);               \
			fprintf(stderr, __VA_ARGS__);                                            \
			fputc('\n', stderr);                                                     \
			failures++;                                                              \
		}                                                                                \
	} while (0)

static uint16_t f2bf(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	u += 0x7fff + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

static float bf2f(uint16_t b)
{
	uint32_t u = (uint32_t)b << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static uint16_t pattern_bf16(size_t i)   /* element i of the legacy allocation */
{
	return f2bf((float)((int)(i % 1000) - 500) / 64.0f);
}

static unsigned char pattern_vmm(size_t i)
{
	return (unsigned char)(i * 13 + 1);
}

/* ---- exporter -------------------------------------------------------------------------------- */

typedef CUresult (*fn_create)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *,
                              unsigned long long);
typedef CUresult (*fn_gran)(size_t *, const CUmemAllocationProp *, CUmemAllocationGranularity_flags);
typedef CUresult (*fn_reserve)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
typedef CUresult (*fn_map)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle,
                           unsigned long long);
typedef CUresult (*fn_access)(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t);
typedef CUresult (*fn_export)(void *, CUmemGenericAllocationHandle, CUmemAllocationHandleType,
                              unsigned long long);

static int send_msg(int sock, const struct msg *m, int fd)
{
	struct iovec iov = { (void *)m, sizeof(*m) };
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct msghdr mh;
	memset(&mh, 0, sizeof(mh));
	memset(cbuf, 0, sizeof(cbuf));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (fd >= 0) {
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	return sendmsg(sock, &mh, 0) == (ssize_t)sizeof(*m) ? 0 : -1;
}

static int exporter(int sock)
{
	struct msg m;
	memset(&m, 0, sizeof(m));
	if (cudaSetDevice(0) != cudaSuccess)
		return 10;
	void *base = NULL;
	if (cudaMalloc(&base, ALLOC) != cudaSuccess)
		return 11;
	uint16_t *h = malloc(ALLOC);
	for (size_t i = 0; i < ALLOC / 2; i++)
		h[i] = pattern_bf16(i);
	if (cudaMemcpy(base, h, ALLOC, cudaMemcpyHostToDevice) != cudaSuccess)
		return 12;
	cudaIpcMemHandle_t mh;
	if (cudaIpcGetMemHandle(&mh, base) != cudaSuccess)
		return 13;
	memcpy(m.mem, &mh, sizeof(mh));
	m.alloc = ALLOC;

	/* asynchronous write of the tail, complete before the handle is sent: the client's side of
	 * the ordering contract (docs/CLIENT.md, "Ordering"; vlmd takes no event) */
	cudaStream_t s;
	if (cudaStreamCreate(&s) != cudaSuccess)
		return 14;
	if (cudaMemsetAsync((char *)base + ALLOC - TAIL, 0x5a, TAIL, s) != cudaSuccess ||
	    cudaStreamSynchronize(s) != cudaSuccess)
		return 15;

	/* VMM allocation exported as a POSIX fd, where the device supports it */
	int fd = -1, posix = 0;
	typedef CUresult (*fn_attr)(int *, CUdevice_attribute, CUdevice);
	fn_attr attr = (fn_attr)vk_ipc_driver_symbol("cuDeviceGetAttribute");
	if (!attr || attr(&posix, CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED, 0))
		posix = 0;
	fn_create create = (fn_create)vk_ipc_driver_symbol("cuMemCreate");
	fn_gran gran = (fn_gran)vk_ipc_driver_symbol("cuMemGetAllocationGranularity");
	fn_reserve reserve = (fn_reserve)vk_ipc_driver_symbol("cuMemAddressReserve");
	fn_map map = (fn_map)vk_ipc_driver_symbol("cuMemMap");
	fn_access access = (fn_access)vk_ipc_driver_symbol("cuMemSetAccess");
	fn_export exp = (fn_export)vk_ipc_driver_symbol("cuMemExportToShareableHandle");
	if (posix && create && gran && reserve && map && access && exp) {
		CUmemAllocationProp prop;
		memset(&prop, 0, sizeof(prop));
		prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
		prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
		prop.location.id = 0;
		prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
		size_t g = 0;
		CUmemGenericAllocationHandle ah;
		CUdeviceptr p = 0;
		if (gran(&g, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM) || create(&ah, g, &prop, 0) ||
		    reserve(&p, g, 0, 0, 0) || map(p, g, 0, ah, 0))
			return 17;
		CUmemAccessDesc acc;
		memset(&acc, 0, sizeof(acc));
		acc.location = prop.location;
		acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
		if (access(p, g, &acc, 1))
			return 18;
		unsigned char *b = malloc(g);
		for (size_t i = 0; i < g; i++)
			b[i] = pattern_vmm(i);
		if (cudaMemcpy((void *)(uintptr_t)p, b, g, cudaMemcpyHostToDevice) != cudaSuccess)
			return 19;
		free(b);
		if (exp(&fd, ah, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0))
			return 20;
		m.vmm_size = g;
	}
	if (send_msg(sock, &m, fd) < 0)
		return 21;
	if (fd >= 0)
		close(fd);
	char done;
	if (read(sock, &done, 1) != 1)   /* keep everything alive until the importer is done */
		return 22;
	cudaStreamSynchronize(s);
	cudaFree(base);
	free(h);
	return 0;
}

/* ---- importer -------------------------------------------------------------------------------- */

static int recv_msg(int sock, struct msg *m, int *fd)
{
	struct iovec iov = { m, sizeof(*m) };
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct msghdr mh;
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cbuf;
	mh.msg_controllen = sizeof(cbuf);
	*fd = -1;
	if (recvmsg(sock, &mh, MSG_CMSG_CLOEXEC) != (ssize_t)sizeof(*m))
		return -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			memcpy(fd, CMSG_DATA(c), sizeof(int));
	return 0;
}

static void check_embed_from_ipc(const void *rows, int n_rows)
{
	char err[256];
	struct vk_backend *be = NULL;
	int rc = vk_cuda_backend_open(&be, err, sizeof(err));
	EXPECT(rc == 0, "backend: %s", err);
	if (rc)
		return;
	const int vocab = 8, nt = n_rows + 2;
	uint16_t *table = calloc((size_t)vocab * HIDDEN, 2);
	struct vk_weight tw;
	EXPECT(be->ops->weight_load(be, table, VK_DTYPE_BF16, vocab, HIDDEN, &tw) == 0, "%s",
	       be->error);
	int32_t *tokens = calloc((size_t)nt, 4), *pos = calloc((size_t)nt * 3, 4);
	struct vk_row_source src = { 1, n_rows, VK_DTYPE_BF16, 1, HIDDEN * 2, rows };
	struct vk_seq seq = { 0, nt, 0, 0, NULL };
	struct vk_batch batch = { nt, 1, tokens, pos, &seq, 1, &src };
	float *dx = NULL, *x = malloc((size_t)nt * HIDDEN * 4);
	EXPECT(be->ops->alloc(be, (size_t)nt * HIDDEN * 4, (void **)&dx) == 0, "alloc");
	rc = be->ops->embed(be, &tw, &batch, dx);
	EXPECT(rc == 0, "embed from IPC memory: %d %s", rc, be->error);
	EXPECT(be->ops->download(be, x, dx, (size_t)nt * HIDDEN * 4) == 0, "%s", be->error);
	size_t bad = 0;
	for (int t = 0; t < nt; t++)
		for (int i = 0; i < HIDDEN; i++) {
			/* rows point at element 2048 of the allocation (offset 4096 bytes) */
			const float want = (t >= 1 && t <= n_rows) ?
				bf2f(pattern_bf16(2048 + (size_t)(t - 1) * HIDDEN + i)) : 0.0f;
			bad += x[(size_t)t * HIDDEN + i] != want;
		}
	EXPECT(bad == 0, "%zu embedded elements differ from the exporter's rows", bad);
	be->ops->free(be, dx);
	be->ops->weight_free(be, &tw);
	be->ops->destroy(be);
	free(table);
	free(tokens);
	free(pos);
	free(x);
}

static void importer(int sock)
{
	struct msg m;
	int fd = -1;
	char err[256];
	EXPECT(recv_msg(sock, &m, &fd) == 0, "no message from the exporter");
	if (failures)
		return;
	struct vk_ipc_cache *c = NULL;
	int rc = vk_ipc_cache_new(&c, err, sizeof(err));
	EXPECT(rc == 0, "cache: %s", err);
	if (rc)
		return;

	/* legacy: two opens of one allocation share one mapping */
	struct vk_ipc_map *m1 = NULL, *m2 = NULL, *mx = NULL;
	void *p1 = NULL, *p2 = NULL, *px = NULL;
	rc = vk_ipc_open_legacy(c, m.mem, 4096, (uint64_t)8 * HIDDEN * 2, &m1, &p1, err, sizeof(err));
	EXPECT(rc == 0, "open: %d %s", rc, err);
	rc = vk_ipc_open_legacy(c, m.mem, 0, ALLOC, &m2, &p2, err, sizeof(err));
	EXPECT(rc == 0, "second open: %d %s", rc, err);
	EXPECT(m1 == m2 && (char *)p1 == (char *)p2 + 4096, "not the cached mapping");
	EXPECT(vk_ipc_cache_count(c) == 1, "%d mappings", vk_ipc_cache_count(c));
	/* ranges outside the allocation, overflow, empty */
	EXPECT(vk_ipc_open_legacy(c, m.mem, ALLOC - 100, 200, &mx, &px, err, sizeof(err)) == -ERANGE,
	       "past the end accepted");
	EXPECT(vk_ipc_open_legacy(c, m.mem, UINT64_MAX - 10, 20, &mx, &px, err, sizeof(err)) ==
	       -ERANGE, "overflowing range accepted");
	EXPECT(vk_ipc_open_legacy(c, m.mem, 0, 0, &mx, &px, err, sizeof(err)) == -ERANGE,
	       "empty range accepted");
	EXPECT(vk_ipc_cache_count(c) == 1, "failed opens changed the cache");
	/* a handle that is not one */
	unsigned char junk[VK_IPC_HANDLE_BYTES];
	memset(junk, 0x37, sizeof(junk));
	EXPECT(vk_ipc_open_legacy(c, junk, 0, 16, &mx, &px, err, sizeof(err)) < 0,
	       "junk handle accepted");

	/* the exporter finished its asynchronous tail write before it sent the handle */
	unsigned char *all = malloc(ALLOC);
	if (p2 && cudaMemcpy(all, p2, ALLOC, cudaMemcpyDeviceToHost) == cudaSuccess) {
		size_t bad = 0;
		for (size_t i = 0; i < (ALLOC - TAIL) / 2; i++) {
			uint16_t v;
			memcpy(&v, all + 2 * i, 2);
			bad += v != pattern_bf16(i);
		}
		for (size_t i = ALLOC - TAIL; i < ALLOC; i++)
			bad += all[i] != 0x5a;
		EXPECT(bad == 0, "%zu bytes differ from the exporter's", bad);
	} else {
		EXPECT(0, "cannot read the imported memory");
	}
	free(all);
	if (p1)
		check_embed_from_ipc(p1, 8);

	vk_ipc_release(c, m1);
	EXPECT(vk_ipc_cache_count(c) == 1, "released while referenced");
	vk_ipc_release(c, m2);
	EXPECT(vk_ipc_cache_count(c) == 0, "not closed on the last release");
	rc = vk_ipc_open_legacy(c, m.mem, 0, 16, &m1, &p1, err, sizeof(err));
	EXPECT(rc == 0, "reopen after close: %d %s", rc, err);
	vk_ipc_release(c, rc == 0 ? m1 : NULL);

	/* VMM route */
	if (m.vmm_size) {
		EXPECT(fd >= 0, "no fd received");
		struct vk_ipc_map *vm = NULL;
		void *vp = NULL;
		EXPECT(vk_ipc_open_fd(c, fd, m.vmm_size + 1, 0, 16, &vm, &vp, err, sizeof(err)) ==
		       -EINVAL, "unaligned size accepted");
		EXPECT(vk_ipc_open_fd(c, fd, m.vmm_size, m.vmm_size, 1, &vm, &vp, err, sizeof(err)) ==
		       -ERANGE, "range past the end accepted");
		rc = vk_ipc_open_fd(c, fd, m.vmm_size, 0, m.vmm_size, &vm, &vp, err, sizeof(err));
		EXPECT(rc == 0, "VMM open: %d %s", rc, err);
		close(fd);   /* the mapping does not need the fd */
		if (rc == 0) {
			unsigned char *b = malloc(m.vmm_size);
			EXPECT(cudaMemcpy(b, vp, m.vmm_size, cudaMemcpyDeviceToHost) == cudaSuccess,
			       "VMM read");
			size_t bad = 0;
			for (size_t i = 0; i < m.vmm_size; i++)
				bad += b[i] != pattern_vmm(i);
			EXPECT(bad == 0, "%zu VMM bytes differ", bad);
			free(b);
			vk_ipc_release(c, vm);
		}
	} else {
		printf("note: device has no POSIX-fd VMM handles; VMM route not exercised\n");
	}
	EXPECT(vk_ipc_cache_count(c) == 0, "mappings left open");
	vk_ipc_cache_free(c);
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--exporter"))
		return exporter(atoi(argv[2]));
	int count = 0;
	cudaError_t e = cudaGetDeviceCount(&count);
	if (e != cudaSuccess || count == 0) {
		printf("SKIP: no usable CUDA device (%s)\n", cudaGetErrorString(e));
		return 77;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
		perror("socketpair");
		return 1;
	}
	char fdarg[16];
	snprintf(fdarg, sizeof(fdarg), "%d", sv[1]);
	char *args[] = { "/proc/self/exe", "--exporter", fdarg, NULL };
	pid_t pid;
	if (posix_spawn(&pid, "/proc/self/exe", NULL, NULL, args, environ) != 0) {
		perror("posix_spawn");
		return 1;
	}
	close(sv[1]);
	if (cudaSetDevice(0) != cudaSuccess)
		failures++;
	else
		importer(sv[0]);
	char done = 1;
	if (write(sv[0], &done, 1) != 1)
		failures++;
	close(sv[0]);
	int st = 0;
	waitpid(pid, &st, 0);
	EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exporter exit status %d", st);
	printf("%s\n", failures ? "FAIL" : "PASS");
	return failures ? 1 : 0;
}
