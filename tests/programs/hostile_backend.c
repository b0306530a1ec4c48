/* hostile_backend — a small vhost-user-blk backend for the test suite that
 * behaves correctly or injects one fault, to check that libvublk gives a
 * clean error or recovers, never crashes and never hangs.
 *
 *   hostile_backend [--profile spdk] SOCKET SIZE_BYTES FAULT [AFTER]
 *
 * It serves an in-memory disk of SIZE_BYTES (starting zeroed), offering
 * VERSION_1, FLUSH, BLK_SIZE, SEG_MAX, MQ (4 queues), RING_PACKED and the
 * protocol features MQ, REPLY_ACK, CONFIG, BACKEND_REQ; split rings, or
 * packed rings when the client accepts RING_PACKED (no indirect
 * descriptors, no event index in either).  Clients may reconnect: the disk
 * survives.  Data-path faults fire once, on the AFTER-th request (default
 * 20) of the first connection; handshake faults fire on every connection.
 *
 * Packed rings: SET_VRING_BASE's num gives the position to start at (bits
 * 0-14) and the wrap counter of that lap (bit 15), for both the avail and
 * the used side.  A chain is taken when its head is available in the
 * current lap; every later descriptor of it must be too (else "client
 * violation", logged, and the connection dropped).  It is marked used by
 * one used descriptor at the device's used position (buffer id of the
 * chain's last descriptor, AVAIL = USED = used wrap counter), which then
 * moves on by the chain's descriptor count.  Interrupts are sent unless the
 * driver area's flags say DISABLE; while draining, the device area's flags
 * say "don't kick".
 *
 * FAULT is one of:
 *   none                 behave
 *   drop-mid-message     close halfway through the GET_FEATURES reply
 *   drop-mid-request     close the connection with a request in flight
 *   fewer-on-reconnect   as drop-mid-request, and from the second
 *                        connection on offer no VIRTIO_BLK_F_FLUSH and no
 *                        protocol feature CONFIG
 *   block-on-reconnect   as drop-mid-request, and from the second
 *                        connection on say blk_size 4096
 *   block-on-change      from the config change on (SIGUSR1), say
 *                        blk_size 4096, on every connection
 *   mute-after-change    after the config change (SIGUSR1), answer
 *                        nothing for 3 s (the client's GET_CONFIG goes
 *                        unanswered), then drop the connection
 *   ro-on-reconnect      as drop-mid-request, and from the second
 *                        connection on offer VIRTIO_BLK_F_RO and fail
 *                        writes with IOERR (as qemu-storage-daemon
 *                        restarted with writable=off)
 *   rw-on-reconnect      the other way: read-only on the first
 *                        connection only
 *   wrong-request-code   answer GET_FEATURES with another request code
 *   wrong-size           answer GET_FEATURES with a 4-byte payload
 *   wrong-flags          answer GET_FEATURES without the reply flag
 *   too-many-fds         attach 8 fds to the GET_FEATURES reply
 *   refuse-features      offer no VIRTIO_F_VERSION_1
 *   queues-0             config and GET_QUEUE_NUM say 0 queues
 *   queues-65535         config and GET_QUEUE_NUM say 65535 queues
 *   blk-size-3           config blk_size 3
 *   capacity-0           config capacity 0
 *   capacity-huge        config capacity 2^63 sectors (overflows bytes)
 *   bad-id               complete with a used id out of range (>= num)
 *   not-in-flight        complete an id that is not in flight
 *   complete-twice       complete the same request twice
 *   used-len-too-big     report a used length larger than the buffers
 *   runaway-used-idx     move the used index 1000 entries ahead
 *   wrong-wrap           (packed) mark the chain used with the other lap's
 *                        wrap bits, which no driver may take for used
 *   mixed-wrap-bits      (packed) mark the chain with USED = the used wrap
 *                        counter but AVAIL the opposite: not used either
 *   bad-status           complete with status byte 0x77
 *   ioerr-status         complete with VIRTIO_BLK_S_IOERR
 *   stall                never complete the request
 *   stall-forever        never complete any request on any connection
 *   poison               close the connection 200 ms after a request for
 *                        sector AFTER arrives, on every connection (a
 *                        backend that crashes on it and is restarted)
 *   lost-interrupt       (split) from the AFTER-th request on, complete
 *                        requests without signalling the call eventfd
 *   backend-partial      on SIGUSR1, send only 6 of the 12 header bytes of
 *                        the config-change message and keep the channel
 *                        open
 *   front-unasked        on SIGUSR1, send a 12-byte message header on the
 *                        front-end socket, where nothing was asked, instead
 *                        of the config change
 *
 * On packed rings: not-in-flight and complete-twice wait until the chain
 * after the faulty one is available, take it (it is never served) and
 * write the extra used descriptor over it before the real one, so the
 * driver meets both in one pass; runaway-used-idx writes the used
 * descriptor 1000 positions (and the laps they cross) ahead of where it
 * belongs and goes on from there; stall leaves the chain unmarked while
 * later ones are marked at its place (completion out of order).
 *
 *   write-zeroes-unsupp  offer VIRTIO_BLK_F_WRITE_ZEROES (16 MiB, one
 *                        segment, may unmap) and answer every write-zeroes
 *                        request UNSUPP, as any type it does not serve
 *
 *   slow-writes          from the AFTER-th request on, hold the completion
 *                        of every write for HOLD_MS, 1.5 s (the data lands
 *                        at once) while other requests are served, and log
 *                        each flush with the number of writes still held:
 *                        a flush covers only the writes completed before
 *                        it, so a driver that wants one to cover a write
 *                        must wait for that write first
 *
 *   used-len-lies        from the AFTER-th request on, report the used length
 *                        of a write as its data length and of a read as 0
 *                        (as DPDK and SPDK do for writes): harmless, to be
 *                        tolerated without a reconnect
 *
 * --profile spdk behaves like the rte_vhost family (DPDK's vhost_blk
 * example, SPDK's vhost-blk target): it offers only VERSION_1,
 * PROTOCOL_FEATURES, NOTIFY_ON_EMPTY, SIZE_MAX (128 KiB) and SEG_MAX (126)
 * -- no MQ, EVENT_IDX, INDIRECT_DESC, BLK_SIZE, FLUSH, DISCARD or
 * WRITE_ZEROES -- while GET_QUEUE_NUM and the config's num_queues say 128
 * and the config's blk_size says 4096; it serves queue 0 only; it reports
 * the used length of every request as its data length; GET_ID fails with
 * IOERR (as the DPDK example's does).  A request that breaks its rules
 * (header or status not in a descriptor of their own, more than seg_max
 * data segments, a segment above size_max, an indirect descriptor, a
 * FLUSH, a transfer that is not a non-zero multiple of 512) is completed
 * with IOERR and logged as "spdk profile violation".  It offers
 * VIRTIO_F_RING_PACKED, as DPDK does.
 *
 * On SIGUSR1 (any FAULT) it doubles the capacity and sends
 * CONFIG_CHANGE_MSG on the backend channel.  It logs each connection and
 * the firing of the fault on stderr, for the tests to check.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define NQUEUES 4
#define MAX_FDS 8
#define SPDK_SIZE_MAX (128u * 1024)
#define SPDK_SEG_MAX 126u
#define SPDK_QUEUES 128u
#define MAX_CHAIN 130u
#define PACKED_F_AVAIL (1u << 7)
#define PACKED_F_USED (1u << 15)
#define PACKED_EVENT_DISABLE 1


/* A client memory region: map is where its guest address gpa lands;
 * mapping/mapping_len is what mmap returned (map minus mmap_offset). */
struct region {
  uint64_t gpa, size, uva;
  uint8_t *map;
  void *mapping;
  size_t mapping_len;
};

/* A virtqueue.  Packed rings use pdesc (the same memory as desc), avail as
 * the driver event area {off_wrap, flags} and used as the device's. */
struct vq {
  unsigned num;
  struct vring_desc *desc;
  struct packed_desc *pdesc;
  uint16_t *avail;            /* flags, idx, ring[] */
  uint16_t *used;             /* flags, idx, then elems */
  int kick, call;
  uint16_t last_avail;        /* packed: the next position to take */
  bool avail_wrap;            /* packed: lap of last_avail */
  uint16_t next_used;         /* packed: where the next used desc goes */
  bool used_wrap;             /* packed: lap of next_used */
  bool ready;
};

/* One request chain copied out of either ring layout: flags keep NEXT,
 * WRITE and INDIRECT (the same bits in both). */
struct chain {
  struct vring_desc d[MAX_CHAIN];
  unsigned n;
  uint16_t id;                /* split: head index; packed: buffer id */
};

static const char *fault = "none";
static unsigned fault_after = 20;
static bool fault_done;
static unsigned requests;

/* Seconds on the monotonic clock. */
static double
monotonic_seconds (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double poisoned_at;      /* poison: when the request came (0: none) */
static uint8_t *disk;
static uint64_t disk_size;
static struct region regions[8];
static unsigned nregions;
static struct vq vqs[NQUEUES];
static int backend_fd = -1;
static uint64_t features, protocol;
static volatile sig_atomic_t resize_requested;
static bool spdk_profile;

static void on_usr1 (int sig) { (void) sig; resize_requested = 1; }

static bool is (const char *f) { return !strcmp (fault, f); }

static bool
packed_rings (void)
{
  return features & (1ull << VIRTIO_F_RING_PACKED);
}

/* Logs a client that broke the ring protocol; returns false (drop it). */
static bool
client_violation (const char *what, unsigned a, unsigned b)
{
  fprintf (stderr, "hostile_backend: client violation: ");
  fprintf (stderr, what, a, b);
  fputc ('\n', stderr);
  return false;
}

static void *
gpa_to_ptr (uint64_t addr, uint64_t len)
{
  for (unsigned i = 0; i < nregions; i++)
    if (addr >= regions[i].gpa && len <= regions[i].size
        && addr - regions[i].gpa <= regions[i].size - len)
      return regions[i].map + (addr - regions[i].gpa);
  return NULL;
}

static void *
uva_to_ptr (uint64_t addr)
{
  for (unsigned i = 0; i < nregions; i++)
    if (addr >= regions[i].uva && addr - regions[i].uva < regions[i].size)
      return regions[i].map + (addr - regions[i].uva);
  return NULL;
}

/* Receives one message; returns payload size or -1 on EOF/error. */
static int
recv_msg (int sock, struct vhost_user_header *h, uint8_t *payload, int *fds,
          int *nfds)
{
  char cbuf[CMSG_SPACE (MAX_FDS * sizeof (int))];
  struct iovec iov = { h, sizeof *h };
  struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
                      .msg_control = cbuf, .msg_controllen = sizeof cbuf };
  struct cmsghdr *c;

  *nfds = 0;
  if (recvmsg (sock, &m, MSG_CMSG_CLOEXEC) != sizeof *h)
    return -1;
  for (c = CMSG_FIRSTHDR (&m); c; c = CMSG_NXTHDR (&m, c))
    if (c->cmsg_type == SCM_RIGHTS) {
      *nfds = (c->cmsg_len - CMSG_LEN (0)) / sizeof (int);
      memcpy (fds, CMSG_DATA (c), *nfds * sizeof (int));
    }
  if (h->size > VHOST_USER_MAX_PAYLOAD)
    return -1;
  if (h->size && recv (sock, payload, h->size, MSG_WAITALL) != (ssize_t) h->size)
    return -1;
  return h->size;
}

/* Sends a reply, optionally with fds and a deliberately wrong header. */
static void
send_reply (int sock, uint32_t request, const void *payload, uint32_t size,
            const int *fds, int nfds)
{
  struct vhost_user_header h = { request,
                                 VHOST_USER_VERSION | VHOST_USER_REPLY_MASK,
                                 size };
  char cbuf[CMSG_SPACE (MAX_FDS * sizeof (int))];
  struct iovec iov[2] = { { &h, sizeof h }, { (void *) payload, size } };
  struct msghdr m = { .msg_iov = iov, .msg_iovlen = size ? 2 : 1 };

  if (nfds) {
    struct cmsghdr *c;
    m.msg_control = cbuf;
    m.msg_controllen = CMSG_SPACE (nfds * sizeof (int));
    c = CMSG_FIRSTHDR (&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN (nfds * sizeof (int));
    memcpy (CMSG_DATA (c), fds, nfds * sizeof (int));
  }
  if (sendmsg (sock, &m, MSG_NOSIGNAL) < 0) {
    /* the client is gone; the receive loop notices */
  }
}

static void
send_u64 (int sock, uint32_t request, uint64_t v)
{
  send_reply (sock, request, &v, sizeof v, NULL, 0);
}

static uint64_t
capacity_sectors (void)
{
  if (is ("capacity-0"))
    return 0;
  if (is ("capacity-huge"))
    return 1ull << 63;
  return disk_size / 512;
}

static unsigned
queue_count (void)
{
  if (spdk_profile)
    return SPDK_QUEUES;
  return is ("queues-0") ? 0 : is ("queues-65535") ? 65535 : NQUEUES;
}

/* Connections accepted so far (the one being served included). */
static unsigned connections;
/* A config change was announced (SIGUSR1). */
static bool config_changed;

/* True once fewer-on-reconnect offers less (after the first connection). */
static bool
offering_fewer (void)
{
  return is ("fewer-on-reconnect") && connections > 1;
}

/* True while ro-on-reconnect / rw-on-reconnect serve read-only: from
 * the second connection on, or on the first only. */
static bool
serving_readonly (void)
{
  return (is ("ro-on-reconnect") && connections > 1)
         || (is ("rw-on-reconnect") && connections == 1);
}

/* The virtio features offered: ours, or the rte_vhost family's. */
static uint64_t
offered_features (void)
{
  if (spdk_profile)
    return (1ull << VIRTIO_F_VERSION_1) | (1ull << VHOST_USER_F_PROTOCOL_FEATURES)
           | (1ull << VIRTIO_F_NOTIFY_ON_EMPTY)
           | (1ull << VIRTIO_F_RING_PACKED)
           | (1ull << VIRTIO_BLK_F_SIZE_MAX) | (1ull << VIRTIO_BLK_F_SEG_MAX);
  return (1ull << VIRTIO_F_VERSION_1)
         | (offering_fewer () ? 0 : 1ull << VIRTIO_BLK_F_FLUSH)
         | (1ull << VIRTIO_BLK_F_BLK_SIZE) | (1ull << VIRTIO_BLK_F_SEG_MAX)
         | (1ull << VIRTIO_BLK_F_MQ) | (1ull << VIRTIO_F_RING_PACKED)
         | (1ull << VHOST_USER_F_PROTOCOL_FEATURES)
         | (is ("write-zeroes-unsupp") ? 1ull << VIRTIO_BLK_F_WRITE_ZEROES : 0)
         | (serving_readonly () ? 1ull << VIRTIO_BLK_F_RO : 0);
}

static void
fill_config (uint8_t *cfg)
{
  uint64_t cap = capacity_sectors ();
  uint32_t blk = is ("blk-size-3") ? 3 : 512, seg_max = 64, size_max = 0;
  uint16_t nq = queue_count ();

  if ((is ("block-on-reconnect") && connections > 1)
      || (is ("block-on-change") && config_changed))
    blk = 4096;

  if (spdk_profile) {
    /* blk_size without VIRTIO_BLK_F_BLK_SIZE, as DPDK's example: ignored. */
    blk = 4096;
    seg_max = SPDK_SEG_MAX;
    size_max = SPDK_SIZE_MAX;
  }
  memset (cfg, 0, VIRTIO_BLK_CONFIG_SIZE);
  memcpy (cfg + 0, &cap, 8);
  memcpy (cfg + 8, &size_max, 4);
  memcpy (cfg + 12, &seg_max, 4);
  memcpy (cfg + 20, &blk, 4);
  memcpy (cfg + 34, &nq, 2);
  if (is ("write-zeroes-unsupp")) {
    uint32_t max_sectors = 32768, max_seg = 1;

    memcpy (cfg + 48, &max_sectors, 4);
    memcpy (cfg + 52, &max_seg, 4);
    cfg[56] = 1;                /* write_zeroes_may_unmap */
  }
}

static void
unmap_all (void)
{
  for (unsigned i = 0; i < nregions; i++)
    munmap (regions[i].mapping, regions[i].mapping_len);
  nregions = 0;
  for (unsigned q = 0; q < NQUEUES; q++) {
    if (vqs[q].kick >= 0) close (vqs[q].kick);
    if (vqs[q].call >= 0) close (vqs[q].call);
    memset (&vqs[q], 0, sizeof vqs[q]);
    vqs[q].kick = vqs[q].call = -1;
  }
  if (backend_fd >= 0)
    close (backend_fd);
  backend_fd = -1;
  features = 0;
}

static void
add_region (const struct vhost_user_mem_region *r, int fd)
{
  size_t len = r->memory_size + r->mmap_offset;
  uint8_t *map = mmap (NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

  close (fd);
  if (map == MAP_FAILED)
    return;
  if (nregions == 8) {
    munmap (map, len);
    return;
  }
  regions[nregions++] = (struct region) {
    .gpa = r->guest_phys_addr, .size = r->memory_size,
    .uva = r->userspace_addr, .map = map + r->mmap_offset,
    .mapping = map, .mapping_len = len,
  };
}

static void
used_push (struct vq *v, uint32_t id, uint32_t len)
{
  struct vring_used_elem *ring = (void *) (v->used + 2);
  uint16_t idx = __atomic_load_n (&v->used[1], __ATOMIC_RELAXED);

  ring[idx % v->num] = (struct vring_used_elem) { id, len };
  __atomic_store_n (&v->used[1], (uint16_t) (idx + 1), __ATOMIC_RELEASE);
}

static void
notify (struct vq *v)
{
  uint64_t one = 1;

  if (v->call >= 0 && write (v->call, &one, sizeof one) < 0) {
    /* nothing to do */
  }
}

static void
send_config_change (void)
{
  struct vhost_user_header h = { VHOST_USER_BACKEND_CONFIG_CHANGE_MSG,
                                 VHOST_USER_VERSION, 0 };
  uint8_t *bigger = calloc (1, disk_size * 2);

  memcpy (bigger, disk, disk_size);
  free (disk);
  disk = bigger;
  disk_size *= 2;
  if (backend_fd >= 0
      && send (backend_fd, &h, is ("backend-partial") ? 6 : sizeof h,
               MSG_NOSIGNAL) < 0) {
    /* client gone */
  }
}

/* Logs a request that breaks the SPDK profile's rules; returns IOERR, the
 * status such a request gets. */
static uint8_t
spdk_violation (const char *what)
{
  fprintf (stderr, "hostile_backend: spdk profile violation: %s\n", what);
  return VIRTIO_BLK_S_IOERR;
}

/* The SPDK profile's checks of a chain d[0..n): what rte_vhost backends
 * assert or refuse.  Returns the status to report (OK if none broke). */
static uint8_t
spdk_check_chain (const struct vring_desc *d, unsigned n, uint32_t type)
{
  uint64_t data_len = 0;

  for (unsigned k = 0; k < n; k++)
    if (d[k].flags & VRING_DESC_F_INDIRECT)
      return spdk_violation ("indirect descriptor (INDIRECT_DESC not offered)");
  if (d[0].len != 16)
    return spdk_violation ("header not in a 16-byte descriptor of its own");
  if (d[n - 1].len != 1)
    return spdk_violation ("status not in a 1-byte descriptor of its own");
  if (n - 2 > SPDK_SEG_MAX)
    return spdk_violation ("more data segments than seg_max");
  for (unsigned k = 1; k + 1 < n; k++) {
    if (d[k].len > SPDK_SIZE_MAX)
      return spdk_violation ("a data segment above size_max");
    data_len += d[k].len;
  }
  if (type == VIRTIO_BLK_T_FLUSH)
    return spdk_violation ("FLUSH (VIRTIO_BLK_F_FLUSH not offered)");
  if ((type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_OUT)
      && (data_len == 0 || data_len % 512))
    return spdk_violation ("transfer not a non-zero multiple of 512 bytes");
  return VIRTIO_BLK_S_OK;
}

enum outcome { DROP, NO_ANSWER, ANSWER, HOLD };

/* slow-writes: completions held back, marked used once due. */
#define HOLD_MS 1500
#define MAX_HELD 256u
struct held {
  struct vq *v;
  uint16_t id;                /* split: head; packed: buffer id */
  unsigned ndesc;             /* packed: the chain's descriptor count */
  uint32_t written;
  double due;                 /* monotonic seconds */
};
static struct held held[MAX_HELD];
static unsigned nheld;

/* Carries out the request in chain c, whichever ring it came from, and
 * decides whether the fault fires on it (*fire; never when can_fire is
 * false, then a later request gets it).  *written is the used length to
 * report.  Returns DROP to drop the connection, NO_ANSWER to leave the
 * chain unanswered, ANSWER to mark it used, HOLD to mark it used after
 * HOLD_MS (slow-writes). */
static enum outcome
serve_request (const struct chain *c, bool can_fire, bool *fire,
               uint32_t *written)
{
  const struct vring_desc *d = c->d;
  unsigned n = c->n;
  uint8_t *status, *hp;
  struct { uint32_t type, reserved; uint64_t sector; } hdr;
  uint64_t off;
  uint32_t data_len = 0;
  uint8_t st = VIRTIO_BLK_S_OK;
  bool lie_about_len;

  *fire = false;
  *written = 0;
  if (n < 2 || d[0].len < sizeof hdr
      || !(d[n - 1].flags & VRING_DESC_F_WRITE)
      || !(hp = gpa_to_ptr (d[0].addr, sizeof hdr)))
    return DROP;
  memcpy (&hdr, hp, sizeof hdr);
  status = gpa_to_ptr (d[n - 1].addr, 1);
  if (!status)
    return DROP;
  requests++;
  if (is ("slow-writes") && hdr.type == VIRTIO_BLK_T_FLUSH)
    fprintf (stderr, "hostile_backend: flush with %u writes still held\n",
             nheld);
  /* A request the backend dies on, every time it is sent: it goes down
   * a little later, past the client's handshake (serve_connection). */
  if (is ("poison") && hdr.sector == fault_after) {
    fprintf (stderr, "hostile_backend: poison request at sector %u: "
             "dropping the connection in 200 ms\n", fault_after);
    poisoned_at = monotonic_seconds ();
    return NO_ANSWER;
  }
  *fire = !fault_done && requests >= fault_after && can_fire;
  if (*fire && is ("stall-forever"))
    *fire = false;
  if (is ("stall-forever") && requests >= fault_after)
    return NO_ANSWER;
  if (*fire && is ("none"))
    *fire = false;
  /* used-len-lies is a habit, not an accident: it stays on. */
  lie_about_len = is ("used-len-lies") && requests >= fault_after;
  if (*fire) {
    fault_done = true;
    fprintf (stderr, "hostile_backend: fault %s fired on request %u (%s ring)\n",
             fault, requests, packed_rings () ? "packed" : "split");
    if (is ("drop-mid-request") || is ("fewer-on-reconnect")
        || is ("block-on-reconnect") || is ("ro-on-reconnect")
        || is ("rw-on-reconnect"))
      return DROP;
    if (is ("stall"))
      return NO_ANSWER;
  }
  if (spdk_profile && (st = spdk_check_chain (d, n, hdr.type))) {
    *status = st;
    *written = 1;
    *fire = false;
    return ANSWER;
  }
  off = hdr.sector * 512;
  for (unsigned k = 1; k + 1 < n; k++) {
    uint8_t *p = gpa_to_ptr (d[k].addr, d[k].len);

    if (!p)
      return DROP;
    data_len += d[k].len;
    switch (hdr.type) {
    case VIRTIO_BLK_T_IN:
      if (off + d[k].len > disk_size) { st = VIRTIO_BLK_S_IOERR; break; }
      memcpy (p, disk + off, d[k].len);
      *written += d[k].len;
      off += d[k].len;
      break;
    case VIRTIO_BLK_T_OUT:
      if (off + d[k].len > disk_size || serving_readonly ()) {
        st = VIRTIO_BLK_S_IOERR;
        break;
      }
      memcpy (disk + off, p, d[k].len);
      off += d[k].len;
      break;
    case VIRTIO_BLK_T_GET_ID:
      if (spdk_profile) {
        st = VIRTIO_BLK_S_IOERR;
        break;
      }
      memset (p, 0, d[k].len);
      memcpy (p, "hostile", d[k].len < 7 ? d[k].len : 7);
      *written += d[k].len;
      break;
    default:
      break;
    }
  }
  if (hdr.type != VIRTIO_BLK_T_IN && hdr.type != VIRTIO_BLK_T_OUT
      && hdr.type != VIRTIO_BLK_T_FLUSH && hdr.type != VIRTIO_BLK_T_GET_ID)
    st = VIRTIO_BLK_S_UNSUPP;
  if (*fire && is ("bad-status"))
    st = 0x77;
  if (*fire && is ("ioerr-status"))
    st = VIRTIO_BLK_S_IOERR;
  *status = st;
  *written += 1;
  if (*fire && is ("used-len-too-big"))
    *written = data_len + 1000000;
  /* rte_vhost backends report the data length, whatever the direction. */
  if (spdk_profile)
    *written = data_len;
  if (lie_about_len)
    *written = hdr.type == VIRTIO_BLK_T_OUT ? data_len : 0;
  if (is ("slow-writes") && requests >= fault_after
      && hdr.type == VIRTIO_BLK_T_OUT && nheld < MAX_HELD)
    return HOLD;
  return ANSWER;
}

/* Remembers chain c of v, served, to be marked used with written after
 * HOLD_MS. */
static void
hold (struct vq *v, const struct chain *c, uint32_t written)
{
  if (nheld == 0)
    fprintf (stderr, "hostile_backend: holding write completions for "
             "%u ms\n", HOLD_MS);
  held[nheld++] = (struct held) {
    .v = v, .id = c->id, .ndesc = c->n, .written = written,
    .due = monotonic_seconds () + HOLD_MS / 1000.0,
  };
}

/* Split rings ------------------------------------------------------- */

/* Copies the chain starting at head into c.  Returns false if it leaves
 * the table or is too long. */
static bool
split_take (struct vq *v, uint16_t head, struct chain *c)
{
  unsigned i = head;

  c->n = 0;
  c->id = head;
  do {
    if (i >= v->num || c->n == MAX_CHAIN)
      return false;
    c->d[c->n++] = v->desc[i];
    i = v->desc[i].next;
  } while (c->d[c->n - 1].flags & VRING_DESC_F_NEXT);
  return true;
}

/* Serves one split chain and marks it used, with the fault's twist if it
 * fires.  Returns false if the connection should be dropped. */
static bool
split_serve_chain (struct vq *v, uint16_t head)
{
  struct chain c;
  uint32_t written;
  bool fire;

  if (!split_take (v, head, &c))
    return false;
  switch (serve_request (&c, true, &fire, &written)) {
  case DROP: return false;
  case NO_ANSWER: return true;
  case HOLD: hold (v, &c, written); return true;
  case ANSWER: break;
  }
  used_push (v, fire && is ("bad-id") ? v->num + 5 : head, written);
  if (fire && is ("complete-twice"))
    used_push (v, head, written);
  if (fire && is ("not-in-flight"))
    used_push (v, (head + v->num / 2) % v->num, 1);
  if (fire && is ("runaway-used-idx"))
    __atomic_store_n (&v->used[1], (uint16_t) (v->used[1] + 1000),
                      __ATOMIC_RELEASE);
  return true;
}

/* Packed rings ------------------------------------------------------ */

/* Moves position *pos of lap *wrap on by n, flipping the lap at the end. */
static void
packed_advance (const struct vq *v, uint16_t *pos, bool *wrap, unsigned n)
{
  unsigned p = *pos + n;

  while (p >= v->num) {
    p -= v->num;
    *wrap = !*wrap;
  }
  *pos = p;
}

/* True if flags make a descriptor available in lap wrap. */
static bool
packed_is_avail (uint16_t flags, bool wrap)
{
  return !!(flags & PACKED_F_AVAIL) == wrap && !!(flags & PACKED_F_USED) != wrap;
}

/* True if a chain head is available at the take position. */
static bool
packed_has_avail (const struct vq *v)
{
  return packed_is_avail (__atomic_load_n (&v->pdesc[v->last_avail].flags,
                                           __ATOMIC_ACQUIRE), v->avail_wrap);
}

/* Takes the available chain at the take position into c and moves past
 * it.  Returns false (logged) if a later descriptor of it is not
 * available in its lap or the chain is longer than the ring or MAX_CHAIN. */
static bool
packed_take (struct vq *v, struct chain *c)
{
  uint16_t pos = v->last_avail;
  bool wrap = v->avail_wrap;
  uint16_t flags;

  c->n = 0;
  do {
    const struct packed_desc *pd = &v->pdesc[pos];

    if (c->n == MAX_CHAIN || c->n == v->num)
      return client_violation ("packed chain at %u longer than %u descriptors",
                               v->last_avail, c->n);
    flags = __atomic_load_n (&pd->flags, __ATOMIC_ACQUIRE);
    if (!packed_is_avail (flags, wrap))
      return client_violation ("descriptor at %u of a packed chain is not "
                               "available in its lap (flags 0x%x)", pos, flags);
    c->d[c->n++] = (struct vring_desc) {
      .addr = pd->addr, .len = pd->len,
      .flags = flags & (VRING_DESC_F_NEXT | VRING_DESC_F_WRITE
                        | VRING_DESC_F_INDIRECT),
    };
    c->id = pd->id;             /* the buffer id is the last one's */
    packed_advance (v, &pos, &wrap, 1);
  } while (flags & VRING_DESC_F_NEXT);
  v->last_avail = pos;
  v->avail_wrap = wrap;
  return true;
}

/* Writes a used descriptor at pos with the AVAIL and USED bits of lap
 * wrap (AVAIL flipped if mixed); the flags last, so the rest is visible
 * first. */
static void
packed_write_used_bits (struct vq *v, uint16_t pos, bool wrap, bool mixed,
                        uint16_t id, uint32_t len)
{
  struct packed_desc *pd = &v->pdesc[pos];

  pd->id = id;
  pd->len = len;
  __atomic_store_n (&pd->flags, (wrap != mixed ? PACKED_F_AVAIL : 0)
                    | (wrap ? PACKED_F_USED : 0), __ATOMIC_RELEASE);
}

static void
packed_write_used (struct vq *v, uint16_t pos, bool wrap, uint16_t id,
                   uint32_t len)
{
  packed_write_used_bits (v, pos, wrap, false, id, len);
}

/* Faults that need the chain after the faulty one taken already. */
static bool
fault_needs_next (void)
{
  return is ("complete-twice") || is ("not-in-flight");
}

/* How long a fault that needs the next chain waits for the driver to make
 * it available: well under the tests' 1 s request timeout. */
#define NEXT_CHAIN_WAIT_MS 300

/* True if the fault may fire on the chain just taken from v: always,
 * unless it needs the next chain.  Then, once the fault is due, waits up
 * to NEXT_CHAIN_WAIT_MS for the driver to make that chain available --
 * a busy machine can leave the driver behind the backend on every
 * request, so never waiting could let the fault miss a whole run. */
static bool
packed_fault_can_fire (const struct vq *v)
{
  if (!fault_needs_next () || packed_has_avail (v))
    return true;
  if (fault_done || requests + 1 < fault_after)
    return false;
  struct timespec start, now;

  clock_gettime (CLOCK_MONOTONIC, &start);
  do {
    usleep (1000);
    if (packed_has_avail (v))
      return true;
    clock_gettime (CLOCK_MONOTONIC, &now);
  } while ((now.tv_sec - start.tv_sec) * 1000
           + (now.tv_nsec - start.tv_nsec) / 1000000 < NEXT_CHAIN_WAIT_MS);
  fprintf (stderr, "hostile_backend: request %u: the next chain did not "
           "arrive within %u ms; the fault waits for a later one\n",
           requests + 1, NEXT_CHAIN_WAIT_MS);
  return false;
}

/* Takes, serves and marks used one packed chain, with the fault's twist
 * if it fires.  Returns false if the connection should be dropped. */
static bool
packed_serve_chain (struct vq *v)
{
  struct chain c, next;
  uint16_t pos = v->next_used, extra_pos;
  bool wrap = v->used_wrap, extra_wrap, fire;
  uint32_t written;

  if (!packed_take (v, &c))
    return false;
  switch (serve_request (&c, packed_fault_can_fire (v), &fire, &written)) {
  case DROP: return false;
  case NO_ANSWER: return true;
  case HOLD: hold (v, &c, written); return true;
  case ANSWER: break;
  }
  if (fire)
    fprintf (stderr, "hostile_backend: the fault's chain is marked at used "
             "position %u, wrap counter %d\n", pos, wrap);
  if (fire && fault_needs_next ()) {
    /* The next chain is read (so its place is free for a used
     * descriptor) but never served; the extra used descriptor goes where
     * the driver looks right after this chain's, and is written first. */
    if (!packed_take (v, &next))
      return false;
    extra_pos = pos;
    extra_wrap = wrap;
    packed_advance (v, &extra_pos, &extra_wrap, c.n);
    packed_write_used (v, extra_pos, extra_wrap,
                       is ("complete-twice") ? c.id
                       : (uint16_t) ((c.id + v->num / 2) % v->num),
                       written);
    packed_write_used (v, pos, wrap, c.id, written);
    packed_advance (v, &extra_pos, &extra_wrap, 1);
    v->next_used = extra_pos;
    v->used_wrap = extra_wrap;
    return true;
  }
  if (fire && is ("runaway-used-idx"))
    packed_advance (v, &pos, &wrap, 1000);
  packed_write_used_bits (v, pos, fire && is ("wrong-wrap") ? !wrap : wrap,
                          fire && is ("mixed-wrap-bits"),
                          fire && is ("bad-id") ? v->num + 5 : c.id, written);
  packed_advance (v, &pos, &wrap, c.n);
  v->next_used = pos;
  v->used_wrap = wrap;
  return true;
}

/* True if the driver wants interrupts (its event area's flags are not
 * DISABLE), read after the used descriptors written (full barrier). */
static bool
packed_wants_interrupt (const struct vq *v)
{
  __atomic_thread_fence (__ATOMIC_SEQ_CST);
  return __atomic_load_n (&v->avail[1], __ATOMIC_RELAXED)
         != PACKED_EVENT_DISABLE;
}

/* Either layout ----------------------------------------------------- */

/* True if the queue has a request the device has not taken. */
static bool
has_avail (const struct vq *v)
{
  if (!v->ready)
    return false;
  if (packed_rings ())
    return packed_has_avail (v);
  return v->last_avail != __atomic_load_n (&v->avail[1], __ATOMIC_ACQUIRE);
}

/* Drains a packed ring: "don't kick" while draining, then kicks allowed
 * again and the ring re-checked (a chain published in between was not
 * kicked for). */
static bool
drain_packed (struct vq *v, bool *any)
{
  for (;;) {
    __atomic_store_n (&v->used[1], PACKED_EVENT_DISABLE, __ATOMIC_RELAXED);
    while (packed_has_avail (v)) {
      if (!packed_serve_chain (v))
        return false;
      *any = true;
    }
    __atomic_store_n (&v->used[1], 0, __ATOMIC_RELAXED);
    __atomic_thread_fence (__ATOMIC_SEQ_CST);
    if (!packed_has_avail (v))
      return true;
  }
}

/* Drains a queue's avail ring.  Returns false to drop the connection. */
static bool
serve_queue (struct vq *v)
{
  uint64_t cnt;
  bool any = false;

  if (read (v->kick, &cnt, sizeof cnt) < 0 && errno != EAGAIN)
    return false;
  if (!v->ready)
    return true;
  if (packed_rings ()) {
    if (!drain_packed (v, &any))
      return false;
    if (any && packed_wants_interrupt (v))
      notify (v);
    return true;
  }
  while (has_avail (v)) {
    uint16_t head = v->avail[2 + v->last_avail % v->num];

    v->last_avail++;
    if (!split_serve_chain (v, head))
      return false;
    any = true;
  }
  if (any && !(is ("lost-interrupt") && requests >= fault_after))
    notify (v);
  return true;
}

/* Handles one control message.  Returns false to drop the connection. */
static bool
handle_message (int sock)
{
  struct vhost_user_header h;
  uint8_t p[VHOST_USER_MAX_PAYLOAD];
  int fds[MAX_FDS], nfds;
  uint64_t u;

  if (recv_msg (sock, &h, p, fds, &nfds) < 0)
    return false;
  switch (h.request) {
  case VHOST_USER_GET_FEATURES:
    u = offered_features ();
    if (is ("refuse-features"))
      u &= ~(1ull << VIRTIO_F_VERSION_1);
    if (is ("drop-mid-message")) {
      struct vhost_user_header r = { h.request, VHOST_USER_VERSION
                                     | VHOST_USER_REPLY_MASK, 8 };
      if (send (sock, &r, sizeof r, MSG_NOSIGNAL) < 0 || send (sock, &u, 3, MSG_NOSIGNAL) < 0) {
        /* gone */
      }
      return false;
    }
    if (is ("wrong-request-code")) {
      send_reply (sock, VHOST_USER_GET_QUEUE_NUM, &u, 8, NULL, 0);
      break;
    }
    if (is ("wrong-size")) {
      send_reply (sock, h.request, &u, 4, NULL, 0);
      break;
    }
    if (is ("wrong-flags")) {
      struct vhost_user_header r = { h.request, VHOST_USER_VERSION, 8 };
      if (send (sock, &r, sizeof r, MSG_NOSIGNAL | MSG_MORE) < 0
          || send (sock, &u, 8, MSG_NOSIGNAL) < 0) {
        /* gone */
      }
      break;
    }
    if (is ("too-many-fds")) {
      int extra[MAX_FDS];
      for (int k = 0; k < MAX_FDS; k++)
        extra[k] = eventfd (0, EFD_CLOEXEC);
      send_reply (sock, h.request, &u, 8, extra, MAX_FDS);
      for (int k = 0; k < MAX_FDS; k++)
        close (extra[k]);
      break;
    }
    send_u64 (sock, h.request, u);
    break;
  case VHOST_USER_SET_FEATURES:
    memcpy (&features, p, 8);
    break;
  case VHOST_USER_GET_PROTOCOL_FEATURES:
    send_u64 (sock, h.request, (1ull << VHOST_USER_PROTOCOL_F_MQ)
              | (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK)
              | (offering_fewer () ? 0 : 1ull << VHOST_USER_PROTOCOL_F_CONFIG)
              | (1ull << VHOST_USER_PROTOCOL_F_BACKEND_REQ));
    break;
  case VHOST_USER_SET_PROTOCOL_FEATURES:
    memcpy (&protocol, p, 8);
    break;
  case VHOST_USER_GET_QUEUE_NUM:
    send_u64 (sock, h.request, queue_count ());
    break;
  case VHOST_USER_GET_CONFIG: {
    struct vhost_user_config c;
    memcpy (&c, p, h.size < sizeof c ? h.size : sizeof c);
    fill_config (c.data);
    if (c.size > VIRTIO_BLK_CONFIG_SIZE)
      c.size = VIRTIO_BLK_CONFIG_SIZE;
    send_reply (sock, h.request, &c, 12 + c.size, NULL, 0);
    break;
  }
  case VHOST_USER_SET_BACKEND_REQ_FD:
    if (nfds)
      backend_fd = fds[0];
    nfds = 0;
    break;
  case VHOST_USER_SET_MEM_TABLE: {
    struct vhost_user_memory *mem = (void *) p;
    for (unsigned k = 0; k < mem->nregions && k < (unsigned) nfds; k++)
      add_region (&mem->regions[k], fds[k]);
    nfds = 0;
    break;
  }
  case VHOST_USER_SET_VRING_NUM: {
    struct vhost_user_vring_state *s = (void *) p;
    if (s->index < NQUEUES)
      vqs[s->index].num = s->num;
    break;
  }
  case VHOST_USER_SET_VRING_ADDR: {
    struct vhost_user_vring_addr *a = (void *) p;
    if (a->index < NQUEUES) {
      vqs[a->index].desc = uva_to_ptr (a->desc);
      vqs[a->index].pdesc = (struct packed_desc *) vqs[a->index].desc;
      vqs[a->index].avail = uva_to_ptr (a->avail);
      vqs[a->index].used = uva_to_ptr (a->used);
    }
    break;
  }
  case VHOST_USER_SET_VRING_BASE: {
    struct vhost_user_vring_state *s = (void *) p;
    if (s->index >= NQUEUES)
      break;
    if (!packed_rings ()) {
      vqs[s->index].last_avail = s->num;
      break;
    }
    /* Packed: bits 0-14 the position, bit 15 its lap, for both sides. */
    if ((s->num & 0x7fff) >= vqs[s->index].num)
      return client_violation ("SET_VRING_BASE %u for a ring of %u",
                               s->num, vqs[s->index].num);
    vqs[s->index].last_avail = vqs[s->index].next_used = s->num & 0x7fff;
    vqs[s->index].avail_wrap = vqs[s->index].used_wrap = s->num >> 15 & 1;
    break;
  }
  case VHOST_USER_GET_VRING_BASE: {
    struct vhost_user_vring_state s;
    memcpy (&s, p, sizeof s);
    if (s.index < NQUEUES) {
      vqs[s.index].ready = false;
      s.num = vqs[s.index].last_avail;
      if (packed_rings ())
        s.num |= (unsigned) vqs[s.index].avail_wrap << 15;
    }
    send_reply (sock, h.request, &s, sizeof s, NULL, 0);
    break;
  }
  case VHOST_USER_SET_VRING_KICK:
  case VHOST_USER_SET_VRING_CALL:
  case VHOST_USER_SET_VRING_ERR: {
    uint64_t idx;
    memcpy (&idx, p, 8);
    unsigned q = idx & 0xff;
    int fd = (idx & VHOST_USER_VRING_NOFD_MASK) || !nfds ? -1 : fds[0];
    nfds = 0;
    if (q >= NQUEUES || h.request == VHOST_USER_SET_VRING_ERR) {
      if (fd >= 0) close (fd);
      break;
    }
    int *slot = h.request == VHOST_USER_SET_VRING_KICK ? &vqs[q].kick
                : &vqs[q].call;
    if (*slot >= 0) close (*slot);
    *slot = fd;
    if (h.request == VHOST_USER_SET_VRING_KICK)
      vqs[q].ready = vqs[q].desc && vqs[q].avail && vqs[q].used;
    break;
  }
  default:
    break;
  }
  for (int k = 0; k < nfds; k++)
    close (fds[k]);
  if ((h.flags & VHOST_USER_NEED_REPLY_MASK)
      && h.request != VHOST_USER_GET_FEATURES
      && h.request != VHOST_USER_GET_PROTOCOL_FEATURES
      && h.request != VHOST_USER_GET_QUEUE_NUM
      && h.request != VHOST_USER_GET_CONFIG
      && h.request != VHOST_USER_GET_VRING_BASE)
    send_u64 (sock, h.request, 0);
  return true;
}

/* Queues whose requests are served: DPDK's example polls queue 0 only,
 * whatever the client set up. */
static unsigned
served_queues (void)
{
  return spdk_profile ? 1 : NQUEUES;
}

/* Marks used, in the order held, every held completion that is due, and
 * signals their queues.  Returns the milliseconds until the next one is
 * due, at most max_ms. */
static int
release_held (int max_ms)
{
  double now = monotonic_seconds ();
  unsigned kept = 0;
  int wait_ms = max_ms;

  for (unsigned k = 0; k < nheld; k++) {
    struct held *h = &held[k];

    if (h->due > now) {
      int ms = (int) ((h->due - now) * 1000) + 1;

      if (ms < wait_ms)
        wait_ms = ms;
      held[kept++] = *h;
      continue;
    }
    if (packed_rings ()) {
      packed_write_used (h->v, h->v->next_used, h->v->used_wrap, h->id,
                         h->written);
      packed_advance (h->v, &h->v->next_used, &h->v->used_wrap, h->ndesc);
      if (packed_wants_interrupt (h->v))
        notify (h->v);
    }
    else {
      used_push (h->v, h->id, h->written);
      notify (h->v);
    }
  }
  nheld = kept;
  return wait_ms;
}

static void
serve_connection (int sock)
{
  nheld = 0;                  /* the last connection's are lost */
  for (;;) {
    struct pollfd pfd[1 + NQUEUES];
    int n = 1;

    pfd[0] = (struct pollfd) { .fd = sock, .events = POLLIN };
    for (unsigned q = 0; q < served_queues (); q++)
      if (vqs[q].kick >= 0 && vqs[q].ready)
        pfd[n++] = (struct pollfd) { .fd = vqs[q].kick, .events = POLLIN };
    if (poll (pfd, n, release_held (50)) < 0 && errno != EINTR)
      return;
    release_held (0);
    if (poisoned_at && monotonic_seconds () - poisoned_at > 0.2) {
      poisoned_at = 0;
      return;
    }
    /* Only once the client is past its handshake: a signal that came
     * earlier waits for it (the tests send it after a fixed pause). */
    if (resize_requested && vqs[0].ready) {
      resize_requested = 0;
      if (is ("front-unasked")) {
        /* Nothing else: a config change would make the client ask, and
         * these bytes could then pass for its answer. */
        struct vhost_user_header h = { VHOST_USER_GET_FEATURES,
                                       VHOST_USER_VERSION, 0 };
        if (send (sock, &h, sizeof h, MSG_NOSIGNAL) < 0) {
          /* client gone */
        }
        continue;
      }
      config_changed = true;
      send_config_change ();
      fprintf (stderr, "hostile_backend: capacity now %llu bytes\n",
               (unsigned long long) disk_size);
      if (is ("mute-after-change")) {
        fprintf (stderr, "hostile_backend: silent for 3 s\n");
        sleep (3);
        return;               /* and this connection is done */
      }
      continue;
    }
    if (pfd[0].revents && !handle_message (sock))
      return;
    for (int k = 1; k < n; k++)
      if (pfd[k].revents)
        for (unsigned q = 0; q < served_queues (); q++)
          if (vqs[q].kick == pfd[k].fd && !serve_queue (&vqs[q]))
            return;
    /* A client may fill the ring before its kick fd is polled. */
    for (unsigned q = 0; q < served_queues (); q++)
      if (vqs[q].kick >= 0 && has_avail (&vqs[q]) && !serve_queue (&vqs[q]))
        return;
  }
}

int
main (int argc, char **argv)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  int lsock;

  if (argc > 2 && !strcmp (argv[1], "--profile")) {
    if (strcmp (argv[2], "spdk")) {
      fprintf (stderr, "hostile_backend: unknown profile %s\n", argv[2]);
      return 2;
    }
    spdk_profile = true;
    argv += 2;
    argc -= 2;
  }
  if (argc < 4 || argc > 5) {
    fprintf (stderr, "usage: hostile_backend [--profile spdk] SOCKET SIZE "
             "FAULT [AFTER]\n");
    return 2;
  }
  disk_size = strtoull (argv[2], NULL, 0);
  fault = argv[3];
  if (argc == 5)
    fault_after = strtoul (argv[4], NULL, 0);
  if (!(disk = calloc (1, disk_size)))
    return 1;
  for (unsigned q = 0; q < NQUEUES; q++)
    vqs[q].kick = vqs[q].call = -1;
  sigaction (SIGUSR1, &(struct sigaction) { .sa_handler = on_usr1 }, NULL);
  setvbuf (stderr, NULL, _IOLBF, 0);
  snprintf (sa.sun_path, sizeof sa.sun_path, "%s", argv[1]);
  unlink (argv[1]);
  lsock = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (bind (lsock, (struct sockaddr *) &sa, sizeof sa) || listen (lsock, 1)) {
    perror ("hostile_backend: bind");
    return 1;
  }
  for (;;) {
    int sock = accept4 (lsock, NULL, NULL, SOCK_CLOEXEC);

    if (sock < 0)
      continue;
    fprintf (stderr, "hostile_backend: connection %u\n", ++connections);
    serve_connection (sock);
    close (sock);
    unmap_all ();
  }
}
