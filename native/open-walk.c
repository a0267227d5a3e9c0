/*
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) done by hand, one path
 * component at a time, for kernels before 5.6 and sandboxes where openat2
 * answers ENOSYS or EPERM (qemu-user, gVisor, seccomp profiles).
 *
 * Why it refuses what openat2 refuses, with the same errno (the reference
 * is fs/namei.c):
 * - Each lookup is openat(dir, name, O_PATH | O_NOFOLLOW) of ONE name in a
 *   directory fd we hold: the kernel never follows a symlink or a `..` for
 *   us, so no name can take the walk anywhere we did not choose, and a
 *   rename elsewhere in the tree cannot move us.
 * - A symlink is read through the O_PATH fd of the link itself (the very
 *   link we looked up) and its text is walked from the directory holding
 *   it, as the kernel does. An absolute target is EXDEV (nd_jump_root()
 *   refuses any under LOOKUP_BENEATH); the 41st symlink is ELOOP
 *   (MAXSYMLINKS); an empty target is ENOENT.
 * - `..` at the root is EXDEV (follow_dotdot(), "in_root"). Below the root
 *   `..` must land on the directory we came down from: we keep the
 *   (st_dev, st_ino) of each, and a mismatch (the folder we stand in was
 *   moved away meanwhile) is EAGAIN, which is what openat2 answers when its
 *   rename_lock check sees the same race.
 * - Magic links (nd_jump_link(): the kernel jumps to an object, not to the
 *   link's text) exist only in procfs, under /proc/<pid>/ (fd/N, exe, cwd,
 *   root, map_files/, ns/ and their task/<tid>/ copies). A symlink in a
 *   procfs folder other than the procfs root is ELOOP, the
 *   RESOLVE_NO_MAGICLINKS answer. The plain symlinks at the top of procfs
 *   (self, thread-self, mounts, net) are walked as text, as the kernel
 *   does. The rare plain proc_symlink()s deeper down are refused too:
 *   stricter than the kernel, never looser.
 * - The last name is opened for real with O_NOFOLLOW added: a symlink
 *   answers ELOOP, and is then read and walked; anything else (file,
 *   folder, FIFO, device) is opened exactly as openat2 opens it, and the
 *   caller's fstat judges it as before.
 * - A trailing slash, "." or ".." at the end ask for a folder: the walk
 *   ends in one and opens "." in it (a file followed by "/" is ENOTDIR).
 *
 * Not emulated: fs.protected_symlinks (may_follow_link() answers EACCES
 * for a symlink in a sticky world-writable folder owned by someone else;
 * here it is walked, still beneath root). Mount points are crossed, as
 * RESOLVE_BENEATH allows.
 *
 * Cost: an openat and an fstat per folder on the way and one openat for
 * the file: the same dentry-cache lookups openat2 does, in more calls, on
 * the same thread as before.
 */
#define _GNU_SOURCE
#include "open-walk.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

/* include/linux/namei.h */
#define ZC_MAXSYMLINKS 40
/* fs/proc/root.c: the procfs root folder's inode number. */
#define ZC_PROC_ROOT_INO 1

typedef struct {
  dev_t dev;
  ino_t ino;
} dir_id_t;

typedef struct {
  int root;       /* the caller's handle: never closed here */
  int cur;        /* the folder we stand in: root, or an fd of ours */
  dir_id_t* down; /* ids of the folders between root and cur */
  size_t depth;
  size_t cap;
  int links;      /* symlinks followed so far */
  char* owned;    /* the path being walked, once a symlink rewrote it */
} walk_t;

static int openat_retry(int dir, const char* name, int flags) {
  int fd;
  do {
    fd = openat(dir, name, flags);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

/* close() without losing the errno being reported. */
static void close_keep_errno(int fd) {
  int err = errno;
  close(fd);
  errno = err;
}

static void set_cur(walk_t* w, int fd) {
  if (w->cur != w->root) close(w->cur);
  w->cur = fd;
}

/* Enters `fd`, a folder named in cur. Takes `fd` (closed on failure). */
static int step_down(walk_t* w, int fd, const struct stat* st) {
  if (w->depth == w->cap) {
    size_t cap = w->cap != 0 ? w->cap * 2 : 16;
    dir_id_t* down = realloc(w->down, cap * sizeof(*down));
    if (down == NULL) {
      close(fd);
      errno = ENOMEM;
      return -1;
    }
    w->down = down;
    w->cap = cap;
  }
  w->down[w->depth].dev = st->st_dev;
  w->down[w->depth].ino = st->st_ino;
  w->depth++;
  set_cur(w, fd);
  return 0;
}

/* `..`: back to the folder we came from, never above root. */
static int step_up(walk_t* w) {
  struct stat st, root_st;
  dev_t dev;
  ino_t ino;
  int fd;

  if (w->depth == 0) {
    errno = EXDEV;
    return -1;
  }
  fd = openat_retry(w->cur, "..", O_PATH | O_DIRECTORY | O_NOFOLLOW |
                                      O_CLOEXEC);
  if (fd < 0) return -1;
  if (fstat(fd, &st) != 0) goto fail;
  if (w->depth >= 2) {
    dev = w->down[w->depth - 2].dev;
    ino = w->down[w->depth - 2].ino;
  } else {
    if (fstat(w->root, &root_st) != 0) goto fail;
    dev = root_st.st_dev;
    ino = root_st.st_ino;
  }
  if (st.st_dev != dev || st.st_ino != ino) {
    errno = EAGAIN;
    goto fail;
  }
  w->depth--;
  set_cur(w, fd);
  return 0;

fail:
  close_keep_errno(fd);
  return -1;
}

/* A symlink living in `dir` may be a magic link (see the top comment). On
 * any doubt (fstatfs failing), it is one. */
static int may_be_magic(int dir) {
  struct statfs sf;
  struct stat st;

  if (fstatfs(dir, &sf) != 0) return 1;
  if ((unsigned long)sf.f_type != PROC_SUPER_MAGIC) return 0;
  return fstat(dir, &st) != 0 || st.st_ino != ZC_PROC_ROOT_INO;
}

/* Replaces the symlink just met by its text: the walk goes on with
 * target + rest from cur. `linkfd` is an O_PATH fd on the link, or -1 to
 * read `name` in cur. */
static int follow(walk_t* w, int linkfd, const char* name, const char* rest,
                  const char** path) {
  char target[PATH_MAX];
  ssize_t len;
  size_t rest_len;
  char* next;

  if (++w->links > ZC_MAXSYMLINKS || may_be_magic(w->cur)) {
    errno = ELOOP;
    return -1;
  }
  len = linkfd >= 0 ? readlinkat(linkfd, "", target, sizeof(target))
                    : readlinkat(w->cur, name, target, sizeof(target));
  if (len < 0) return -1;
  if ((size_t)len >= sizeof(target)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  if (len == 0) {
    errno = ENOENT;
    return -1;
  }
  if (target[0] == '/') {
    errno = EXDEV;
    return -1;
  }
  rest_len = strlen(rest);
  next = malloc((size_t)len + rest_len + 1);
  if (next == NULL) {
    errno = ENOMEM;
    return -1;
  }
  memcpy(next, target, (size_t)len);
  memcpy(next + len, rest, rest_len + 1); /* rest may live in w->owned */
  free(w->owned);
  w->owned = next;
  *path = next;
  return 0;
}

int zc_open_walk(int rootfd, const char* path, int flags) {
  walk_t w = { .root = rootfd, .cur = rootfd };
  char name[NAME_MAX + 1];
  const char* p = path;
  int fd = -1;
  int err;

  if (*p == '\0') {
    errno = ENOENT;
    return -1;
  }
  if (*p == '/') {
    errno = EXDEV;
    return -1;
  }
  for (;;) {
    const char* end;
    size_t len;
    struct stat st;

    while (*p == '/') p++;
    if (*p == '\0') {
      fd = openat_retry(w.cur, ".", flags);
      break;
    }
    end = strchrnul(p, '/');
    len = (size_t)(end - p);
    if (len == 1 && p[0] == '.') {
      p = end;
      continue;
    }
    if (len == 2 && p[0] == '.' && p[1] == '.') {
      if (step_up(&w) != 0) break;
      p = end;
      continue;
    }
    if (len > NAME_MAX) {
      errno = ENAMETOOLONG;
      break;
    }
    memcpy(name, p, len);
    name[len] = '\0';

    if (*end == '\0') {
      /* The last name: O_NOFOLLOW turns a symlink into ELOOP. */
      fd = openat_retry(w.cur, name, flags | O_NOFOLLOW);
      if (fd >= 0 || errno != ELOOP) break;
      if (follow(&w, -1, name, end, &p) != 0) {
        /* EINVAL: no longer a symlink, the name was replaced meanwhile. */
        if (errno == EINVAL) errno = EAGAIN;
        break;
      }
      continue;
    }

    fd = openat_retry(w.cur, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) break;
    if (fstat(fd, &st) != 0) {
      close_keep_errno(fd);
      fd = -1;
      break;
    }
    if (S_ISDIR(st.st_mode)) {
      err = step_down(&w, fd, &st);
      fd = -1;
      if (err != 0) break;
      p = end;
      continue;
    }
    if (S_ISLNK(st.st_mode)) {
      err = follow(&w, fd, name, end, &p);
      close_keep_errno(fd);
      fd = -1;
      if (err != 0) break;
      continue;
    }
    close(fd);
    fd = -1;
    errno = ENOTDIR;
    break;
  }

  err = errno;
  set_cur(&w, w.root);
  free(w.down);
  free(w.owned);
  errno = err;
  return fd;
}
