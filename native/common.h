/*
 * Shared helpers for the fastify-zero-copy addon.
 *
 * Policy lives in JavaScript: native functions return a byte count or a
 * negative errno, and lib/native.ts turns -errno into an Error shaped like
 * Node's own (code, errno, syscall).
 */
#ifndef ZC_COMMON_H
#define ZC_COMMON_H

#define NAPI_VERSION 8
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Aborts with file and line whatever NDEBUG says: never put side effects
 * inside assert(), and never ignore a failed N-API call. */
#define CHECK(expr)                                                         \
  do {                                                                      \
    if (!(expr)) {                                                          \
      fprintf(stderr, "fastify-zero-copy: %s:%d: CHECK(%s) failed\n",       \
              __FILE__, __LINE__, #expr);                                   \
      abort();                                                              \
    }                                                                       \
  } while (0)

#define NAPI_CALL(env, call) CHECK((call) == napi_ok)

int32_t zc_arg_int32(napi_env env, napi_value v);
int64_t zc_arg_int64(napi_env env, napi_value v);
napi_value zc_int32(napi_env env, int32_t n);
napi_value zc_double(napi_env env, double n);
void zc_export(napi_env env, napi_value exports, const char* name,
               napi_callback fn);

/* zc_sendfile_burst() result when sendfile returned 0 before the end. */
#define ZC_EOF 1

/* A TCP connection by its addresses (what inet_diag looks sockets up by). */
#include <sys/socket.h>
typedef struct {
  struct sockaddr_storage local;
  struct sockaddr_storage peer;
} zc_tuple_t;

int zc_tuple_of(int sock, zc_tuple_t* c);
/* 1: every byte we queued is with the peer (read, if it is on this host);
 * 0: not yet; -errno: could not tell. */
int zc_diag_is_safe(const zc_tuple_t* c);
/* 1: the peer's socket is visible here: it is on this host. */
int zc_diag_peer_is_local(const zc_tuple_t* c);

/* Lease-related statuses returned by sends (after ZC_EOF = 1). */
#define ZC_LEASE_BROKEN 2   /* the lease was past its grace: nothing sent */
#define ZC_LEASE_STOPPED 3  /* the lease thread stopped it and owns the end */
/* sendfileBurst: the chunk is not in the page cache; nothing was sent. */
#define ZC_COLD 4
/* leaseAcquire: the lease signal already has another handler. */
#define ZC_ERR_FOREIGN_HANDLER (-100000)

#include <stdatomic.h>
/* A send in progress under a lease: the lease thread may stop it. */
typedef struct zc_transfer_link_s {
  struct zc_transfer_link_s* next;
  int32_t handle;
  int sock;
  atomic_int stop;
} zc_transfer_link_t;

typedef struct {
  atomic_ullong taken, broken, finished_in_grace, aborted, unverified;
} zc_lease_counters_t;
extern zc_lease_counters_t zc_lease_counters;

/* 1 linked (or no lease), 0 refused: the lease is past its grace. */
int zc_lease_link(int32_t handle, zc_transfer_link_t* t,
                  const zc_tuple_t* first_send);
void zc_lease_unlink(zc_transfer_link_t* t);
/* Called under the lease lock from the lease thread. */
void zc_lease_notify(int32_t handle, int kind, int affected);
#define ZC_NOTIFY_BREAK 1
#define ZC_NOTIFY_UNVERIFIED 2

int zc_sendfile_burst(int sock, int file, int64_t* offset, int64_t end,
                      int64_t budget, int64_t* sent,
                      const zc_transfer_link_t* link);

/* Each concern registers its functions on the exports object. */
void zc_init_open(napi_env env, napi_value exports);
void zc_init_sendfile(napi_env env, napi_value exports);
void zc_init_transfer(napi_env env, napi_value exports);
void zc_init_lease(napi_env env, napi_value exports);
void zc_init_notify(napi_env env, napi_value exports);

#endif
