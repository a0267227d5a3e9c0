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

int zc_sendfile_burst(int sock, int file, int64_t* offset, int64_t end,
                      int64_t budget, int64_t* sent);

/* Each concern registers its functions on the exports object. */
void zc_init_open(napi_env env, napi_value exports);
void zc_init_sendfile(napi_env env, napi_value exports);
void zc_init_transfer(napi_env env, napi_value exports);

#endif
