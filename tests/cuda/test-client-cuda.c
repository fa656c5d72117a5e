/*
 * tests/cuda/test-client-cuda.c — libvlmclient's CUDA tensor export (client/cuda_export.c) with
 * two real processes: this process is the client (it allocates, fills and exports GPU memory the
 * way an application hands a vision encoder's output to vlm_request_add_tensor), a spawned copy of
 * it is the importer (it maps the exported memory with vlmd's import code, kernels/cuda/ipc.h,
 * and reads the rows back). Routes: legacy CUDA IPC (cudaMalloc memory: handle of the allocation
 * base + the tensor's offset, checked against the allocation's size) and VMM (cuMemCreate memory
 * with POSIX-fd handles: the fd travels with SCM_RIGHTS), each with a row-strided tensor that
 * does not start at its allocation's base. Then the public API end to end with a real vlmd (echo
 * sink): a kDLCUDA tensor is accepted, submitted, released by vlmd, and its deleter runs once;
 * and generation on the CUDA backend, where vlmd maps the GPU tensor (daemon/mm_import) and the
 * tokens must equal those of the same rows sent from host memory.
 * The driver constants client/cuda_export.h restates are checked against cuda.h here.
 * Exits 77 when no GPU is usable.
 */
#include <errno.h>
#include <signal.h>
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

#include "client/cuda_export.h"
#include "kernels/cuda/ipc.h"
#include "shm/wire.h"
#include "tests/transport/harness.h"
#include "vlm/vlm.h"

_Static_assert(VC_CU_POINTER_ATTRIBUTE_MEMORY_TYPE == CU_POINTER_ATTRIBUTE_MEMORY_TYPE, "attr");
_Static_assert(VC_CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL == CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, "");
_Static_assert(VC_CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE ==
	       CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE, "attr");
_Static_assert(VC_CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES ==
	       CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES, "attr");
_Static_assert(VC_CU_MEMORYTYPE_DEVICE == CU_MEMORYTYPE_DEVICE, "memory type");
_Static_assert(VC_CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR ==
	       CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, "handle type");
_Static_assert(VC_CU_IPC_HANDLE_SIZE == CU_IPC_HANDLE_SIZE, "ipc handle size");

extern char **environ;

#define ALLOC (1u << 20)
#define ROWS 12
#define COLS 96
#define STRIDE 128          /* elements between rows */
#define OFF_ELEMS 3000      /* the tensor starts this many floats into its allocation */

static int failures;
#define EXPECT(cond, ...) do { \
		if (!(cond)) { \
			fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__); \
			fputc('\n', stderr); \
			failures++; \
		} \
	} while (0)

/* Element i of an allocation filled by the client (tag: 1 legacy, 2 VMM). */
static float pattern(size_t i, int tag)
{
	return (float)(i % 997) * 0.25f + (float)tag * 1000.0f;
}

/* ------------------------------------------------------------------ importer (vlmd's side) */

struct msg {
	struct vs_mm_item item;
	int tag;
};

static int recv_msg(int sock, struct msg *m, int *fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = m, .iov_len = sizeof(*m) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm;

	*fd = -1;
	if (recvmsg(sock, &mh, MSG_WAITALL) != (ssize_t)sizeof(*m))
		return -1;
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
			memcpy(fd, CMSG_DATA(cm), sizeof(int));
	return 0;
}

static int send_msg(int sock, const struct msg *m, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = (void *)m, .iov_len = sizeof(*m) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (fd >= 0) {
		struct cmsghdr *cm;

		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	return sendmsg(sock, &mh, 0) == (ssize_t)sizeof(*m) ? 0 : -1;
}

/* Map the item like vlmd, copy its rows out, compare. Returns the number of wrong elements, or
 * -1 when the mapping failed. */
static int import_one(struct vk_ipc_cache *c, const struct msg *m, int fd)
{
	const struct vs_mm_item *it = &m->item;
	struct vk_ipc_map *map = NULL;
	char err[200] = "";
	float *host;
	void *p = NULL;
	int e, bad = 0;

	if (it->device == VS_DEV_CUDA_IPC)
		e = vk_ipc_open_legacy(c, it->ipc_handle, it->data_off, it->data_bytes, &map, &p, err,
				       sizeof(err));
	else
		e = vk_ipc_open_fd(c, fd, it->alloc_bytes, it->data_off, it->data_bytes, &map, &p, err,
				   sizeof(err));
	if (e) {
		fprintf(stderr, "importer: open failed: %d %s\n", e, err);
		return -1;
	}
	host = malloc((size_t)it->rows * it->cols * sizeof(float));
	if (cudaMemcpy2D(host, it->cols * sizeof(float), p, it->row_stride,
			 it->cols * sizeof(float), it->rows, cudaMemcpyDeviceToHost) != cudaSuccess) {
		bad = -1;
	} else {
		size_t first = it->data_off / sizeof(float);

		for (uint32_t r = 0; r < it->rows; r++)
			for (uint32_t k = 0; k < it->cols; k++)
				if (host[r * it->cols + k] !=
				    pattern(first + (size_t)r * (it->row_stride / 4) + k, m->tag))
					bad++;
	}
	free(host);
	vk_ipc_release(c, map);
	return bad;
}

static int importer(int sock)
{
	struct vk_ipc_cache *c = NULL;
	char err[200];
	struct msg m;
	int fd;

	if (cudaSetDevice(0) != cudaSuccess || vk_ipc_cache_new(&c, err, sizeof(err)))
		return 2;
	while (recv_msg(sock, &m, &fd) == 0) {
		int32_t bad = import_one(c, &m, fd);

		if (fd >= 0)
			close(fd);
		if (write(sock, &bad, sizeof(bad)) != sizeof(bad))
			return 3;
	}
	vk_ipc_cache_free(c);
	return 0;
}

/* ------------------------------------------------------------------ client side */

static int32_t ship(int sock, const struct vs_mm_item *it, int tag, int fd)
{
	struct msg m = { .item = *it, .tag = tag };
	int32_t bad = -2;

	if (send_msg(sock, &m, fd) < 0 || read(sock, &bad, sizeof(bad)) != sizeof(bad))
		return -2;
	return bad;
}

static void fill(void *dev, size_t bytes, int tag)
{
	float *h = malloc(bytes);

	for (size_t i = 0; i < bytes / 4; i++)
		h[i] = pattern(i, tag);
	EXPECT(cudaMemcpy(dev, h, bytes, cudaMemcpyHostToDevice) == cudaSuccess, "fill");
	free(h);
}

static void legacy_route(int sock)
{
	struct vs_mm_item it = { .rows = ROWS, .cols = COLS, .row_stride = STRIDE * 4 };
	uint64_t bytes = (uint64_t)(ROWS - 1) * STRIDE * 4 + COLS * 4;
	void *base = NULL;
	int fd = -1, e;

	EXPECT(cudaMalloc(&base, ALLOC) == cudaSuccess, "cudaMalloc");
	fill(base, ALLOC, 1);
	e = vc_cuda_export((float *)base + OFF_ELEMS, bytes, &it, &fd);
	EXPECT(e == 0, "export: %d %s", e, vlm_last_error());
	EXPECT(it.device == VS_DEV_CUDA_IPC && fd == -1, "legacy route: device %u", it.device);
	EXPECT(it.data_off == OFF_ELEMS * 4 && it.alloc_bytes >= ALLOC && it.data_bytes == bytes &&
	       it.device_index == 0, "offset %llu alloc %llu", (unsigned long long)it.data_off,
	       (unsigned long long)it.alloc_bytes);
	/* past the end of the allocation: refused before anything is sent */
	e = vc_cuda_export((char *)base + ALLOC - 64, 128, &it, &fd);
	EXPECT(e == -EINVAL, "range past the allocation: %d", e);
	e = vc_cuda_export((float *)base + OFF_ELEMS, bytes, &it, &fd);
	EXPECT(ship(sock, &it, 1, -1) == 0, "importer read wrong rows (legacy)");
	cudaFree(base);
}

typedef CUresult (*fn_attr)(int *, CUdevice_attribute, CUdevice);
typedef CUresult (*fn_create)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *,
			      unsigned long long);
typedef CUresult (*fn_gran)(size_t *, const CUmemAllocationProp *,
			    CUmemAllocationGranularity_flags);
typedef CUresult (*fn_reserve)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
typedef CUresult (*fn_map)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle,
			   unsigned long long);
typedef CUresult (*fn_access)(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t);

static void vmm_route(int sock)
{
	fn_attr attr = (fn_attr)vk_ipc_driver_symbol("cuDeviceGetAttribute");
	fn_create create = (fn_create)vk_ipc_driver_symbol("cuMemCreate");
	fn_gran gran = (fn_gran)vk_ipc_driver_symbol("cuMemGetAllocationGranularity");
	fn_reserve reserve = (fn_reserve)vk_ipc_driver_symbol("cuMemAddressReserve");
	fn_map map = (fn_map)vk_ipc_driver_symbol("cuMemMap");
	fn_access access = (fn_access)vk_ipc_driver_symbol("cuMemSetAccess");
	struct vs_mm_item it = { .rows = ROWS, .cols = COLS, .row_stride = STRIDE * 4 };
	uint64_t bytes = (uint64_t)(ROWS - 1) * STRIDE * 4 + COLS * 4;
	CUmemAllocationProp prop;
	CUmemAccessDesc acc;
	CUmemGenericAllocationHandle ah;
	CUdeviceptr p = 0;
	size_t g = 0;
	int posix = 0, fd = -1, e;

	if (!attr || attr(&posix, CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED, 0))
		posix = 0;
	if (!posix || !create || !gran || !reserve || !map || !access) {
		printf("note: no POSIX-fd VMM handles on this device: VMM route not exercised\n");
		return;
	}
	memset(&prop, 0, sizeof(prop));
	prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	prop.location.id = 0;
	prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
	if (gran(&g, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM) || create(&ah, g, &prop, 0) ||
	    reserve(&p, g, 0, 0, 0) || map(p, g, 0, ah, 0)) {
		EXPECT(0, "cuMemCreate/map failed");
		return;
	}
	memset(&acc, 0, sizeof(acc));
	acc.location = prop.location;
	acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	EXPECT(access(p, g, &acc, 1) == CUDA_SUCCESS, "cuMemSetAccess");
	fill((void *)(uintptr_t)p, g, 2);
	e = vc_cuda_export((float *)(uintptr_t)p + OFF_ELEMS, bytes, &it, &fd);
	EXPECT(e == 0, "VMM export: %d %s", e, vlm_last_error());
	EXPECT(it.device == VS_DEV_CUDA_VMM && fd >= 0, "VMM route: device %u fd %d", it.device, fd);
	EXPECT(it.data_off == OFF_ELEMS * 4 && it.alloc_bytes == g, "offset %llu alloc %llu",
	       (unsigned long long)it.data_off, (unsigned long long)it.alloc_bytes);
	if (fd >= 0) {
		EXPECT(ship(sock, &it, 2, fd) == 0, "importer read wrong rows (VMM)");
		close(fd);
	}
}

/* The public API with a real vlmd: a CUDA tensor is accepted, travels, is released once. */
static int g_deleted;
static void del(DLManagedTensor *m)
{
	__atomic_fetch_add(&g_deleted, 1, __ATOMIC_SEQ_CST);
	cudaFree((char *)m->dl_tensor.data - m->dl_tensor.byte_offset);
	free(m->dl_tensor.shape);
	free(m);
}

static void api_route(void)
{
	struct th_daemon d;
	struct vlm_connect_opts o = { .client_name = "test-client-cuda" };
	struct vlm_mm_info info = { .placeholder_id = 250 };
	struct vlm_conn *c = NULL;
	struct vlm_request *r = NULL;
	DLManagedTensor *t = calloc(1, sizeof(*t));
	int32_t tok[3] = { 1, 250, 2 }, out[8];
	void *base = NULL;
	int e;

	if (!getenv("VLMD")) {
		printf("note: $VLMD not set: public-API route not exercised\n");
		free(t);
		return;
	}
	if (th_start(&d, NULL)) {
		EXPECT(0, "vlmd did not start");
		free(t);
		return;
	}
	o.socket_path = d.sock;
	EXPECT(cudaMalloc(&base, ALLOC) == cudaSuccess, "cudaMalloc");
	t->dl_tensor.data = base;
	t->dl_tensor.byte_offset = 4096;
	t->dl_tensor.device.device_type = kDLCUDA;
	t->dl_tensor.ndim = 2;
	t->dl_tensor.dtype = (DLDataType){ kDLBfloat, 16, 1 };
	t->dl_tensor.shape = calloc(2, sizeof(int64_t));
	t->dl_tensor.shape[0] = 1;
	t->dl_tensor.shape[1] = 64;
	t->deleter = del;
	e = vlm_connect(&o, &c);
	EXPECT(e == 0, "connect: %s", vlm_last_error());
	if (c) {
		vlm_request_new(c, &r);
		vlm_request_set_kind(r, VLM_REQUEST_ECHO);
		vlm_request_set_tokens(r, tok, 3);
		e = vlm_request_add_tensor(r, &info, t);
		EXPECT(e == 0, "add CUDA tensor: %s", vlm_last_error());
		EXPECT(g_deleted == 0, "CUDA tensor released before vlmd saw it");
		EXPECT(vlm_submit(r) == 0, "submit: %s", vlm_last_error());
		while ((e = vlm_stream_read(r, out, 8, 5000)) > 0)
			;
		EXPECT(e == 0, "echo with a CUDA tensor: %d %s", e, vlm_last_error());
		EXPECT(g_deleted == 1, "deleter ran %d times", g_deleted);
		vlm_request_free(r);
		vlm_disconnect(c);
	}
	EXPECT(g_deleted == 1, "deleter ran %d times", g_deleted);
	EXPECT(th_stop(&d) == 0, "vlmd exit");
}

/* ------------------------------------------------------------------ generation, zero copy */

#define GEN_ROWS 4          /* grid 1 x 2 x 2 after the merge */
#define GEN_HIDDEN 128      /* vlm-mkmodel --preset tiny */
#define GEN_IMAGE 250       /* its image token */
#define GEN_TOKENS 8

static int g_gen_deleted;
static void gen_del(DLManagedTensor *m)
{
	__atomic_fetch_add(&g_gen_deleted, 1, __ATOMIC_SEQ_CST);
	if (m->dl_tensor.device.device_type == kDLCUDA)
		cudaFree(m->dl_tensor.data);
	else
		free(m->dl_tensor.data);
	free(m->dl_tensor.shape);
	free(m);
}

/* A [GEN_ROWS, GEN_HIDDEN] bf16 tensor with the given rows, on the GPU or in host memory. */
static DLManagedTensor *gen_tensor(const uint16_t *rows, int on_gpu)
{
	DLManagedTensor *t = calloc(1, sizeof(*t));
	size_t bytes = sizeof(uint16_t) * GEN_ROWS * GEN_HIDDEN;
	void *p = NULL;

	if (on_gpu) {
		if (cudaMalloc(&p, bytes) != cudaSuccess ||
		    cudaMemcpy(p, rows, bytes, cudaMemcpyHostToDevice) != cudaSuccess)
			return NULL;
	} else {
		p = malloc(bytes);
		memcpy(p, rows, bytes);
	}
	t->dl_tensor.data = p;
	t->dl_tensor.device.device_type = on_gpu ? kDLCUDA : kDLCPU;
	t->dl_tensor.ndim = 2;
	t->dl_tensor.dtype = (DLDataType){ kDLBfloat, 16, 1 };
	t->dl_tensor.shape = calloc(2, sizeof(int64_t));
	t->dl_tensor.shape[0] = GEN_ROWS;
	t->dl_tensor.shape[1] = GEN_HIDDEN;
	t->deleter = gen_del;
	return t;
}

/* Greedy GEN_TOKENS tokens for a prompt with one image whose rows come from a host or GPU tensor.
 * Returns the number of tokens, or a negative errno. */
static int gen_once(struct vlm_conn *c, const uint16_t *rows, int on_gpu, int32_t *out)
{
	struct vlm_mm_info info = { .placeholder_id = GEN_IMAGE, .grid_t = 1, .grid_h = 2, .grid_w = 2 };
	struct vlm_gen_params p = { .max_tokens = GEN_TOKENS };
	int32_t tok[3 + GEN_ROWS] = { 5, 248, GEN_IMAGE, GEN_IMAGE, GEN_IMAGE, GEN_IMAGE, 249 };
	struct vlm_request *r = NULL;
	DLManagedTensor *t = gen_tensor(rows, on_gpu);
	int n = 0, e;

	if (!t)
		return -ENOMEM;
	if ((e = vlm_request_new(c, &r)) < 0)
		return e;
	vlm_request_set_tokens(r, tok, 3 + GEN_ROWS);
	vlm_request_set_params(r, &p);
	if ((e = vlm_request_add_tensor(r, &info, t)) < 0 || (e = vlm_submit(r)) < 0)
		goto out;
	while ((e = vlm_stream_read(r, out + n, (size_t)(GEN_TOKENS - n), 20000)) > 0)
		n += e;
	if (e == 0)
		e = n;
out:
	vlm_request_free(r);
	return e;
}

/* vlmd on the CUDA backend serves a tiny checkpoint; the same image rows sent from host memory
 * (copied into the arena) and from GPU memory (legacy IPC, read in place by the embed kernel)
 * must give the same greedy tokens, and each tensor's deleter runs once. */
static void generate_route(void)
{
	const char *mk = getenv("VLM_MKMODEL");
	char dir[64] = "/tmp/vlm-cuda-model-XXXXXX", cmd[512];
	const char *extra[] = { "--model", dir, "--backend", "cuda", NULL };
	struct vlm_connect_opts o = { .client_name = "test-client-cuda-gen" };
	uint16_t rows[GEN_ROWS * GEN_HIDDEN];
	int32_t host_out[GEN_TOKENS], gpu_out[GEN_TOKENS];
	struct vlm_conn *c = NULL;
	struct th_daemon d;
	int nh, ng;

	if (!mk || !getenv("VLMD")) {
		printf("note: $VLM_MKMODEL or $VLMD not set: generation route not exercised\n");
		return;
	}
	if (!mkdtemp(dir)) {
		EXPECT(0, "mkdtemp");
		return;
	}
	snprintf(cmd, sizeof(cmd), "%s --preset tiny --dtype bf16 --seed 5 %s >/dev/null", mk, dir);
	if (system(cmd) != 0) {
		EXPECT(0, "vlm-mkmodel failed");
		return;
	}
	for (int i = 0; i < GEN_ROWS * GEN_HIDDEN; i++)   /* bf16 of small varied values */
		rows[i] = (uint16_t)(0x3c00 + (uint16_t)((i * 37) % 512) - 256);
	if (th_start(&d, extra)) {
		EXPECT(0, "vlmd --backend cuda did not start");
		return;
	}
	o.socket_path = d.sock;
	EXPECT(vlm_connect(&o, &c) == 0, "connect: %s", vlm_last_error());
	if (c) {
		g_gen_deleted = 0;
		nh = gen_once(c, rows, 0, host_out);
		ng = gen_once(c, rows, 1, gpu_out);
		EXPECT(nh == GEN_TOKENS, "host tensor: %d %s", nh, vlm_last_error());
		EXPECT(ng == GEN_TOKENS, "GPU tensor (CUDA IPC): %d %s", ng, vlm_last_error());
		EXPECT(nh == ng && !memcmp(host_out, gpu_out, sizeof(int32_t) * GEN_TOKENS),
		       "tokens from GPU rows differ from tokens from the same host rows");
		EXPECT(g_gen_deleted == 2, "deleters ran %d times for 2 tensors", g_gen_deleted);
		vlm_disconnect(c);
	}
	EXPECT(th_stop(&d) == 0, "vlmd exit");
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	EXPECT(system(cmd) == 0, "cleanup");
}

int main(int argc, char **argv)
{
	char fdarg[16], *args[4];
	int sv[2], count = 0, st = 0;
	cudaError_t ce;
	pid_t pid;

	if (argc == 3 && !strcmp(argv[1], "--importer"))
		return importer(atoi(argv[2]));
	signal(SIGPIPE, SIG_IGN);
	ce = cudaGetDeviceCount(&count);
	if (ce != cudaSuccess || count == 0) {
		printf("SKIP: no usable CUDA device (%s)\n", cudaGetErrorString(ce));
		return 77;
	}
	if (!vc_cuda_available()) {
		printf("FAIL: a device is usable but libvlmclient could not load the driver\n");
		return 1;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return 1;
	snprintf(fdarg, sizeof(fdarg), "%d", sv[1]);
	args[0] = "/proc/self/exe";
	args[1] = "--importer";
	args[2] = fdarg;
	args[3] = NULL;
	if (posix_spawn(&pid, "/proc/self/exe", NULL, NULL, args, environ) != 0)
		return 1;
	close(sv[1]);
	EXPECT(cudaSetDevice(0) == cudaSuccess, "cudaSetDevice");
	legacy_route(sv[0]);
	vmm_route(sv[0]);
	close(sv[0]);
	waitpid(pid, &st, 0);
	EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "importer exit status %d", st);
	th_set_args(1, argv);
	api_route();
	generate_route();
	printf("%s\n", failures ? "FAIL" : "PASS");
	return failures ? 1 : 0;
}
