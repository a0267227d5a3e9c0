/*
 * Opening the file to send, and only that file.
 *
 * openat2(RESOLVE_BENEATH) makes the kernel refuse any path, `..` or symlink
 * that leads outside the root directory (EXDEV), with no window between a
 * check and the open. The fstat is done on the same fd, so the size, ETag
 * and Last-Modified describe exactly the bytes we will send.
 *
 * Where openat2 is missing or blocked, the same rules are kept by a walk of
 * one name at a time (open-walk.c); JavaScript probes once which to use.
 */
#define _GNU_SOURCE
#include "common.h"
#include "open-walk.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

/* O_NONBLOCK: opening a FIFO must never block the event loop (nginx does the
 * same); it has no effect on regular files. */
#define ZC_OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)

/* Fields written into the caller's Float64Array, in this order (lib/open-file.ts
 * reads them by the same names).
 * ST_PSEUDO: 1 when the file system makes up st_size (see below).
 * ST_CTIME_MS: no user can set ctime, so a change of it after an fstat means
 * the inode changed, even where a writer put size and mtime back. */
enum { ST_MODE, ST_SIZE, ST_INO, ST_MTIME_MS, ST_DEV, ST_PSEUDO, ST_CTIME_MS,
       ST_FIELDS };

/* sysfs and its kin report st_size 4096 (or 0) whatever the content, so a
 * Content-Length from fstat would be a lie and the body cut short. They live
 * on anonymous devices (major 0), as tmpfs and overlayfs do: only those pay
 * for the fstatfs. procfs is left out: its size 0 is at least consistent
 * (an empty body). */
static int is_pseudo_file(int fd, const struct stat* st) {
  struct statfs sf;
  if (major(st->st_dev) != 0 || fstatfs(fd, &sf) != 0) return 0;
  switch ((unsigned long)sf.f_type) {
    case SYSFS_MAGIC:
    case DEBUGFS_MAGIC:
    case TRACEFS_MAGIC:
    case SECURITYFS_MAGIC:
    case CGROUP_SUPER_MAGIC:
    case CGROUP2_SUPER_MAGIC:
    case EFIVARFS_MAGIC:
    case BPF_FS_MAGIC:
      return 1;
    default:
      return 0;
  }
}

static int open_beneath(int dirfd, const char* path) {
  struct open_how how = { 0 };
  how.flags = ZC_OPEN_FLAGS;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

static void copy_stat(const struct stat* st, double* out) {
  out[ST_MODE] = (double)st->st_mode;
  out[ST_SIZE] = (double)st->st_size;
  out[ST_INO] = (double)st->st_ino;
  out[ST_MTIME_MS] = (double)st->st_mtim.tv_sec * 1e3 +
                     (double)st->st_mtim.tv_nsec / 1e6;
  out[ST_DEV] = (double)st->st_dev;
  out[ST_CTIME_MS] = (double)st->st_ctim.tv_sec * 1e3 +
                     (double)st->st_ctim.tv_nsec / 1e6;
}

/* openat2Probe() -> 0 | -errno: whether openat2 works here, asked with the
 * flags open_beneath() uses on a folder that always exists. ENOSYS: kernel
 * before 5.6, qemu-user, gVisor; EPERM: a seccomp profile blocking it. */
static napi_value openat2_probe(napi_env env, napi_callback_info info) {
  int dir, fd, err = 0;

  (void)info;
  dir = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return zc_int32(env, -errno);
  do {
    fd = open_beneath(dir, ".");
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) err = errno;
  else close(fd);
  close(dir);
  return zc_int32(env, -err);
}

/* openFile(dirfd, path, statOut: Float64Array(ST_FIELDS), walk) -> fd | -errno
 * dirfd < 0: path is absolute and opened as is. walk 1: beneath dirfd with
 * zc_open_walk() instead of openat2. */
static napi_value open_file(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  char path[4096];
  size_t path_len;
  napi_typedarray_type type;
  size_t length;
  void* data;
  struct stat st;
  int dirfd, fd, walk;

  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  dirfd = zc_arg_int32(env, argv[0]);
  walk = argc >= 4 && zc_arg_int32(env, argv[3]) != 0;
  NAPI_CALL(env, napi_get_value_string_utf8(env, argv[1], path, sizeof(path),
                                            &path_len));
  if (path_len >= sizeof(path) - 1) return zc_int32(env, -ENAMETOOLONG);
  NAPI_CALL(env, napi_get_typedarray_info(env, argv[2], &type, &length, &data,
                                          NULL, NULL));
  CHECK(type == napi_float64_array && length >= ST_FIELDS);

  do {
    if (dirfd < 0) fd = open(path, ZC_OPEN_FLAGS);
    else if (walk) fd = zc_open_walk(dirfd, path, ZC_OPEN_FLAGS);
    else fd = open_beneath(dirfd, path);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return zc_int32(env, -errno);

  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return zc_int32(env, -err);
  }
  copy_stat(&st, (double*)data);
  ((double*)data)[ST_PSEUDO] = is_pseudo_file(fd, &st);
  return zc_int32(env, fd);
}

/* openDirectory(path) -> fd | -errno: an O_PATH handle on a root folder. */
static napi_value open_directory(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char path[4096];
  size_t path_len;
  int fd;

  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  NAPI_CALL(env, napi_get_value_string_utf8(env, argv[0], path, sizeof(path),
                                            &path_len));
  if (path_len >= sizeof(path) - 1) return zc_int32(env, -ENAMETOOLONG);
  fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  return zc_int32(env, fd < 0 ? -errno : fd);
}

/* close(fd) -> 0 | -errno. EINTR is not retried: on Linux the fd is gone
 * whatever close() returned (see close(2), "Dealing with error returns"). */
static napi_value close_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];

  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (close(zc_arg_int32(env, argv[0])) != 0 && errno != EINTR)
    return zc_int32(env, -errno);
  return zc_int32(env, 0);
}

/* fstatFile(fd, statOut: Float64Array(ST_FIELDS)) -> 0 | -errno: the file
 * described again from the fd it is sent from (the open-file cache asks
 * this on every hit, so an in-place write is seen by the next response).
 * ST_PSEUDO is left as the open found it. */
static napi_value fstat_file(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_typedarray_type type;
  size_t length;
  void* data;
  struct stat st;

  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  NAPI_CALL(env, napi_get_typedarray_info(env, argv[1], &type, &length, &data,
                                          NULL, NULL));
  CHECK(type == napi_float64_array && length >= ST_FIELDS);
  if (fstat(zc_arg_int32(env, argv[0]), &st) != 0)
    return zc_int32(env, -errno);
  copy_stat(&st, (double*)data);
  return zc_int32(env, 0);
}

void zc_init_open(napi_env env, napi_value exports) {
  zc_export(env, exports, "openFile", open_file);
  zc_export(env, exports, "openDirectory", open_directory);
  zc_export(env, exports, "openat2Probe", openat2_probe);
  zc_export(env, exports, "close", close_fd);
  zc_export(env, exports, "fstatFile", fstat_file);
}
