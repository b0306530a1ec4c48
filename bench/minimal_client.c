/* bench/minimal_client.c — the physical-limit reference for bench/core.
 *
 * The least a vhost-user-blk frontend can do for 4k random reads: one
 * thread, one split ring (no EVENT_IDX, no indirect descriptors), one memfd
 * holding the ring, the request headers and the buffers.  The thread
 * submits and harvests itself, so there is no thread hop anywhere; the
 * only choices are how it waits when the used ring is empty:
 *   --wait eventfd   sleep in poll() on the call eventfd
 *   --wait poll      spin on the used index, with the device asked not to
 *                    signal completions (VRING_AVAIL_F_NO_INTERRUPT), as
 *                    a polling driver does and as vublk does when it polls
 * --notify leaves the device's signals on while polling: it then writes
 * the call eventfd for every completion, which nobody reads.  bench/core
 * runs it beside the reference to show what that signal does to the
 * backend's rate.
 * It deliberately has no reconnect, timeouts per request or error
 * recovery: whatever vublk spends beyond this is the cost of its features
 * and its threads.  Standalone on purpose (no libvublk code), so it
 * measures the bare protocol.
 *
 *   minimal_client [--wait eventfd|poll] [--notify] [--qd D] [--time T]
 *                  SOCKET
 *
 * Prints one line, "key=value" separated by spaces, e.g.
 *   minimal wait=poll qd=32 time=3.00 requests=N iops=N cpu_us_per_req=N errors=0 notify=0
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/virtio_ring.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "bench_clock.h"

enum {                          /* vhost-user requests */
  GET_FEATURES = 1, SET_FEATURES = 2, SET_OWNER = 3, SET_MEM_TABLE = 5,
  SET_VRING_NUM = 8, SET_VRING_ADDR = 9, SET_VRING_BASE = 10,
  GET_VRING_BASE = 11, SET_VRING_KICK = 12, SET_VRING_CALL = 13,
  GET_PROTOCOL_FEATURES = 15, SET_PROTOCOL_FEATURES = 16,
  SET_VRING_ENABLE = 18, GET_CONFIG = 24,
};
#define F_PROTOCOL_FEATURES (1ull << 30)
#define F_VERSION_1 (1ull << 32)
#define PF_REPLY_ACK (1ull << 3)
#define PF_CONFIG (1ull << 9)
#define FLAG_VERSION 0x1u
#define FLAG_REPLY 0x4u
#define FLAG_NEED_REPLY 0x8u

#define RING 256                /* descriptors; 3 per request */
#define MAX_QD 64
#define BS 4096
/* memfd layout: page-aligned parts, all offsets fixed. */
#define OFF_DESC 0
#define OFF_AVAIL 4096
#define OFF_USED 8192
#define OFF_HDR 12288           /* 16-byte headers, then 1-byte statuses */
#define OFF_STATUS (OFF_HDR + 16 * MAX_QD)
#define OFF_BUF 16384
#define MEM_SIZE (OFF_BUF + BS * MAX_QD)

struct blk_hdr { uint32_t type, reserved; uint64_t sector; };

static int sock = -1;
static uint64_t protocol_features;

static void __attribute__((noreturn, format (printf, 1, 2)))
die (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  fputs ("minimal_client: ", stderr);
  vfprintf (stderr, fmt, ap);
  fputc ('\n', stderr);
  va_end (ap);
  exit (1);
}

/* Sends one message (header, payload, up to one fd) in a single sendmsg,
 * as qemu's server only takes fds that arrive with the header. */
static void
send_msg (uint32_t req, uint32_t flags, const void *payload, uint32_t size,
          int fd)
{
  uint32_t hdr[3] = { req, FLAG_VERSION | flags, size };
  struct iovec iov[2] = { { hdr, sizeof hdr }, { (void *) payload, size } };
  char cbuf[CMSG_SPACE (sizeof (int))] = { 0 };
  struct msghdr m = { .msg_iov = iov, .msg_iovlen = size ? 2 : 1 };

  if (fd >= 0) {
    m.msg_control = cbuf;
    m.msg_controllen = sizeof cbuf;
    CMSG_FIRSTHDR (&m)->cmsg_level = SOL_SOCKET;
    CMSG_FIRSTHDR (&m)->cmsg_type = SCM_RIGHTS;
    CMSG_FIRSTHDR (&m)->cmsg_len = CMSG_LEN (sizeof (int));
    memcpy (CMSG_DATA (CMSG_FIRSTHDR (&m)), &fd, sizeof fd);
  }
  if (sendmsg (sock, &m, MSG_NOSIGNAL) != (ssize_t) (sizeof hdr + size))
    die ("sending request %u: %m", req);
}

/* Reads the reply to REQ, which must be exactly SIZE bytes, into OUT.
 * The socket's receive timeout bounds the wait. */
static void
recv_reply (uint32_t req, void *out, uint32_t size)
{
  uint32_t hdr[3];

  if (recv (sock, hdr, sizeof hdr, MSG_WAITALL) != sizeof hdr)
    die ("no reply to request %u: %m", req);
  if (hdr[0] != req || hdr[1] != (FLAG_VERSION | FLAG_REPLY) || hdr[2] != size)
    die ("bad reply to request %u (%u, 0x%x, %u bytes)", req, hdr[0], hdr[1],
         hdr[2]);
  if (recv (sock, out, size, MSG_WAITALL) != (ssize_t) size)
    die ("short reply to request %u: %m", req);
}

static uint64_t
get_u64 (uint32_t req)
{
  uint64_t v;

  send_msg (req, 0, NULL, 0, -1);
  recv_reply (req, &v, sizeof v);
  return v;
}

/* Sends a request that carries no answer; with REPLY_ACK waits for its ack
 * so a refusal surfaces here rather than as a silent hang later. */
static void
set (uint32_t req, const void *payload, uint32_t size, int fd)
{
  uint64_t ack;

  if (!(protocol_features & PF_REPLY_ACK)) {
    send_msg (req, 0, payload, size, fd);
    return;
  }
  send_msg (req, FLAG_NEED_REPLY, payload, size, fd);
  recv_reply (req, &ack, sizeof ack);
  if (ack)
    die ("request %u refused", req);
}

static void
set_u64 (uint32_t req, uint64_t v, int fd)
{
  set (req, &v, sizeof v, fd);
}

static void
set_state (uint32_t req, uint32_t num)
{
  uint32_t state[2] = { 0, num };

  set (req, state, sizeof state, -1);
}

/* Connects with a bounded wait (a full backlog would block connect()
 * forever) and a 5 s bound on every reply. */
static void
connect_socket (const char *path)
{
  struct sockaddr_un a = { .sun_family = AF_UNIX };
  struct timeval tv = { .tv_sec = 5 };
  struct pollfd p;

  if (strlen (path) >= sizeof a.sun_path)
    die ("socket path too long");
  strcpy (a.sun_path, path);
  sock = socket (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (sock < 0)
    die ("socket: %m");
  if (connect (sock, (struct sockaddr *) &a, sizeof a) < 0) {
    int err = 0;
    socklen_t len = sizeof err;

    p = (struct pollfd) { .fd = sock, .events = POLLOUT };
    if (errno != EINPROGRESS && errno != EAGAIN)
      die ("connect %s: %m", path);
    if (poll (&p, 1, 5000) != 1)
      die ("connect %s: timed out", path);
    getsockopt (sock, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err)
      die ("connect %s: %s", path, strerror (err));
  }
  fcntl (sock, F_SETFL, 0);
  setsockopt (sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt (sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* The driver's side of the split ring. */
struct ring {
  struct vring_avail *avail;
  struct vring_used *used;
  struct blk_hdr *hdr;
  uint64_t blocks, rnd;
  uint16_t avail_idx;
  int kickfd;
};

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause ()
#else
#define cpu_relax() __atomic_signal_fence (__ATOMIC_SEQ_CST)
#endif

/* Fills request SLOT's header with a random 4k-aligned read and puts its
 * chain in the avail ring, not yet visible to the device. */
static void
queue_read (struct ring *r, int slot)
{
  r->rnd ^= r->rnd << 13, r->rnd ^= r->rnd >> 7, r->rnd ^= r->rnd << 17;
  r->hdr[slot] = (struct blk_hdr) { 0, 0, r->rnd % r->blocks * (BS / 512) };
  r->avail->ring[r->avail_idx++ % RING] = 3 * slot;
}

/* Makes the queued chains visible and kicks, unless the device said it is
 * already looking (VRING_USED_F_NO_NOTIFY).  The fence orders the avail
 * index store before the flags load. */
static void
publish_and_kick (struct ring *r)
{
  uint64_t one = 1;

  __atomic_store_n (&r->avail->idx, r->avail_idx, __ATOMIC_RELEASE);
  __atomic_thread_fence (__ATOMIC_SEQ_CST);
  if (!(__atomic_load_n (&r->used->flags, __ATOMIC_RELAXED)
        & VRING_USED_F_NO_NOTIFY)
      && write (r->kickfd, &one, sizeof one) < 0 && errno != EAGAIN)
    die ("kick: %m");
}

/* Sleeps until the device signals the call eventfd.  Spurious wakeups are
 * fine; a call that raced the caller's used-ring check is still counted in
 * the eventfd, so poll() returns at once (no lost wakeup). */
static void
wait_call (int callfd)
{
  struct pollfd p = { .fd = callfd, .events = POLLIN };
  uint64_t n;

  if (poll (&p, 1, 5000) != 1)
    die ("no completion within 5 s");
  if (read (callfd, &n, sizeof n) < 0 && errno != EAGAIN)
    die ("read call eventfd: %m");
}

int
main (int argc, char **argv)
{
  const char *path = NULL;
  int busy_poll = 0, notify = 0, qd = 32;
  double seconds = 3;

  for (int i = 1; i < argc; i++) {
    if (!strcmp (argv[i], "--wait") && i + 1 < argc) {
      busy_poll = !strcmp (argv[++i], "poll");
      if (!busy_poll && strcmp (argv[i], "eventfd"))
        die ("--wait is eventfd or poll");
    }
    else if (!strcmp (argv[i], "--qd") && i + 1 < argc)
      qd = atoi (argv[++i]);
    else if (!strcmp (argv[i], "--time") && i + 1 < argc)
      seconds = atof (argv[++i]);
    else if (!strcmp (argv[i], "--notify"))
      notify = 1;
    else if (argv[i][0] != '-' && !path)
      path = argv[i];
    else
      die ("usage: minimal_client [--wait eventfd|poll] [--notify] [--qd D] "
           "[--time T] SOCKET");
  }
  if (!path || qd < 1 || qd > MAX_QD || seconds <= 0)
    die ("need a SOCKET, 1 <= --qd <= %d and a positive --time", MAX_QD);
  if (notify && !busy_poll)
    die ("--notify is for --wait poll (sleeping needs the signals anyway)");

  /* Shared memory: ring, headers, statuses and buffers, nothing else. */
  int memfd = memfd_create ("minimal-client", MFD_CLOEXEC);
  if (memfd < 0 || ftruncate (memfd, MEM_SIZE) < 0)
    die ("memfd: %m");
  uint8_t *mem = mmap (NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
                       memfd, 0);
  if (mem == MAP_FAILED)
    die ("mmap: %m");
  struct vring_desc *desc = (void *) (mem + OFF_DESC);
  struct vring_avail *avail = (void *) (mem + OFF_AVAIL);
  struct vring_used *used = (void *) (mem + OFF_USED);
  struct blk_hdr *hdr = (void *) (mem + OFF_HDR);
  uint8_t *status = mem + OFF_STATUS;

  /* Request i is the fixed chain 3i -> 3i+1 -> 3i+2: header, data, status. */
  for (int i = 0; i < qd; i++) {
    desc[3 * i] = (struct vring_desc) {
      (uintptr_t) &hdr[i], sizeof hdr[i], VRING_DESC_F_NEXT, 3 * i + 1 };
    desc[3 * i + 1] = (struct vring_desc) {
      (uintptr_t) (mem + OFF_BUF + i * BS), BS,
      VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 3 * i + 2 };
    desc[3 * i + 2] = (struct vring_desc) {
      (uintptr_t) &status[i], 1, VRING_DESC_F_WRITE, 0 };
  }

  /* The handshake of ../shared/PROTOCOL.md, trimmed to one ring. */
  connect_socket (path);
  uint64_t features = get_u64 (GET_FEATURES);
  if (!(features & F_VERSION_1))
    die ("backend does not offer VERSION_1");
  if (features & F_PROTOCOL_FEATURES) {
    uint64_t pf = get_u64 (GET_PROTOCOL_FEATURES)
                  & (PF_REPLY_ACK | PF_CONFIG);

    send_msg (SET_PROTOCOL_FEATURES, 0, &pf, sizeof pf, -1);
    protocol_features = pf;
  }
  send_msg (SET_OWNER, 0, NULL, 0, -1);
  if (!(protocol_features & PF_CONFIG))
    die ("backend does not offer the CONFIG protocol feature");
  uint32_t cfg[3 + 15] = { 0, 60, 0 };
  send_msg (GET_CONFIG, 0, cfg, sizeof cfg, -1);
  recv_reply (GET_CONFIG, cfg, sizeof cfg);
  uint64_t capacity;            /* config offset 0, 512-byte sectors */
  memcpy (&capacity, &cfg[3], sizeof capacity);
  uint64_t blocks = capacity / (BS / 512);
  if (!blocks)
    die ("device smaller than 4 KiB");
  set_u64 (SET_FEATURES, F_VERSION_1 | (features & F_PROTOCOL_FEATURES), -1);
  uint64_t region[5] = { 1, (uintptr_t) mem, MEM_SIZE, (uintptr_t) mem, 0 };
  set (SET_MEM_TABLE, region, sizeof region, memfd);
  set_state (SET_VRING_NUM, RING);
  set_state (SET_VRING_BASE, 0);
  uint64_t addr[5] = { 0, (uintptr_t) desc, (uintptr_t) used,
                       (uintptr_t) avail, 0 };   /* index 0, flags 0 */
  set (SET_VRING_ADDR, addr, sizeof addr, -1);
  int callfd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  int kickfd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (callfd < 0 || kickfd < 0)
    die ("eventfd: %m");
  set_u64 (SET_VRING_CALL, 0, callfd);
  set_u64 (SET_VRING_KICK, 0, kickfd);
  if (features & F_PROTOCOL_FEATURES)
    set_state (SET_VRING_ENABLE, 1);
  if (!(protocol_features & PF_REPLY_ACK))
    get_u64 (GET_FEATURES);     /* barrier: everything above was taken */

  /* The run: keep QD requests in flight, resubmitting each as it completes. */
  struct ring r = { .avail = avail, .used = used, .hdr = hdr, .blocks = blocks,
                    .kickfd = kickfd, .rnd = 0x9e3779b97f4a7c15ull };
  uint64_t done = 0, errors = 0;
  uint16_t used_idx = 0;
  int in_flight = qd;
  double cpu0 = bench_cpu_seconds (RUSAGE_SELF);
  uint64_t t0 = bench_now_ns (), end = t0 + (uint64_t) (seconds * 1e9);

  /* Polling, it asks the device not to signal: a signal nobody waits for
   * is a system call in the backend for every completion. */
  if (busy_poll && !notify)
    __atomic_store_n (&avail->flags, VRING_AVAIL_F_NO_INTERRUPT,
                      __ATOMIC_RELAXED);
  for (int i = 0; i < qd; i++)
    queue_read (&r, i);
  publish_and_kick (&r);
  while (in_flight) {
    uint16_t last;

    while ((last = __atomic_load_n (&used->idx, __ATOMIC_ACQUIRE))
           == used_idx) {
      if (busy_poll)
        cpu_relax ();
      else
        wait_call (callfd);
    }
    int more = bench_now_ns () < end;

    for (; used_idx != last; used_idx++) {
      uint32_t id = used->ring[used_idx % RING].id, slot = id / 3;

      if (id % 3 || slot >= (uint32_t) qd)
        die ("device returned descriptor %u, not a request head", id);
      done++;
      errors += status[slot] != 0;
      if (more)
        queue_read (&r, slot);
      else
        in_flight--;
    }
    if (more)
      publish_and_kick (&r);
  }
  double elapsed = (bench_now_ns () - t0) / 1e9;
  double cpu = bench_cpu_seconds (RUSAGE_SELF) - cpu0;

  /* Stop the ring so the backend can serve the next client at once. */
  if (features & F_PROTOCOL_FEATURES)
    set_state (SET_VRING_ENABLE, 0);
  uint32_t base[2] = { 0, 0 };
  send_msg (GET_VRING_BASE, 0, base, sizeof base, -1);
  recv_reply (GET_VRING_BASE, base, sizeof base);
  close (sock);

  printf ("minimal wait=%s qd=%d time=%.2f requests=%" PRIu64
          " iops=%.0f cpu_us_per_req=%.3f errors=%" PRIu64 " notify=%d\n",
          busy_poll ? "poll" : "eventfd", qd, elapsed, done, done / elapsed,
          done ? cpu * 1e6 / done : 0.0, errors, notify);
  return errors ? 1 : 0;
}
