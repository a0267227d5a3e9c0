/*
 * Is the next chunk in the page cache, and if not, bring it in on the
 * libuv thread pool: sendfile(2) on a non-blocking socket still blocks the
 * calling thread while it reads uncached pages from disk, and the calling
 * thread is the event loop.
 */
#ifndef ZC_RESIDENCY_H
#define ZC_RESIDENCY_H

#include "common.h"

/* 1: every page of [offset, offset + length) is in the page cache; 0: at
 * least one is not, or a pool read of ours has it in flight. 1 too when
 * the kernel cannot tell (hugetlbfs, an mmap that fails): sending is then
 * what happened before this check. */
int zc_resident(int file, int64_t offset, int64_t length);

/* 1 when the burst about to be sent from `offset` (at most `budget` bytes,
 * never past `end`) has pages to read from disk. Pages below `*warm_end`
 * were found cached or just read in, and are not asked about again: a
 * burst the socket cut short costs no second walk of the same pages, and
 * holes (never cached on tmpfs) are read in once. When the rest is cached,
 * *warm_end moves to the burst's end; when not, [*from, *from + *length)
 * is the range to read in: a whole budget from the first unknown byte. */
int zc_burst_is_cold(int file, int64_t offset, int64_t end, int64_t budget,
                     int64_t* warm_end, int64_t* from, int64_t* length);

/* A read of a range on the thread pool, only for its side effect: when it
 * completes, the pages are in the page cache. */
typedef struct zc_warm_s zc_warm_t;
/* Runs once on the loop thread. `ran`: 0 when cancelled before it ran. */
typedef void (*zc_warm_done_cb)(napi_env env, zc_warm_t* w, int ran);
struct zc_warm_s {
  napi_async_work work;
  int file;          /* our dup: the caller may close its fd meanwhile */
  int64_t offset, length;
  int slot;          /* in the table of ranges in flight, or -1 */
  int64_t done;      /* bytes read */
  int status;        /* 0 read all, ZC_EOF the file ended first, -errno */
  zc_warm_done_cb on_done;
  void* data;
};

/* 0: queued, on_done will run; -errno: nothing queued (dup failed).
 * Until it completes, zc_resident() calls the range cold. */
int zc_warm_start(napi_env env, zc_warm_t* w, int file, int64_t offset,
                  int64_t length, zc_warm_done_cb on_done, void* data);
/* Drops it if no pool thread has taken it yet; on_done runs either way. */
void zc_warm_cancel(napi_env env, zc_warm_t* w);

/* transferCancel's half for coldRead handles: 1 if `handle` was one. */
int zc_cold_read_cancel(napi_env env, napi_value handle);

void zc_init_residency(napi_env env, napi_value exports);

#endif
