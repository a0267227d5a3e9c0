/*
 * Where the bytes of a TCP connection are: our send queue and, for a peer
 * on this host, the peer's receive queue, both read with NETLINK_SOCK_DIAG
 * (inet_diag, what `ss` shows as Send-Q/Recv-Q) by the connection's
 * addresses. No fd is needed, so this works after Node closed its socket.
 *
 * Why: sendfile(2) queues references to page-cache pages, not copies.
 * Bytes are safe from a writer only once the peer has them: a remote peer
 * once it ACKed them (our send queue is empty), a peer on this host only
 * once it has *read* them (its receive queue still points at our pages).
 */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int diag_fd = -1; /* used by the lease thread only */

static void fill_id(struct inet_diag_sockid* id, const zc_tuple_t* c,
                    int from_peer) {
  const struct sockaddr_storage* src = from_peer ? &c->peer : &c->local;
  const struct sockaddr_storage* dst = from_peer ? &c->local : &c->peer;

  memset(id, 0, sizeof(*id));
  if (c->local.ss_family == AF_INET) {
    const struct sockaddr_in* s = (const struct sockaddr_in*)src;
    const struct sockaddr_in* d = (const struct sockaddr_in*)dst;
    id->idiag_sport = s->sin_port;
    id->idiag_dport = d->sin_port;
    memcpy(id->idiag_src, &s->sin_addr, 4);
    memcpy(id->idiag_dst, &d->sin_addr, 4);
  } else {
    const struct sockaddr_in6* s = (const struct sockaddr_in6*)src;
    const struct sockaddr_in6* d = (const struct sockaddr_in6*)dst;
    id->idiag_sport = s->sin6_port;
    id->idiag_dport = d->sin6_port;
    memcpy(id->idiag_src, &s->sin6_addr, 16);
    memcpy(id->idiag_dst, &d->sin6_addr, 16);
  }
  id->idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  id->idiag_cookie[1] = INET_DIAG_NOCOOKIE;
}

/* 1 found (queues filled), 0 no such socket, -errno on failure. */
static int lookup(const zc_tuple_t* c, int from_peer, uint32_t* rqueue,
                  uint32_t* wqueue) {
  struct {
    struct nlmsghdr nlh;
    struct inet_diag_req_v2 req;
  } msg;
  union {
    struct nlmsghdr nlh;
    char buf[1024];
  } reply;
  struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
  ssize_t n;

  if (diag_fd < 0) {
    diag_fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (diag_fd < 0) return -errno;
  }
  memset(&msg, 0, sizeof(msg));
  msg.nlh.nlmsg_len = sizeof(msg);
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST;
  msg.req.sdiag_family = (uint8_t)c->local.ss_family;
  msg.req.sdiag_protocol = IPPROTO_TCP;
  msg.req.idiag_states = ~0U;
  fill_id(&msg.req.id, c, from_peer);

  if (sendto(diag_fd, &msg, sizeof(msg), 0, (struct sockaddr*)&kernel,
             sizeof(kernel)) < 0)
    return -errno;
  do {
    n = recv(diag_fd, &reply, sizeof(reply), 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  if (!NLMSG_OK(&reply.nlh, (size_t)n)) return -EIO;
  if (reply.nlh.nlmsg_type == NLMSG_ERROR) {
    struct nlmsgerr* err = NLMSG_DATA(&reply.nlh);
    return err->error == -ENOENT ? 0 : err->error;
  }
  if (reply.nlh.nlmsg_type != SOCK_DIAG_BY_FAMILY) return -EIO;
  {
    struct inet_diag_msg* d = NLMSG_DATA(&reply.nlh);
    /* Once a connection's socket is gone, the kernel's lookup by address
     * falls back to the listening socket on that port (its "queue" is the
     * backlog): only the exact connection counts. */
    if (d->idiag_state == TCP_LISTEN ||
        d->id.idiag_dport != msg.req.id.idiag_dport ||
        memcmp(d->id.idiag_dst, msg.req.id.idiag_dst,
               sizeof(d->id.idiag_dst)) != 0)
      return 0;
    *rqueue = d->idiag_rqueue;
    *wqueue = d->idiag_wqueue;
  }
  return 1;
}

int zc_diag_peer_is_local(const zc_tuple_t* c) {
  uint32_t rq, wq;
  return lookup(c, 1, &rq, &wq) == 1;
}

int zc_diag_is_safe(const zc_tuple_t* c) {
  uint32_t rq = 0, wq = 0;
  int ours, peer;

  ours = lookup(c, 0, &rq, &wq);
  if (ours < 0) return ours;
  if (ours == 1 && wq > 0) return 0; /* not all handed over / acked yet */
  peer = lookup(c, 1, &rq, &wq);
  if (peer < 0) return peer;
  /* A peer we can see is on this host: safe once it has read everything.
   * One we cannot see is remote (or closed): our empty queue is enough. */
  return peer == 1 ? rq == 0 : 1;
}

int zc_tuple_of(int sock, zc_tuple_t* c) {
  socklen_t len = sizeof(c->local);
  memset(c, 0, sizeof(*c));
  if (getsockname(sock, (struct sockaddr*)&c->local, &len) != 0) return -errno;
  len = sizeof(c->peer);
  if (getpeername(sock, (struct sockaddr*)&c->peer, &len) != 0) return -errno;
  if (c->local.ss_family != AF_INET && c->local.ss_family != AF_INET6)
    return -EAFNOSUPPORT; /* unix sockets: not observable, see README */
  return 0;
}
