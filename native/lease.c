/*
 * Read leases on the files being sent, and what happens when one breaks.
 *
 * While a file is sent we hold fcntl(F_SETLEASE, F_RDLCK) on it. When
 * another process opens it for writing or truncates it, the kernel makes
 * that process wait and signals us. We then let transfers finish within a
 * grace period, stop the rest, wait until the bytes already handed to the
 * kernel are safe (see diag.c), and only then release the lease, so that
 * no client ever reads a mix of old and new bytes.
 *
 * All of this runs on one native thread per process, so it works while the
 * JavaScript event loop is blocked. Facts behind each step:
 * docs/kernel-facts.md.
 *
 *  - One process-wide handler, SA_SIGINFO, on SIGRTMIN+2 computed at run
 *    time (glibc takes 32 and 33). Node cannot catch it from JS, and its
 *    default action kills the process: we refuse to use a signal that has
 *    someone else's handler. SIGIO too: the kernel sends it instead when
 *    the RT signal queue is full (RLIMIT_SIGPENDING); it means "rescan".
 *  - The handler only write()s si_fd to a non-blocking pipe. si_fd is the
 *    number given to F_SETLEASE, maybe closed since: a hint, confirmed with
 *    F_GETLEASE.
 *  - Per lease: a dup of the response's fd (a lease belongs to the open
 *    file description; CLOEXEC so no child inherits it), F_SETSIG before
 *    every F_SETLEASE (any lease removal clears it), F_SETLEASE, then
 *    F_SETOWN_EX to our thread: the signal would otherwise go to the thread
 *    that set the lease, and be lost if that thread (a worker) exits.
 *  - Responses of the same file share one lease; it lingers a moment after
 *    the last one so the next response reuses it without a syscall.
 */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_LEASES 4096
#define MAX_SETTLING 256      /* connections awaited per lease at release */
#define LINGER_MS 500         /* an idle lease is kept this long for reuse */
#define MAX_IDLE 16           /* and at most this many idle ones (one fd each) */
#define TICK_MS 5             /* how often a breaking lease is re-checked */

typedef struct {
  int fd;                     /* the leased open file description, or -1 */
  uint32_t generation;        /* handle = slot | generation << 12 */
  double dev, ino;
  int refs;                   /* responses using it */
  int breaking;               /* 1 once the kernel asked for it back */
  int expire;                 /* idle and not to linger: release once safe */
  uint64_t break_ms, idle_since_ms, grace_ms;
  int fast;                   /* integrity 'fast': release right after stopping */
  int stopped;                /* transfers were stopped at the grace's end */
  int counted;                /* this break's outcome is in the counters */
  int settling_count;
  zc_tuple_t settling[MAX_SETTLING];
  int shutdown_count;         /* our dups of stopped same-host connections */
  int shutdown_fds[MAX_SETTLING];
  zc_transfer_link_t* transfers;
} lease_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int idle_count = 0;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static lease_t leases[MAX_LEASES];
static int lease_signal = -1;
static int high_water = -1;   /* highest slot ever used: scans stop there */
static int init_error = 0;    /* -errno or ZC_ERR_FOREIGN_HANDLER */
static int pipe_r = -1, pipe_w = -1;
static pid_t thread_tid = 0;
static uint64_t break_time_ms = 45000;
static volatile sig_atomic_t rescan_all = 0;
static int sleeping_forever = 0; /* the thread waits with no deadline */

zc_lease_counters_t zc_lease_counters;

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Async-signal-safe: write(2) and a sig_atomic_t only. */
static void on_signal(int sig, siginfo_t* info, void* context) {
  int saved = errno;
  int fd = sig == SIGIO ? -1 : info->si_fd;
  (void)context;
  if (write(pipe_w, &fd, sizeof(fd)) != (ssize_t)sizeof(fd)) rescan_all = 1;
  errno = saved;
}

static int install(int sig) {
  struct sigaction current, sa;
  if (sigaction(sig, NULL, &current) != 0) return -errno;
  if ((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == on_signal)
    return 0;
  if (!(current.sa_flags & SA_SIGINFO) && current.sa_handler != SIG_DFL)
    return ZC_ERR_FOREIGN_HANDLER;
  if ((current.sa_flags & SA_SIGINFO) && current.sa_sigaction != NULL)
    return ZC_ERR_FOREIGN_HANDLER;
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = on_signal;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  return sigaction(sig, &sa, NULL) == 0 ? 0 : -errno;
}

static lease_t* by_handle(int32_t handle) {
  int slot = handle & 0xfff;
  lease_t* l;
  if (handle <= 0 || slot >= MAX_LEASES) return NULL;
  l = &leases[slot];
  return l->fd >= 0 && (int32_t)(slot | (l->generation << 12)) == handle
             ? l : NULL;
}

static int settled(lease_t* l);

static void remember(lease_t* l, const zc_tuple_t* c) {
  int i;
  for (i = 0; i < l->settling_count; i++)
    if (memcmp(&l->settling[i], c, sizeof(*c)) == 0) return;
  if (l->settling_count == MAX_SETTLING) settled(l); /* drop the safe ones */
  if (l->settling_count == MAX_SETTLING) {
    /* Too many to watch: the oldest is given up on, and counted. */
    memmove(&l->settling[0], &l->settling[1],
            sizeof(*c) * (MAX_SETTLING - 1));
    l->settling_count--;
    atomic_fetch_add(&zc_lease_counters.unverified, 1);
  }
  l->settling[l->settling_count++] = *c;
}

/* Drops the connections whose bytes are safe; 1 when none is left. */
static int settled(lease_t* l) {
  int i = 0;
  while (i < l->settling_count) {
    if (zc_diag_is_safe(&l->settling[i]) != 0) {
      l->settling[i] = l->settling[--l->settling_count];
    } else {
      i++;
    }
  }
  return l->settling_count == 0;
}

/* Stopped same-host connections end only now, after their peer read what
 * it had: it then sees a short body and a closed connection. */
static void shutdown_stopped(lease_t* l) {
  int i;
  for (i = 0; i < l->shutdown_count; i++) {
    shutdown(l->shutdown_fds[i], SHUT_RDWR);
    close(l->shutdown_fds[i]);
  }
  l->shutdown_count = 0;
}

static void release(lease_t* l) {
  if (l->refs == 0) idle_count--;
  shutdown_stopped(l);
  fcntl(l->fd, F_SETLEASE, F_UNLCK);
  close(l->fd);
  l->fd = -1;
  l->generation = l->generation % 0x7ffff + 1;
  l->breaking = l->stopped = l->counted = 0;
  l->settling_count = 0;
  l->transfers = NULL; /* a linked send still running finds its lease gone */
}

/*
 * A break: transfers still running after the grace are stopped. A remote
 * peer is reset (connect(AF_UNSPEC) resets the connection and drops our
 * unsent queue, from any fd, even while JS is blocked); a peer on this host
 * is not (after a reset its queue would still hold our pages, and vanish
 * from inet_diag): we stop sending and wait for it to read what it has,
 * then shut the connection down so it sees a short body.
 */
static void stop_transfers(lease_t* l) {
  zc_transfer_link_t* t;
  l->stopped = 1;
  for (t = l->transfers; t != NULL; t = t->next) {
    zc_tuple_t c;
    if (atomic_exchange(&t->stop, 1)) continue;
    atomic_fetch_add(&zc_lease_counters.aborted, 1);
    if (zc_tuple_of(t->sock, &c) != 0) continue; /* unix socket, or gone */
    if (!zc_diag_peer_is_local(&c)) {
      struct sockaddr unspec = { .sa_family = AF_UNSPEC };
      connect(t->sock, &unspec, sizeof(unspec));
    } else if (!l->fast && l->shutdown_count < MAX_SETTLING) {
      /* Our own dup: the send's may be closed before the peer drains. */
      int fd = fcntl(t->sock, F_DUPFD_CLOEXEC, 0);
      remember(l, &c);
      if (fd >= 0) l->shutdown_fds[l->shutdown_count++] = fd;
    } else {
      shutdown(t->sock, SHUT_RDWR);
    }
  }
}

static void on_break(int fd) {
  int i;
  for (i = 0; i <= high_water; i++) {
    lease_t* l = &leases[i];
    if (l->fd < 0 || (fd >= 0 && l->fd != fd) || l->breaking) continue;
    /* Confirm: during a break F_GETLEASE returns the target, F_UNLCK. */
    if (fcntl(l->fd, F_GETLEASE) != F_UNLCK) continue;
    l->breaking = 1;
    l->break_ms = now_ms();
    atomic_fetch_add(&zc_lease_counters.broken, 1);
    zc_lease_notify(i | (l->generation << 12), ZC_NOTIFY_BREAK, l->refs);
  }
}

/* One pass over breaking and idle leases; returns ms until the next. */
static int tick(void) {
  uint64_t now = now_ms();
  int i, wait = -1;
  for (i = 0; i <= high_water; i++) {
    lease_t* l = &leases[i];
    if (l->fd < 0) continue;
    if (l->breaking) {
      int grace_over = now - l->break_ms >= l->grace_ms;
      if (l->refs > 0 && !grace_over) {
        wait = TICK_MS;
        continue;
      }
      if (!grace_over && !l->stopped && !l->counted) {
        l->counted = 1;
        atomic_fetch_add(&zc_lease_counters.finished_in_grace, 1);
      }
      if (grace_over && !l->stopped) stop_transfers(l);
      /* 'fast' integrity: a same-host reader that stalled may still see
       * new bytes in what was queued; the writer is let go at once. */
      if (l->fast || settled(l)) {
        release(l);
      } else if (now - l->break_ms + 1000 >= break_time_ms) {
        /* The kernel takes the lease at lease-break-time anyway. */
        atomic_fetch_add(&zc_lease_counters.unverified, 1);
        zc_lease_notify(i | (l->generation << 12), ZC_NOTIFY_UNVERIFIED, l->settling_count);
        release(l);
      } else {
        wait = TICK_MS;
      }
    } else if (l->refs == 0) {
      if (l->expire || now - l->idle_since_ms >= LINGER_MS) {
        if (settled(l) || now - l->idle_since_ms >= break_time_ms) release(l);
        else wait = TICK_MS;
      } else {
        int left = (int)(LINGER_MS - (now - l->idle_since_ms));
        if (wait < 0 || left < wait) wait = left;
      }
    }
  }
  return wait;
}

static void* lease_thread(void* arg) {
  (void)arg;
  pthread_mutex_lock(&lock);
  thread_tid = (pid_t)syscall(SYS_gettid);
  pthread_mutex_unlock(&lock);
  for (;;) {
    struct pollfd p = { .fd = pipe_r, .events = POLLIN };
    int wait, fds[64], rc;
    ssize_t n;

    pthread_mutex_lock(&lock);
    wait = tick();
    sleeping_forever = wait < 0;
    pthread_mutex_unlock(&lock);

    rc = poll(&p, 1, wait);
    if (rc <= 0) continue;
    n = read(pipe_r, fds, sizeof(fds));
    pthread_mutex_lock(&lock);
    if (rescan_all) {
      rescan_all = 0;
      on_break(-1);
    }
    /* -2 only wakes us to re-arm timers; -1 (SIGIO) asks for a rescan. */
    for (ssize_t k = 0; k < n / (ssize_t)sizeof(int); k++)
      if (fds[k] != -2) on_break(fds[k]);
    pthread_mutex_unlock(&lock);
  }
  return NULL;
}

static void init_once(void) {
  int fds[2], rc, i;
  pthread_t thread;
  pthread_attr_t attr;
  FILE* f;

  for (i = 0; i < MAX_LEASES; i++) {
    leases[i].fd = -1;
    leases[i].generation = 1; /* handles are never 0 ("no lease") */
  }
  f = fopen("/proc/sys/fs/lease-break-time", "r");
  if (f != NULL) {
    unsigned seconds;
    if (fscanf(f, "%u", &seconds) == 1 && seconds > 1)
      break_time_ms = (uint64_t)seconds * 1000;
    fclose(f);
  }
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
    init_error = -errno;
    return;
  }
  pipe_r = fds[0];
  pipe_w = fds[1];
  lease_signal = SIGRTMIN + 2;
  rc = install(lease_signal);
  if (rc == 0) rc = install(SIGIO);
  if (rc != 0) {
    init_error = rc;
    return;
  }
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  rc = pthread_create(&thread, &attr, lease_thread, NULL);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    init_error = -rc;
    return;
  }
  while (1) { /* the thread's id is the owner of every lease signal */
    pid_t tid;
    pthread_mutex_lock(&lock);
    tid = thread_tid;
    pthread_mutex_unlock(&lock);
    if (tid != 0) break;
    sched_yield();
  }
}

/* leaseAcquire(fd, dev, ino, graceMs, fast, size, mtimeMs) -> handle > 0
 * | -errno | ZC_ERR_FOREIGN_HANDLER. Reuses a held lease on the same file;
 * the strictest integrity and the longest grace asked for apply. -ESTALE:
 * the file changed between the caller's fstat and the lease. */
static napi_value lease_acquire(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  int fast;
  double size, mtime_ms;
  struct stat st;
  double dev, ino;
  int fd, lease_fd, i, free_slot = -1;
  int64_t grace;
  struct f_owner_ex owner;

  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  fd = zc_arg_int32(env, argv[0]);
  NAPI_CALL(env, napi_get_value_double(env, argv[1], &dev));
  NAPI_CALL(env, napi_get_value_double(env, argv[2], &ino));
  grace = zc_arg_int64(env, argv[3]);
  fast = zc_arg_int32(env, argv[4]);
  NAPI_CALL(env, napi_get_value_double(env, argv[5], &size));
  NAPI_CALL(env, napi_get_value_double(env, argv[6], &mtime_ms));
  pthread_once(&once, init_once);
  if (init_error != 0) return zc_int32(env, init_error);

  pthread_mutex_lock(&lock);
  for (i = 0; i <= high_water && i < MAX_LEASES; i++) {
    lease_t* l = &leases[i];
    if (l->fd < 0) {
      if (free_slot < 0) free_slot = i;
      continue;
    }
    if (l->dev == dev && l->ino == ino && !l->breaking) {
      if (l->refs++ == 0) idle_count--;
      l->expire = 0;
      if (!fast) l->fast = 0;
      if ((uint64_t)grace > l->grace_ms) l->grace_ms = (uint64_t)grace;
      pthread_mutex_unlock(&lock);
      return zc_int32(env, i | (l->generation << 12));
    }
  }
  if (free_slot < 0 && high_water + 1 < MAX_LEASES) free_slot = high_water + 1;
  if (free_slot < 0) {
    pthread_mutex_unlock(&lock);
    return zc_int32(env, -ENOLCK);
  }
  lease_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (lease_fd < 0) {
    int err = errno;
    pthread_mutex_unlock(&lock);
    return zc_int32(env, -err);
  }
  owner.type = F_OWNER_TID;
  owner.pid = thread_tid;
  if (fcntl(lease_fd, F_SETSIG, lease_signal) != 0 ||
      fcntl(lease_fd, F_SETLEASE, F_RDLCK) != 0 ||
      fcntl(lease_fd, F_SETOWN_EX, &owner) != 0) {
    int err = errno;
    close(lease_fd); /* closing a leased fd removes its lease */
    pthread_mutex_unlock(&lock);
    return zc_int32(env, -err);
  }
  /* A writer may have come and gone between the caller's fstat and the
   * lease: then the headers it planned describe other bytes. */
  if (fstat(lease_fd, &st) != 0 || (double)st.st_size != size ||
      (double)st.st_mtim.tv_sec * 1e3 + (double)st.st_mtim.tv_nsec / 1e6 !=
          mtime_ms) {
    fcntl(lease_fd, F_SETLEASE, F_UNLCK);
    close(lease_fd);
    pthread_mutex_unlock(&lock);
    return zc_int32(env, -ESTALE);
  }
  if (free_slot > high_water) high_water = free_slot;
  {
    lease_t* l = &leases[free_slot];
    l->fd = lease_fd;
    l->dev = dev;
    l->ino = ino;
    l->refs = 1;
    l->fast = fast;
    l->breaking = l->stopped = l->expire = l->counted = 0;
    l->shutdown_count = 0;
    l->grace_ms = (uint64_t)grace;
    l->settling_count = 0;
    l->transfers = NULL;
    i = free_slot | (l->generation << 12);
  }
  atomic_fetch_add(&zc_lease_counters.taken, 1);
  pthread_mutex_unlock(&lock);
  return zc_int32(env, i);
}

/* leaseRelease(handle): this response is done with the lease. */
static napi_value lease_release(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  lease_t* l;

  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  pthread_mutex_lock(&lock);
  l = by_handle(zc_arg_int32(env, argv[0]));
  if (l != NULL && l->refs > 0) {
    if (--l->refs == 0) {
      /* Over the idle cap: no lingering, released once its bytes are safe. */
      l->idle_since_ms = now_ms();
      l->expire = ++idle_count > MAX_IDLE;
      /* The thread must see the new deadline. It only needs waking when it
       * sleeps without one: a wake per response would cost a context
       * switch per response. */
      if ((sleeping_forever || l->expire) && pipe_w >= 0) {
        int wake = -2; /* not an fd: only re-arms the thread's timer */
        sleeping_forever = 0;
        if (write(pipe_w, &wake, sizeof(wake)) < 0) rescan_all = 1;
      }
    }
  }
  pthread_mutex_unlock(&lock);
  return NULL;
}

/* leaseState(handle) -> 0 held, 1 breaking within grace, 2 must stop,
 * 3 gone. For the write-based path, which checks before each read. */
static int zc_lease_state(int32_t handle) {
  lease_t* l;
  int state;
  if (handle <= 0) return 0;
  pthread_mutex_lock(&lock);
  l = by_handle(handle);
  if (l == NULL) state = 3;
  else if (!l->breaking) state = 0;
  else state = now_ms() - l->break_ms < l->grace_ms ? 1 : 2;
  pthread_mutex_unlock(&lock);
  return state;
}

static napi_value lease_state(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  return zc_int32(env, zc_lease_state(zc_arg_int32(env, argv[0])));
}

int zc_lease_link(int32_t handle, zc_transfer_link_t* t,
                  const zc_tuple_t* first_send) {
  lease_t* l;
  int ok = 0;
  if (handle <= 0) return 1;
  pthread_mutex_lock(&lock);
  l = by_handle(handle);
  if (l != NULL && !(l->breaking && now_ms() - l->break_ms >= l->grace_ms)) {
    /* Every connection that gets bytes under the lease is watched until
     * they are safe, however its response ends (done, abort, timeout). */
    if (first_send != NULL) remember(l, first_send);
    t->next = l->transfers;
    l->transfers = t;
    t->handle = handle;
    ok = 1;
  }
  pthread_mutex_unlock(&lock);
  return ok;
}

void zc_lease_unlink(zc_transfer_link_t* t) {
  lease_t* l;
  if (t->handle <= 0) return;
  pthread_mutex_lock(&lock);
  l = by_handle(t->handle);
  if (l != NULL) {
    zc_transfer_link_t** p = &l->transfers;
    while (*p != NULL && *p != t) p = &(*p)->next;
    if (*p == t) *p = t->next;
  }
  t->handle = 0;
  pthread_mutex_unlock(&lock);
}

/* leaseCounters(out: Float64Array(5)): process-wide counters: taken,
 * broken, finished in grace, transfers aborted, integrity unverified. */
static napi_value lease_counters(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_typedarray_type type;
  size_t length;
  void* data;
  double* out;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  NAPI_CALL(env, napi_get_typedarray_info(env, argv[0], &type, &length, &data,
                                          NULL, NULL));
  CHECK(type == napi_float64_array && length >= 5);
  out = data;
  out[0] = (double)atomic_load(&zc_lease_counters.taken);
  out[1] = (double)atomic_load(&zc_lease_counters.broken);
  out[2] = (double)atomic_load(&zc_lease_counters.finished_in_grace);
  out[3] = (double)atomic_load(&zc_lease_counters.aborted);
  out[4] = (double)atomic_load(&zc_lease_counters.unverified);
  return NULL;
}

/* leaseDropIdle(): idle leases go at the thread's next pass (fastify.close). */
static napi_value lease_drop_idle(napi_env env, napi_callback_info info) {
  int i, wake = -2;
  (void)info;
  pthread_mutex_lock(&lock);
  for (i = 0; i <= high_water; i++)
    if (leases[i].fd >= 0 && leases[i].refs == 0 && !leases[i].breaking)
      leases[i].expire = 1;
  if (pipe_w >= 0 && write(pipe_w, &wake, sizeof(wake)) < 0) rescan_all = 1;
  pthread_mutex_unlock(&lock);
  return NULL;
}

/* leaseHeld() -> number of leases held by this process (tests, stats). */
static napi_value lease_held(napi_env env, napi_callback_info info) {
  int i, n = 0;
  (void)info;
  pthread_mutex_lock(&lock);
  /* Up to the high-water mark: slots past it were never initialised. */
  for (i = 0; i <= high_water; i++) n += leases[i].fd >= 0;
  pthread_mutex_unlock(&lock);
  return zc_int32(env, n);
}

void zc_init_lease(napi_env env, napi_value exports) {
  zc_export(env, exports, "leaseAcquire", lease_acquire);
  zc_export(env, exports, "leaseRelease", lease_release);
  zc_export(env, exports, "leaseState", lease_state);
  zc_export(env, exports, "leaseCounters", lease_counters);
  zc_export(env, exports, "leaseHeld", lease_held);
  zc_export(env, exports, "leaseDropIdle", lease_drop_idle);
}
