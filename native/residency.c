/*
 * Page-cache residency of the chunk about to be sent, and reading a cold
 * chunk in on the libuv thread pool.
 *
 * sendfile(2) on a non-blocking socket only avoids blocking on the socket:
 * pages missing from the page cache are read from disk in the caller's
 * thread, here the event loop, stalling every other request meanwhile.
 * So before a burst the loop asks the kernel whether its pages are cached
 * (cachestat(2), one syscall per burst), and if not, a pool thread reads
 * them first; the loop then sends them with sendfile as usual.
 */
#define _GNU_SOURCE
#include "residency.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* cachestat(2), Linux 6.5: the same number on x86_64 and arm64 (asm-generic).
 * Our own struct names: newer glibc may declare `struct cachestat` too. */
#if defined(__NR_cachestat)
#define ZC_NR_CACHESTAT __NR_cachestat
#elif defined(__x86_64__) || defined(__aarch64__)
#define ZC_NR_CACHESTAT 451
#else
#define ZC_NR_CACHESTAT -1
#endif

struct zc_cachestat_range {
  uint64_t off, len;
};
struct zc_cachestat {
  uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

/* How residency is asked. Like libuv's cached "not supported", an ENOSYS
 * from cachestat is remembered: older kernels go straight to mincore. */
enum { MODE_UNKNOWN, MODE_CACHESTAT, MODE_MINCORE };
static atomic_int mode = MODE_UNKNOWN;

/* Pool reads queued or running, process-wide (tests watch it drain). */
static atomic_int pending;

/* The ranges pool reads have in flight, by file. cachestat counts pages
 * whose read is still in flight as cached (measured: all 2048 pages of an
 * 8 MiB readahead(2) at once, while a read of the last one then waited
 * 7 ms), so a chunk another response is reading in would make sendfile
 * wait for that I/O on the loop. Looked at only while a read is in flight
 * (one fstat then); a full table just leaves that gap open. Reads by other
 * processes (or their readahead) stay invisible. */
#define ZC_INFLIGHT_MAX 64
typedef struct {
  int used;
  dev_t dev;
  ino_t ino;
  int64_t start, end;
} inflight_t;
static inflight_t inflight[ZC_INFLIGHT_MAX];
static atomic_int inflight_count;
static pthread_mutex_t inflight_lock = PTHREAD_MUTEX_INITIALIZER;

/* Where a pool thread reads into when /dev/null cannot take sendfile, kept
 * for the thread's life: the bytes are thrown away, only the page cache is
 * the point. */
#define ZC_SCRATCH ((size_t)256 * 1024)
static __thread char* scratch;

static const napi_type_tag cold_read_tag = {
  0x7a63636f6c647264ULL, 0x9d1b5e3f0c2a4871ULL
};

static int64_t page_size(void) {
  static int64_t size;
  if (size == 0) size = sysconf(_SC_PAGESIZE);
  return size;
}

/* The slot of the registered range, or -1 (table full, or no fstat). */
static int inflight_add(int file, int64_t start, int64_t end) {
  struct stat st;
  int i, slot = -1;

  if (fstat(file, &st) != 0) return -1;
  CHECK(pthread_mutex_lock(&inflight_lock) == 0);
  for (i = 0; i < ZC_INFLIGHT_MAX && slot < 0; i++) {
    if (inflight[i].used) continue;
    inflight[i] = (inflight_t){ 1, st.st_dev, st.st_ino, start, end };
    slot = i;
  }
  CHECK(pthread_mutex_unlock(&inflight_lock) == 0);
  if (slot >= 0) atomic_fetch_add(&inflight_count, 1);
  return slot;
}

static void inflight_remove(int slot) {
  if (slot < 0) return;
  CHECK(pthread_mutex_lock(&inflight_lock) == 0);
  inflight[slot].used = 0;
  CHECK(pthread_mutex_unlock(&inflight_lock) == 0);
  atomic_fetch_sub(&inflight_count, 1);
}

/* 1 when a pool read has part of the range in flight. */
static int inflight_overlaps(int file, int64_t start, int64_t end) {
  struct stat st;
  int i, found = 0;

  if (atomic_load(&inflight_count) == 0 || fstat(file, &st) != 0) return 0;
  CHECK(pthread_mutex_lock(&inflight_lock) == 0);
  for (i = 0; i < ZC_INFLIGHT_MAX && !found; i++) {
    const inflight_t* r = &inflight[i];
    found = r->used && r->dev == st.st_dev && r->ino == st.st_ino &&
            r->start < end && start < r->end;
  }
  CHECK(pthread_mutex_unlock(&inflight_lock) == 0);
  return found;
}

/* -errno when cachestat cannot answer. */
static int resident_cachestat(int file, int64_t offset, int64_t length) {
  struct zc_cachestat_range range = { (uint64_t)offset, (uint64_t)length };
  struct zc_cachestat cs;
  int64_t page = page_size();
  uint64_t pages = (uint64_t)((offset + length - 1) / page - offset / page + 1);

  if (ZC_NR_CACHESTAT < 0) return -ENOSYS;
  if (syscall(ZC_NR_CACHESTAT, file, &range, &cs, 0) != 0) return -errno;
  /* nr_cache counts the pages of the range only (large folios clipped). */
  return cs.nr_cache >= pages;
}

/* The fallback: map the range (no page is touched, nothing is read) and
 * ask mincore. Since Linux 5.2 mincore reports page-cache state only for
 * files we own or could write; for others it says "not resident", which
 * costs a needless pool read per chunk, never a stall. */
static int resident_mincore(int file, int64_t offset, int64_t length) {
  unsigned char vec[512];
  int64_t page = page_size();
  int64_t at = offset / page * page;
  int64_t stop = offset + length;

  while (at < stop) {
    int64_t span = stop - at;
    size_t i, pages;
    void* map;
    int rc;

    if (span > (int64_t)sizeof(vec) * page) span = (int64_t)sizeof(vec) * page;
    map = mmap(NULL, (size_t)span, PROT_READ, MAP_SHARED, file, (off_t)at);
    if (map == MAP_FAILED) return 1;
    rc = mincore(map, (size_t)span, vec);
    munmap(map, (size_t)span);
    if (rc != 0) return 1;
    pages = (size_t)((span + page - 1) / page);
    for (i = 0; i < pages; i++)
      if (!(vec[i] & 1)) return 0;
    at += span;
  }
  return 1;
}

int zc_resident(int file, int64_t offset, int64_t length) {
  int rc;

  if (length <= 0) return 1;
  if (inflight_overlaps(file, offset, offset + length)) return 0;
  if (atomic_load(&mode) != MODE_MINCORE) {
    rc = resident_cachestat(file, offset, length);
    if (rc == -ENOSYS) {
      atomic_store(&mode, MODE_MINCORE);
    } else if (rc < 0) {
      return 1; /* EOPNOTSUPP (hugetlbfs) and kin */
    } else {
      atomic_store(&mode, MODE_CACHESTAT);
      if (rc == 1) return 1;
      /* cachestat walks the range without rechecking entries that change
       * under it, and can come up short. Measured on Linux 6.18 (ext4, a
       * 64 MiB file just written and mlocked in the cache, served 60
       * times under load): twice it counted 51 and 233 of 420 pages, all
       * of them dirty, while a second call at once counted 420 and
       * mincore found every page. A short count costs a needless pool
       * read, and the transfer then reads the rest of the file ahead.
       * mincore looks each page up and rechecks it, so it has the last
       * word on a "no" (a cold chunk pays for a pool read anyway). */
    }
  }
  return resident_mincore(file, offset, length);
}

int zc_burst_is_cold(int file, int64_t offset, int64_t end, int64_t budget,
                     int64_t* warm_end, int64_t* from, int64_t* length) {
  int64_t start = offset > *warm_end ? offset : *warm_end;
  int64_t stop = offset + budget < end ? offset + budget : end;

  if (stop <= start) return 0;
  if (zc_resident(file, start, stop - start)) {
    *warm_end = stop;
    return 0;
  }
  *from = start;
  *length = (start + budget < end ? start + budget : end) - start;
  return 1;
}

/* Reads on from w->done: into /dev/null with sendfile while `*sink` is
 * open, else into the scratch buffer. Bytes read, 0 at EOF, or -errno. */
static ssize_t read_some(zc_warm_t* w, int* sink) {
  int64_t want = w->length - w->done;
  off_t at = (off_t)(w->offset + w->done);
  ssize_t n;

  if (*sink >= 0) {
    n = sendfile(*sink, w->file, &at, (size_t)want);
    if (n >= 0) return n;
    if (errno != EINVAL && errno != ENOSYS) return -errno;
    close(*sink); /* this file system cannot splice: read() it is */
    *sink = -1;
  }
  if (scratch == NULL) {
    scratch = malloc(ZC_SCRATCH);
    CHECK(scratch != NULL);
  }
  if (want > (int64_t)ZC_SCRATCH) want = (int64_t)ZC_SCRATCH;
  n = pread(w->file, scratch, (size_t)want, at);
  return n >= 0 ? n : -errno;
}

/* On a pool thread: no N-API here, only syscalls. */
static void warm_execute(napi_env env, void* data) {
  zc_warm_t* w = data;
  int sink = open("/dev/null", O_WRONLY | O_CLOEXEC);
  (void)env;

  /* readahead(2) only queues the I/O (it returns before the disk answers
   * on current kernels), but for the whole range at once, so the disk sees
   * large requests. What waits is the read: sendfile into /dev/null, like
   * a buffered read, returns only once its pages are up to date in the
   * page cache, and copies nothing (/dev/null drops the pages' references).
   * readahead(2) marks no page for the kernel's own async readahead, so
   * sendfile never starts disk reads from the loop (transfer.c reads
   * ahead on the pool instead). */
  (void)readahead(w->file, (off_t)w->offset, (size_t)w->length);
  while (w->done < w->length) {
    ssize_t n = read_some(w, &sink);
    if (n > 0) {
      w->done += n;
    } else if (n == 0) {
      w->status = ZC_EOF; /* truncated: sendfile will see it and say so */
      break;
    } else if (n == -EAGAIN) {
      break; /* a file system that honours O_NONBLOCK: sendfile as before */
    } else if (n != -EINTR) {
      w->status = (int)n;
      break;
    }
  }
  if (sink >= 0) close(sink);
}

static void warm_complete(napi_env env, napi_status status, void* data) {
  zc_warm_t* w = data;

  close(w->file);
  w->file = -1;
  inflight_remove(w->slot);
  atomic_fetch_sub(&pending, 1);
  NAPI_CALL(env, napi_delete_async_work(env, w->work));
  w->work = NULL;
  w->on_done(env, w, status != napi_cancelled); /* may free w: last */
}

int zc_warm_start(napi_env env, zc_warm_t* w, int file, int64_t offset,
                  int64_t length, zc_warm_done_cb on_done, void* data) {
  napi_handle_scope scope;
  napi_value name;
  int dup_fd = fcntl(file, F_DUPFD_CLOEXEC, 0);

  if (dup_fd < 0) return -errno;
  memset(w, 0, sizeof(*w));
  w->file = dup_fd;
  w->offset = offset;
  w->length = length;
  w->on_done = on_done;
  w->data = data;
  w->slot = inflight_add(dup_fd, offset, offset + length);
  /* Also called from a uv_poll callback, where no scope is open. */
  NAPI_CALL(env, napi_open_handle_scope(env, &scope));
  NAPI_CALL(env, napi_create_string_utf8(env, "ZeroCopyColdRead",
                                         NAPI_AUTO_LENGTH, &name));
  NAPI_CALL(env, napi_create_async_work(env, NULL, name, warm_execute,
                                        warm_complete, w, &w->work));
  NAPI_CALL(env, napi_queue_async_work(env, w->work));
  NAPI_CALL(env, napi_close_handle_scope(env, scope));
  atomic_fetch_add(&pending, 1);
  return 0;
}

void zc_warm_cancel(napi_env env, zc_warm_t* w) {
  /* Fails once a pool thread has it: then it completes as usual. */
  if (w->work != NULL) (void)napi_cancel_async_work(env, w->work);
}

/* coldRead(): a read for JS, before the first burst of a response. */
typedef struct {
  zc_warm_t warm;
  napi_ref callback; /* NULL once cancelled: JS hears nothing more */
  napi_ref handle;   /* weak: the JS object wrapping this struct */
} cold_read_t;

static void forget_handle(napi_env env, cold_read_t* c) {
  napi_value handle;
  void* unused;

  NAPI_CALL(env, napi_get_reference_value(env, c->handle, &handle));
  if (handle != NULL) NAPI_CALL(env, napi_remove_wrap(env, handle, &unused));
  NAPI_CALL(env, napi_delete_reference(env, c->handle));
  c->handle = NULL;
}

static void cold_read_done(napi_env env, zc_warm_t* w, int ran) {
  cold_read_t* c = w->data;
  napi_value fn, recv, argv[2], result;
  napi_status status;
  (void)ran; /* cancelled before it ran: callback is NULL already */

  if (c->callback != NULL) {
    forget_handle(env, c);
    NAPI_CALL(env, napi_get_reference_value(env, c->callback, &fn));
    NAPI_CALL(env, napi_get_global(env, &recv));
    argv[0] = zc_int32(env, w->status);
    argv[1] = zc_double(env, (double)w->done);
    /* Node runs this inside a callback scope and reports a throw as an
     * uncaught exception once we return. */
    status = napi_call_function(env, recv, fn, 2, argv, &result);
    CHECK(status == napi_ok || status == napi_pending_exception);
    NAPI_CALL(env, napi_delete_reference(env, c->callback));
  }
  free(c);
}

/* coldRead(file, offset, length, callback(status, bytesRead))
 *   -> handle | -errno (no fd left for our dup).
 * status 0: [offset, offset + length) is in the page cache now; ZC_EOF: the
 * file ended first (sendfile will report the truncation); -errno: the read
 * failed. transferCancel(handle) stops it: no callback after that. */
static napi_value cold_read(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], handle;
  cold_read_t* c;
  int rc;

  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  c = calloc(1, sizeof(*c));
  CHECK(c != NULL);
  rc = zc_warm_start(env, &c->warm, zc_arg_int32(env, argv[0]),
                     zc_arg_int64(env, argv[1]), zc_arg_int64(env, argv[2]),
                     cold_read_done, c);
  if (rc < 0) {
    free(c);
    return zc_int32(env, rc);
  }
  NAPI_CALL(env, napi_create_reference(env, argv[3], 1, &c->callback));
  NAPI_CALL(env, napi_create_object(env, &handle));
  NAPI_CALL(env, napi_type_tag_object(env, handle, &cold_read_tag));
  NAPI_CALL(env, napi_wrap(env, handle, c, NULL, NULL, NULL));
  NAPI_CALL(env, napi_create_reference(env, handle, 0, &c->handle));
  return handle;
}

int zc_cold_read_cancel(napi_env env, napi_value handle) {
  bool is_cold_read = false;
  cold_read_t* c;

  NAPI_CALL(env, napi_check_object_type_tag(env, handle, &cold_read_tag,
                                            &is_cold_read));
  if (!is_cold_read) return 0;
  /* Unwrapped already: it completed, or was cancelled before. */
  if (napi_unwrap(env, handle, (void**)&c) != napi_ok || c == NULL) return 1;
  forget_handle(env, c);
  NAPI_CALL(env, napi_delete_reference(env, c->callback));
  c->callback = NULL;
  /* The pool thread may still be reading: our dup stays open, and c lives,
   * until the completion frees them. */
  zc_warm_cancel(env, &c->warm);
  return 1;
}

/* residentRange(file, offset, length) -> 1 cached, 0 not (tests, bench). */
static napi_value resident_range(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];

  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  return zc_int32(env, zc_resident(zc_arg_int32(env, argv[0]),
                                   zc_arg_int64(env, argv[1]),
                                   zc_arg_int64(env, argv[2])));
}

/* residencyMode(mode?) -> 0 not asked yet, 1 cachestat, 2 mincore.
 * Given a mode, uses it from now on (tests of the fallback, and
 * FASTIFY_ZERO_COPY_COLD_CHECK=mincore). */
static napi_value residency_mode(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_valuetype type = napi_undefined;

  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc >= 1) NAPI_CALL(env, napi_typeof(env, argv[0], &type));
  if (type == napi_number) {
    int32_t m = zc_arg_int32(env, argv[0]);
    CHECK(m >= MODE_UNKNOWN && m <= MODE_MINCORE);
    atomic_store(&mode, m);
  }
  return zc_int32(env, atomic_load(&mode));
}

/* coldReadsPending() -> pool reads queued or running in this process. */
static napi_value cold_reads_pending(napi_env env, napi_callback_info info) {
  (void)info;
  return zc_int32(env, atomic_load(&pending));
}

void zc_init_residency(napi_env env, napi_value exports) {
  zc_export(env, exports, "coldReadsPending", cold_reads_pending);
  zc_export(env, exports, "coldRead", cold_read);
  zc_export(env, exports, "residentRange", resident_range);
  zc_export(env, exports, "residencyMode", residency_mode);
}
