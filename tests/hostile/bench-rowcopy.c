/*
 * bench-rowcopy — what "read once" costs: vlmd copies a client's arena rows into its own memory
 * at submission and checks them for NaN/Inf (daemon/engine/rowcopy.c); compared with a plain
 * memcpy and with the SHA-256 fingerprint vlmd computes from the copy. A Qwen2-VL-2B image of
 * 1024 merged rows (1536 columns, bf16). Not a test: run build/tests/hostile/bench-rowcopy.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "daemon/engine/rowcopy.h"
#include "daemon/engine/prefix.h"
static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(void)
{
  const long rows=1024, cols=1536; const long rb=cols*2;
  unsigned char *src=malloc(rows*rb), *dst=malloc(rows*rb); uint8_t fp[32];
  for(long i=0;i<rows*rb;i++) src[i]=(unsigned char)(i*7%251 & 0x3f);
  struct vd_rows_bad b; int it=200; double t0=now();
  for(int i=0;i<it;i++) vd_rows_copy(dst,src,rows,rb,rb,2,&b);
  double tc=(now()-t0)/it; t0=now();
  for(int i=0;i<it;i++) memcpy(dst,src,rows*rb);
  double tm=(now()-t0)/it; t0=now();
  for(int i=0;i<20;i++) vd_prefix_fingerprint(dst,rows,rb,rb,2,fp);
  double th=(now()-t0)/20;
  printf("1024x1536 bf16 (%.1f MiB): copy+check %.3f ms (%.1f GB/s), plain memcpy %.3f ms, sha256 %.3f ms\n", rows*rb/1048576.0, tc*1e3, rows*rb/tc/1e9, tm*1e3, th*1e3);
}
