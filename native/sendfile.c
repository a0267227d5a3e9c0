/*
 * One bounded burst of sendfile(2) from a file to a non-blocking socket,
 * shaped after libuv's uv__fs_sendfile and nginx's ngx_linux_sendfile_chain:
 * the caller owns the loop across event-loop turns; this only runs until the
 * socket would block, the burst budget is spent, or the range is done.
 */
#define _GNU_SOURCE
#include "common.h"
#include "residency.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
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

/* Sends the response header with MSG_MORE, so the kernel holds it for the
 * first body bytes and small files leave in one segment (what nginx gets
 * from tcp_nopush), in one syscall instead of cork, write and uncork.
 * Returns bytes sent (maybe fewer), or -errno. */
static ssize_t send_header(int sock, const char* header, size_t length) {
  size_t sent = 0;
  while (sent < length) {
    ssize_t n = send(sock, header + sent, length - sent,
                     MSG_MORE | MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      sent += (size_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      break;
    } else {
      return n < 0 ? -errno : (ssize_t)sent;
    }
  }
  return (ssize_t)sent;
}

/* The connection's address pair, for the lease's drain watch. A
 * connection's pair never changes, so JS keeps one Uint8Array per socket
 * and the two syscalls happen once per connection, not per response:
 * cache[0] = 1 when cache[8..] holds the pair, 2 when it has none (a Unix
 * socket). Without a usable cache, asks the kernel. */
static int tuple_of_cached(napi_env env, napi_value cache, int sock,
                           zc_tuple_t* tuple) {
  napi_typedarray_type type;
  size_t length;
  void* data;
  uint8_t* bytes;
  int rc;
  if (napi_get_typedarray_info(env, cache, &type, &length, &data, NULL,
                               NULL) != napi_ok ||
      type != napi_uint8_array || length < 8 + sizeof(*tuple))
    return zc_tuple_of(sock, tuple);
  bytes = data;
  if (bytes[0] == 1) {
    memcpy(tuple, bytes + 8, sizeof(*tuple));
    return 0;
  }
  if (bytes[0] == 2) return -EAFNOSUPPORT;
  rc = zc_tuple_of(sock, tuple);
  if (rc == 0) {
    memcpy(bytes + 8, tuple, sizeof(*tuple));
    bytes[0] = 1;
  } else if (rc == -EAFNOSUPPORT) {
    bytes[0] = 2;
  }
  return rc;
}

/* sendfileBurst(sock, file, offset, end, budget, out: Float64Array(4),
 *               lease, header?: string, warmEnd?: number,
 *               tupleCache?: Uint8Array)
 *   -> 0 done | ZC_EOF | ZC_LEASE_* | ZC_COLD | -errno;
 * out[0] = body bytes sent, out[1] = header bytes sent (latin1, as Node
 * writes headers). The body starts only once the whole header is out.
 * Under a lease the burst is linked to it, so a break past its grace can
 * stop it between two sendfile calls.
 * With warmEnd >= 0 the burst's pages from warmEnd on must be in the page
 * cache: if not, ZC_COLD, nothing sent (not even the header), and out[2],
 * out[3] = offset and length to read in first (coldRead); if so, out[2] =
 * the new warmEnd (the pages below it are known to be cached). */
static napi_value sendfile_burst(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value argv[10];
  napi_typedarray_type type;
  napi_valuetype header_type;
  size_t length;
  void* data;
  double* out;
  int64_t offset, sent = 0;
  int status;
  zc_transfer_link_t link;
  zc_tuple_t tuple;
  const zc_tuple_t* first_send = NULL;
  int32_t lease;
  napi_valuetype warm_type;
  int64_t end, budget, from, cold_length;
  int file;

  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  NAPI_CALL(env, napi_get_typedarray_info(env, argv[5], &type, &length, &data,
                                          NULL, NULL));
  CHECK(type == napi_float64_array && length >= 2);
  out = data;
  out[0] = out[1] = 0;
  file = zc_arg_int32(env, argv[1]);
  offset = zc_arg_int64(env, argv[2]);
  end = zc_arg_int64(env, argv[3]);
  budget = zc_arg_int64(env, argv[4]);
  NAPI_CALL(env, napi_typeof(env, argv[8], &warm_type));
  if (warm_type == napi_number) {
    int64_t warm_end = zc_arg_int64(env, argv[8]);
    if (warm_end >= 0) {
      CHECK(length >= 4);
      if (zc_burst_is_cold(file, offset, end, budget, &warm_end, &from,
                           &cold_length)) {
        out[2] = (double)from;
        out[3] = (double)cold_length;
        return zc_int32(env, ZC_COLD);
      }
      out[2] = (double)warm_end;
    }
  }
  lease = zc_arg_int32(env, argv[6]);
  memset(&link, 0, sizeof(link));
  link.sock = zc_arg_int32(env, argv[0]);
  if (lease > 0 && tuple_of_cached(env, argv[9], link.sock, &tuple) == 0)
    first_send = &tuple;
  if (!zc_lease_link(lease, &link, first_send))
    return zc_int32(env, ZC_LEASE_BROKEN);

  NAPI_CALL(env, napi_typeof(env, argv[7], &header_type));
  if (header_type == napi_string) {
    char stack[16384];
    char* header = stack;
    size_t header_length;
    ssize_t n;
    NAPI_CALL(env, napi_get_value_string_latin1(env, argv[7], NULL, 0,
                                                &header_length));
    if (header_length + 1 > sizeof(stack)) {
      header = malloc(header_length + 1);
      CHECK(header != NULL);
    }
    NAPI_CALL(env, napi_get_value_string_latin1(env, argv[7], header,
                                                header_length + 1,
                                                &header_length));
    n = send_header(link.sock, header, header_length);
    if (header != stack) free(header);
    if (n < 0 || (size_t)n < header_length) {
      zc_lease_unlink(&link);
      out[1] = n < 0 ? 0 : (double)n;
      return zc_int32(env, n < 0 ? (int32_t)n : -EAGAIN);
    }
    out[1] = (double)n;
  }

  status = zc_sendfile_burst(link.sock, file, &offset, end, budget, &sent,
                             &link);
  zc_lease_unlink(&link);
  out[0] = (double)sent;
  return zc_int32(env, status);
}

void zc_init_sendfile(napi_env env, napi_value exports) {
  zc_export(env, exports, "sendfileBurst", sendfile_burst);
}
