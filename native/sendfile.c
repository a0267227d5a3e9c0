/*
 * One bounded burst of sendfile(2) from a file to a non-blocking socket,
 * shaped after libuv's uv__fs_sendfile and nginx's ngx_linux_sendfile_chain:
 * the caller owns the loop across event-loop turns; this only runs until the
 * socket would block, the burst budget is spent, or the range is done.
 */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

/* Linux transfers at most 0x7ffff000 (2 GiB minus a page) per call, on 32-
 * and 64-bit systems alike (see sendfile(2) NOTES). */
#define ZC_SENDFILE_MAX ((int64_t)0x7ffff000)

int zc_sendfile_burst(int sock, int file, int64_t* offset, int64_t end,
                      int64_t budget, int64_t* sent,
                      const zc_transfer_link_t* link) {
  int64_t burst = 0;

  while (*offset < end) {
    /* The lease thread stopped this send: it owns the connection's end. */
    if (link != NULL && atomic_load(&link->stop)) return ZC_LEASE_STOPPED;
    int64_t want = end - *offset;
    off_t off = (off_t)*offset;
    ssize_t n;

    if (want > ZC_SENDFILE_MAX) want = ZC_SENDFILE_MAX;
    if (want > budget - burst) want = budget - burst;
    if (want <= 0) return -EAGAIN; /* budget spent: let others run first */

    n = sendfile(sock, file, &off, (size_t)want);
    if (n > 0) {
      *offset += n;
      *sent += n;
      burst += n;
      continue;
    }
    if (n == 0) return ZC_EOF; /* the file ended before `end`: truncated */
    if (errno == EINTR) continue;
    return -errno; /* EAGAIN included: wait for writability */
  }
  return 0;
}

/* sendfileBurst(sock, file, offset, end, budget, out: Float64Array(1),
 *               lease) -> 0 done | ZC_EOF | ZC_LEASE_* | -errno;
 * out[0] = bytes sent by this call. Under a lease the burst is linked to
 * it, so a break past its grace can stop it between two sendfile calls. */
static napi_value sendfile_burst(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  zc_transfer_link_t link;
  zc_tuple_t tuple;
  const zc_tuple_t* first_send = NULL;
  int32_t lease;
  napi_typedarray_type type;
  size_t length;
  void* data;
  int64_t offset, sent = 0;
  int status;

  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  NAPI_CALL(env, napi_get_typedarray_info(env, argv[5], &type, &length, &data,
                                          NULL, NULL));
  CHECK(type == napi_float64_array && length >= 1);
  offset = zc_arg_int64(env, argv[2]);
  lease = zc_arg_int32(env, argv[6]);
  memset(&link, 0, sizeof(link));
  link.sock = zc_arg_int32(env, argv[0]);
  if (lease > 0 && zc_tuple_of(link.sock, &tuple) == 0) first_send = &tuple;
  if (!zc_lease_link(lease, &link, first_send)) {
    ((double*)data)[0] = 0;
    return zc_int32(env, ZC_LEASE_BROKEN);
  }
  status = zc_sendfile_burst(link.sock, zc_arg_int32(env, argv[1]), &offset,
                             zc_arg_int64(env, argv[3]),
                             zc_arg_int64(env, argv[4]), &sent, &link);
  zc_lease_unlink(&link);
  ((double*)data)[0] = (double)sent;
  return zc_int32(env, status);
}

/* setCork(sock, on) -> 0 | -errno. Corking holds the header Node writes
 * until the first sendfile bytes join it in full segments (nginx's
 * tcp_nopush); uncorking flushes whatever is left. */
static napi_value set_cork(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int on;

  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  on = zc_arg_int32(env, argv[1]) ? 1 : 0;
  if (setsockopt(zc_arg_int32(env, argv[0]), IPPROTO_TCP, TCP_CORK, &on,
                 sizeof(on)) != 0)
    return zc_int32(env, -errno);
  return zc_int32(env, 0);
}

void zc_init_sendfile(napi_env env, napi_value exports) {
  zc_export(env, exports, "sendfileBurst", sendfile_burst);
  zc_export(env, exports, "setCork", set_cork);
}
