/* Addon entry point: only registers what each concern exports. */
#include "common.h"
#include "residency.h"

int32_t zc_arg_int32(napi_env env, napi_value v) {
  int32_t n;
  NAPI_CALL(env, napi_get_value_int32(env, v, &n));
  return n;
}

int64_t zc_arg_int64(napi_env env, napi_value v) {
  int64_t n;
  NAPI_CALL(env, napi_get_value_int64(env, v, &n));
  return n;
}

napi_value zc_int32(napi_env env, int32_t n) {
  napi_value v;
  NAPI_CALL(env, napi_create_int32(env, n, &v));
  return v;
}

napi_value zc_double(napi_env env, double n) {
  napi_value v;
  NAPI_CALL(env, napi_create_double(env, n, &v));
  return v;
}

void zc_export(napi_env env, napi_value exports, const char* name,
               napi_callback fn) {
  napi_value f;
  NAPI_CALL(env, napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, NULL,
                                      &f));
  NAPI_CALL(env, napi_set_named_property(env, exports, name, f));
}

static napi_value init(napi_env env, napi_value exports) {
  zc_init_open(env, exports);
  zc_init_sendfile(env, exports);
  zc_init_transfer(env, exports);
  zc_init_lease(env, exports);
  zc_init_notify(env, exports);
  zc_init_residency(env, exports);
  return exports;
}

NAPI_MODULE_INIT() {
  return init(env, exports);
}
