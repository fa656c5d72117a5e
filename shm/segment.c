/*
 * shm/segment.c — memfd creation, sealing and mapping for shm/segment.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shm/segment.h"

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

static void seg_reset(struct vs_seg *seg)
{
	seg->fd = -1;
	seg->base = NULL;
	seg->size = 0;
	seg->writable = 0;
}

static int make_memfd(const char *name, size_t size)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	return fd;
}

int vs_seg_create_pair(const struct vs_layout *lay, const char *name, struct vs_seg *dseg,
		       struct vs_seg *cseg)
{
	char nm[64];
	int r;

	if (!lay || !dseg || !cseg)
		return -EINVAL;
	seg_reset(dseg);
	seg_reset(cseg);

	snprintf(nm, sizeof(nm), "%s-d", name ? name : "vlmd");
	r = make_memfd(nm, lay->dseg_bytes);
	if (r < 0)
		goto fail;
	dseg->fd = r;
	dseg->size = lay->dseg_bytes;
	dseg->base = mmap(NULL, dseg->size, PROT_READ | PROT_WRITE, MAP_SHARED, dseg->fd, 0);
	if (dseg->base == MAP_FAILED) {
		dseg->base = NULL;
		r = -errno;
		goto fail;
	}
	dseg->writable = 1;
	/* Our writable mapping exists; from now on nobody can create another writable one. */
	if (fcntl(dseg->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL) < 0) {
		r = -errno;
		goto fail;
	}

	snprintf(nm, sizeof(nm), "%s-c", name ? name : "vlmd");
	r = make_memfd(nm, lay->cseg_bytes);
	if (r < 0)
		goto fail;
	cseg->fd = r;
	cseg->size = lay->cseg_bytes;
	if (fcntl(cseg->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		r = -errno;
		goto fail;
	}
	cseg->base = mmap(NULL, cseg->size, PROT_READ, MAP_SHARED, cseg->fd, 0);
	if (cseg->base == MAP_FAILED) {
		cseg->base = NULL;
		r = -errno;
		goto fail;
	}
	return 0;
fail:
	vs_seg_fini(dseg);
	vs_seg_fini(cseg);
	return r;
}

int vs_seg_map_fd(struct vs_seg *seg, int fd, size_t expect, int writable, int want_future_write)
{
	struct stat st;
	int seals, need = F_SEAL_SHRINK | F_SEAL_GROW;
	int r;

	seg_reset(seg);
	if (fd < 0)
		return -EBADF;
	if (want_future_write)
		need |= F_SEAL_FUTURE_WRITE;
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0) {
		r = -errno;
		goto fail;
	}
	if ((seals & need) != need) {
		r = -EPROTO;
		goto fail;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto fail;
	}
	if ((uint64_t)st.st_size != (uint64_t)expect || expect == 0) {
		r = -EPROTO;
		goto fail;
	}
	seg->base = mmap(NULL, expect, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
	if (seg->base == MAP_FAILED) {
		seg->base = NULL;
		r = -errno;
		goto fail;
	}
	seg->fd = fd;
	seg->size = expect;
	seg->writable = writable;
	return 0;
fail:
	close(fd);
	return r;
}

void vs_seg_close_fd(struct vs_seg *seg)
{
	if (seg && seg->fd >= 0) {
		close(seg->fd);
		seg->fd = -1;
	}
}

void vs_seg_fini(struct vs_seg *seg)
{
	if (!seg)
		return;
	if (seg->base)
		munmap(seg->base, seg->size);
	if (seg->fd >= 0)
		close(seg->fd);
	seg_reset(seg);
}
