/*
 * Opening a file beneath a root folder without openat2(2), for kernels
 * before 5.6 and sandboxes that block it (qemu-user, gVisor, seccomp).
 */
#ifndef ZC_OPEN_WALK_H
#define ZC_OPEN_WALK_H

/* Opens `path` beneath the directory `rootfd` with `flags` (which must hold
 * O_CLOEXEC), refusing what openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)
 * refuses, with the same errno. Returns the fd, or -1 with errno set.
 * `rootfd` is only read, never closed. */
int zc_open_walk(int rootfd, const char* path, int flags);

#endif
