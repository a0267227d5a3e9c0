/*
 * Tells JavaScript about lease breaks, for logs. The lease thread must not
 * wait for an event loop (it may be blocked), so each environment (main
 * thread, each worker) registers a thread-safe function; events are queued
 * without blocking and reach JS whenever its loop runs. Each environment
 * gets every event and keeps those about handles it holds.
 */
#include "common.h"

#include <pthread.h>

#define MAX_ENVS 64

typedef struct { int32_t handle; int kind; int affected; } event_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static napi_threadsafe_function listeners[MAX_ENVS];

static void deliver(napi_env env, napi_value fn, void* context, void* data) {
  event_t* e = data;
  (void)context;
  if (env != NULL && fn != NULL) {
    napi_value global, argv[3], result;
    NAPI_CALL(env, napi_get_global(env, &global));
    argv[0] = zc_int32(env, e->handle);
    argv[1] = zc_int32(env, e->kind);
    argv[2] = zc_int32(env, e->affected);
    napi_call_function(env, global, fn, 3, argv, &result);
  }
  free(e);
}

void zc_lease_notify(int32_t handle, int kind, int affected) {
  int i;
  pthread_mutex_lock(&lock);
  for (i = 0; i < MAX_ENVS; i++) {
    event_t* e;
    if (listeners[i] == NULL) continue;
    e = malloc(sizeof(*e));
    if (e == NULL) break;
    e->handle = handle;
    e->kind = kind;
    e->affected = affected;
    if (napi_call_threadsafe_function(listeners[i], e, napi_tsfn_nonblocking) != napi_ok)
      free(e);
  }
  pthread_mutex_unlock(&lock);
}

/* Environment teardown: the lease thread must stop calling into it. */
static void forget(void* tsfn) {
  int i;
  pthread_mutex_lock(&lock);
  for (i = 0; i < MAX_ENVS; i++)
    if (listeners[i] == tsfn) listeners[i] = NULL;
  pthread_mutex_unlock(&lock);
}

/* onLeaseEvent(callback(handle, kind, affected)): one per environment. */
static napi_value on_lease_event(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], name;
  napi_threadsafe_function tsfn;
  int i;

  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  NAPI_CALL(env, napi_create_string_utf8(env, "ZeroCopyLeaseEvent",
                                         NAPI_AUTO_LENGTH, &name));
  pthread_mutex_lock(&lock);
  for (i = 0; i < MAX_ENVS && listeners[i] != NULL; i++) {}
  pthread_mutex_unlock(&lock);
  if (i == MAX_ENVS) return zc_int32(env, -1);
  NAPI_CALL(env, napi_create_threadsafe_function(env, argv[0], NULL, name, 0,
                                                 1, NULL, NULL, NULL, deliver,
                                                 &tsfn));
  /* Never keeps the process alive; released when the environment ends. */
  NAPI_CALL(env, napi_unref_threadsafe_function(env, tsfn));
  pthread_mutex_lock(&lock);
  listeners[i] = tsfn;
  pthread_mutex_unlock(&lock);
  NAPI_CALL(env, napi_add_env_cleanup_hook(env, forget, tsfn));
  return zc_int32(env, 0);
}

void zc_init_notify(napi_env env, napi_value exports) {
  zc_export(env, exports, "onLeaseEvent", on_lease_event);
}
