/*
 * The rest of a response body, sent from the event loop without a thread.
 *
 * JS sends the first burst synchronously (most files end there). What is
 * left becomes a transfer: a uv_poll_t waits for the socket to become
 * writable, each wake-up sends one burst, and a uv_timer_t drops a client
 * that takes nothing for `timeout` ms (nginx's send_timeout; time spent
 * waiting for our own pool read, or a late loop, does not count).
 *
 * The poll watches a dup() of the socket: libuv refuses a second watcher on
 * an fd it already polls (UV_EEXIST), and once Node destroys the socket its
 * fd number may be reused by an unrelated file. The dup keeps the socket
 * open until we close it, so JS cancels the transfer when the socket closes.
 *
 * A burst whose pages are not in the page cache would make sendfile read
 * the disk on the loop thread. Instead the loop sends only what is known
 * to be cached (ready_end): a pool thread reads the next chunk in
 * (residency.c) while the loop sends the one before, and when the send
 * catches up with the read, the poll stops until the read completes.
 */
#define _GNU_SOURCE
#include "common.h"
#include "residency.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

/* nginx's sendfile_max_chunk default: one fast client must not monopolise
 * the loop; a burst ends after this many bytes and resumes next turn. */
#define ZC_BURST_BUDGET ((int64_t)2 * 1024 * 1024)

/* A cold file is read this far ahead of the send position, one chunk of
 * ZC_BURST_BUDGET at a time, so the disk and the socket overlap (the
 * kernel's own readahead never starts: see residency.c). */
#define ZC_READ_AHEAD (3 * ZC_BURST_BUDGET)

typedef struct {
  uv_poll_t poll;
  uv_timer_t timer;
  napi_env env;
  napi_ref callback;
  napi_ref handle;     /* weak: the JS object wrapping this struct */
  napi_async_context async_context;
  int sock;           /* our dup of the socket: owned */
  int file;           /* borrowed: JS closes it after the callback */
  int64_t offset, end;
  int64_t sent;
  uint64_t timeout_ms;
  int status;
  zc_transfer_link_t link; /* to the lease, when the file has one */
  int open_handles;   /* poll, timer, and the pool read while it runs */
  int finishing;
  int check;          /* ask whether each burst is in the page cache */
  int64_t ready_end;  /* pages below it were found cached or read in */
  zc_warm_t warm;     /* the pool read of [ready_end, ...), if reading */
  int reading;        /* a pool read is in flight (open_handles counts it) */
  int waiting;        /* the poll is stopped until that read completes */
  int read_ahead;     /* the file was cold: keep reading ahead */
  int64_t cold_reads, cold_bytes;
  const char* syscall; /* what failed, for JS's error */
} transfer_t;

static void call_back(transfer_t* t) {
  napi_env env = t->env;
  napi_handle_scope scope;
  napi_value fn, recv, argv[5], result;
  napi_status status;

  NAPI_CALL(env, napi_open_handle_scope(env, &scope));
  NAPI_CALL(env, napi_get_reference_value(env, t->callback, &fn));
  NAPI_CALL(env, napi_get_global(env, &recv)); /* make_callback wants an object */
  argv[0] = zc_int32(env, t->status);
  argv[1] = zc_double(env, (double)t->sent);
  argv[2] = zc_double(env, (double)t->cold_reads);
  argv[3] = zc_double(env, (double)t->cold_bytes);
  NAPI_CALL(env, napi_create_string_utf8(env, t->syscall, NAPI_AUTO_LENGTH,
                                         &argv[4]));
  status = napi_make_callback(env, t->async_context, recv, fn, 5, argv,
                              &result);
  if (status == napi_pending_exception) {
    napi_value err;
    NAPI_CALL(env, napi_get_and_clear_last_exception(env, &err));
    NAPI_CALL(env, napi_fatal_exception(env, err));
  } else {
    CHECK(status == napi_ok);
  }
  NAPI_CALL(env, napi_close_handle_scope(env, scope));
}

/* A cancel after the end must find nothing to free twice. */
static void forget_handle(transfer_t* t) {
  napi_handle_scope scope;
  napi_value handle;
  void* unused;

  NAPI_CALL(t->env, napi_open_handle_scope(t->env, &scope));
  NAPI_CALL(t->env, napi_get_reference_value(t->env, t->handle, &handle));
  if (handle != NULL)
    NAPI_CALL(t->env, napi_remove_wrap(t->env, handle, &unused));
  NAPI_CALL(t->env, napi_delete_reference(t->env, t->handle));
  NAPI_CALL(t->env, napi_close_handle_scope(t->env, scope));
}

/* The last of the handles and the pool read is done with t. */
static void release(transfer_t* t) {
  if (--t->open_handles > 0) return;

  /* Unlinked first: the lease thread may use our dup until then. Closing
   * the dup before JS hears of the end: when JS then destroys the socket,
   * nothing of ours keeps the connection open. */
  zc_lease_unlink(&t->link);
  close(t->sock);
  forget_handle(t);
  call_back(t);
  NAPI_CALL(t->env, napi_delete_reference(t->env, t->callback));
  NAPI_CALL(t->env, napi_async_destroy(t->env, t->async_context));
  free(t);
}

static void on_close(uv_handle_t* handle) {
  release(handle->data);
}

static void finish(transfer_t* t, int status) {
  if (t->finishing) return;
  t->finishing = 1;
  t->status = status;
  /* A pool read in flight keeps t (and its dup of the file) until it
   * completes; only one not started yet can be dropped. */
  if (t->warm.work != NULL) zc_warm_cancel(t->env, &t->warm);
  uv_poll_stop(&t->poll);
  uv_timer_stop(&t->timer);
  uv_close((uv_handle_t*)&t->poll, on_close);
  uv_close((uv_handle_t*)&t->timer, on_close);
}

static void arm_timer(transfer_t* t);

/* A loop turn runs its timers before its I/O: when the loop ran late (a
 * long GC, a starved process) this fires although the client took bytes
 * meanwhile and the writable event is still waiting to be handled. nginx
 * handles events before it expires timers; here the socket is asked. If
 * it is writable the client is not stalling: a full period starts again,
 * and on_writable sends in this same turn. */
static void on_timeout(uv_timer_t* timer) {
  transfer_t* t = timer->data;
  struct pollfd pfd;
  int rc;

  pfd.fd = t->sock;
  pfd.events = POLLOUT;
  pfd.revents = 0;
  do
    rc = poll(&pfd, 1, 0);
  while (rc < 0 && errno == EINTR); /* the lease's RT signal */
  if (rc < 0) {
    t->syscall = "poll";
    finish(t, -errno);
    return;
  }
  if (rc > 0 && (pfd.revents & POLLOUT)) {
    arm_timer(t);
    return;
  }
  finish(t, -ETIMEDOUT);
}

static void arm_timer(transfer_t* t) {
  if (t->timeout_ms > 0)
    uv_timer_start(&t->timer, on_timeout, t->timeout_ms, 0);
}

static void on_writable(uv_poll_t* poll, int status, int events);
static void on_read(napi_env env, zc_warm_t* w, int ran);

/* Reads the chunk at ready_end on the pool; 0 started, -errno not (no fd
 * for its dup: the caller sends from the loop, as without the check). */
static int start_read(transfer_t* t) {
  int64_t length = t->end - t->ready_end;
  int rc;

  if (length > ZC_BURST_BUDGET) length = ZC_BURST_BUDGET;
  CHECK(!t->reading && length > 0);
  rc = zc_warm_start(t->env, &t->warm, t->file, t->ready_end, length,
                     on_read, t);
  if (rc != 0) return rc;
  t->reading = 1;
  t->open_handles++;
  return 0;
}

/* A cold file: the next chunk is read while this one is sent. */
static void read_ahead(transfer_t* t) {
  if (t->read_ahead && !t->reading && !t->finishing && t->ready_end < t->end &&
      t->ready_end - t->offset < ZC_READ_AHEAD)
    (void)start_read(t); /* no fd now: the next burst asks again */
}

static void on_read(napi_env env, zc_warm_t* w, int ran) {
  transfer_t* t = w->data;
  (void)env;

  t->reading = 0;
  if (ran) {
    t->cold_reads++;
    t->cold_bytes += w->done;
  }
  if (!t->finishing) {
    if (w->status < 0) {
      t->syscall = "pread";
      finish(t, w->status);
    } else {
      /* Read in. At ZC_EOF too: sendfile then reports the truncation. */
      t->ready_end = w->offset + w->length;
      if (w->status == ZC_EOF) t->read_ahead = 0;
      if (t->waiting) {
        t->waiting = 0;
        CHECK(uv_poll_start(&t->poll, UV_WRITABLE, on_writable) == 0);
        arm_timer(t);
      }
      read_ahead(t);
    }
  }
  release(t);
}

/* Where this burst may send up to: the end, or as far as pages are known
 * to be cached. -1 when nothing is: the poll then waits for the read. */
static int64_t ready_to_send(transfer_t* t) {
  int64_t want = t->offset + ZC_BURST_BUDGET < t->end
                     ? t->offset + ZC_BURST_BUDGET : t->end;

  if (!t->check) return t->end;
  if (t->ready_end < t->offset) t->ready_end = t->offset;
  if (want > t->ready_end && !t->reading) {
    if (zc_resident(t->file, t->ready_end, want - t->ready_end)) {
      t->ready_end = want;
    } else {
      t->read_ahead = 1;
      if (start_read(t) != 0) t->ready_end = want;
    }
  }
  if (t->ready_end > t->offset) return t->ready_end;
  /* Not writable-watching meanwhile, and the client is not stalling us. */
  uv_poll_stop(&t->poll);
  uv_timer_stop(&t->timer);
  t->waiting = 1;
  return -1;
}

static void on_writable(uv_poll_t* poll, int status, int events) {
  transfer_t* t = poll->data;
  int64_t before = t->sent;
  int64_t until;
  int rc;
  (void)events;

  if (status < 0) { /* libuv statuses are -errno on Unix */
    finish(t, status);
    return;
  }
  until = ready_to_send(t);
  if (until < 0) return;
  rc = zc_sendfile_burst(t->sock, t->file, &t->offset, until,
                         ZC_BURST_BUDGET, &t->sent, &t->link);
  if (rc == 0 && t->offset < t->end) rc = -EAGAIN; /* at ready_end only */
  if (rc == -EAGAIN) {
    if (t->sent > before) arm_timer(t);
    read_ahead(t);
    return; /* level-triggered: we are called again when writable */
  }
  finish(t, rc);
}

/* transferStart(sock, file, offset, end, timeoutMs, lease,
 *               callback(status, sent, coldReads, coldBytes, syscall),
 *               warmEnd, cold)
 *   -> handle object | -errno (dup failed) | ZC_LEASE_BROKEN.
 * The callback runs exactly once, after every native resource is released
 * (a pool read in flight included): status 0 done, ZC_EOF truncated,
 * -ETIMEDOUT stalled, -ECANCELED cancelled, other -errno from `syscall`
 * (sendfile, poll, or pread of a cold chunk). warmEnd < 0: no residency
 * check; else bursts check their pages from warmEnd on (those below it
 * are known to be cached). cold: the first burst had to be read in, so
 * reading ahead starts at once. */
static napi_value transfer_start(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9], handle, name;
  uv_loop_t* loop;
  transfer_t* t;
  int sock, rc;

  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  sock = fcntl(zc_arg_int32(env, argv[0]), F_DUPFD_CLOEXEC, 0);
  if (sock < 0) return zc_int32(env, -errno);

  t = calloc(1, sizeof(*t));
  CHECK(t != NULL);
  t->env = env;
  t->sock = sock;
  t->file = zc_arg_int32(env, argv[1]);
  t->offset = zc_arg_int64(env, argv[2]);
  t->end = zc_arg_int64(env, argv[3]);
  t->timeout_ms = (uint64_t)zc_arg_int64(env, argv[4]);
  t->ready_end = zc_arg_int64(env, argv[7]);
  t->check = t->ready_end >= 0;
  t->read_ahead = t->check && zc_arg_int32(env, argv[8]) != 0;
  if (t->check && t->ready_end < t->offset) t->ready_end = t->offset;
  t->syscall = "sendfile";
  t->link.sock = sock;
  if (!zc_lease_link(zc_arg_int32(env, argv[5]), &t->link, NULL)) {
    close(sock);
    free(t);
    return zc_int32(env, ZC_LEASE_BROKEN);
  }

  NAPI_CALL(env, napi_get_uv_event_loop(env, &loop));
  rc = uv_poll_init(loop, &t->poll, sock);
  if (rc != 0) {
    zc_lease_unlink(&t->link);
    close(sock);
    free(t);
    return zc_int32(env, rc);
  }
  CHECK(uv_timer_init(loop, &t->timer) == 0);
  t->poll.data = t;
  t->timer.data = t;
  t->open_handles = 2;

  NAPI_CALL(env, napi_create_reference(env, argv[6], 1, &t->callback));
  NAPI_CALL(env, napi_create_object(env, &handle));
  NAPI_CALL(env, napi_create_string_utf8(env, "ZeroCopyTransfer",
                                         NAPI_AUTO_LENGTH, &name));
  NAPI_CALL(env, napi_async_init(env, handle, name, &t->async_context));
  NAPI_CALL(env, napi_wrap(env, handle, t, NULL, NULL, NULL));
  NAPI_CALL(env, napi_create_reference(env, handle, 0, &t->handle));

  CHECK(uv_poll_start(&t->poll, UV_WRITABLE, on_writable) == 0);
  arm_timer(t);
  read_ahead(t);
  return handle;
}

/* transferCancel(handle): stop now; the callback still runs (-ECANCELED)
 * unless the transfer had already ended. A coldRead handle is cancelled
 * too: its callback never runs after this. Either way, once this returns
 * nothing of ours uses the caller's fd (a pool read has its own dup). */
static napi_value transfer_cancel(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  transfer_t* t;

  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (zc_cold_read_cancel(env, argv[0])) return NULL;
  if (napi_unwrap(env, argv[0], (void**)&t) == napi_ok && t != NULL)
    finish(t, -ECANCELED);
  return NULL;
}

void zc_init_transfer(napi_env env, napi_value exports) {
  zc_export(env, exports, "transferStart", transfer_start);
  zc_export(env, exports, "transferCancel", transfer_cancel);
}
