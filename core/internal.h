/* internal.h — libvublk's cross-file internals, grouped by the file that
 * defines them (libnbd style).  Nothing here is exported.
 *
 * Layers, bottom up:
 *   message.c    vhost-user framing: one sendmsg per message, checked replies
 *   handshake.c  features, config, memory table, ring setup (replayed on
 *                every reconnect)
 *   memory.c     the memfd region shared with the backend and its I/O pool
 *   split_ring.c split virtqueue arithmetic and publishing, EVENT_IDX
 *   blk_config.c virtio-blk config space parsing and bounding
 *   plan.c       splitting a byte range into virtio-blk requests, RMW edges
 *   queue.c      one virtqueue: slots, submission, completion thread
 *   request.c    a caller's request: chunks, bounce, RMW phases, range lock
 *   device.c     open/close, control thread, reconnect, config change
 *   aio.c / sync.c  the public asynchronous and synchronous API
 */
#ifndef VUBLK_INTERNAL_H
#define VUBLK_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vublk.h"

#define VUBLK_VERSION_STRING "0.1.0"

#define SECTOR_SIZE 512u
#define MAX_QUEUES 64u
#define MAX_QUEUE_SIZE 1024u
#define DEFAULT_QUEUE_SIZE 256u
#define DEFAULT_POOL_SIZE (64u << 20)
#define MAX_SPIN_US 10000u
#define MAX_TRANSFER_DEFAULT (1u << 20)
#define MAX_FDS_PER_MSG 8

#define unlikely(x) __builtin_expect (!!(x), 0)
#define likely(x) __builtin_expect (!!(x), 1)
#define ARRAY_SIZE(a) (sizeof (a) / sizeof ((a)[0]))

/* clock.c */

/* Monotonic clock in nanoseconds. */
uint64_t now_ns (void);

/* The same clock at a few milliseconds' resolution, several times cheaper
 * to read: what per-request timeout stamps need. */
uint64_t now_coarse_ns (void);

/* Adds one to an eventfd's counter (a saturated one stays readable). */
void eventfd_signal (int fd);

/* Empties an eventfd's counter, if it has one.  Never blocks on the
 * library's non-blocking eventfds. */
void eventfd_drain (int fd);

/* log.c */

/* Things noted once per device in the log. */
enum device_once {
  ONCE_USED_LEN,            /* a used length that disagrees with the chain */
  ONCE_QUEUE_NUM,           /* num_queues without VIRTIO_BLK_F_MQ */
};

struct vublk;

/* Sends "SOCKET: message" to the caller's log callback if one is set and
 * level is within the chosen level.  Any thread. */
void device_log (struct vublk *dev, int level, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

/* True the first time it is called for what on dev (then false): for
 * quirks worth one log line, not one per request.  Any thread. */
bool device_first_time (struct vublk *dev, enum device_once what);

/* errors.c */
int set_error (int errnum, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));
int set_error_errno (int errnum, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* message.c ----------------------------------------------------------- */

enum vhost_user_request {
  VHOST_USER_GET_FEATURES = 1,
  VHOST_USER_SET_FEATURES = 2,
  VHOST_USER_SET_OWNER = 3,
  VHOST_USER_SET_MEM_TABLE = 5,
  VHOST_USER_SET_VRING_NUM = 8,
  VHOST_USER_SET_VRING_ADDR = 9,
  VHOST_USER_SET_VRING_BASE = 10,
  VHOST_USER_GET_VRING_BASE = 11,
  VHOST_USER_SET_VRING_KICK = 12,
  VHOST_USER_SET_VRING_CALL = 13,
  VHOST_USER_SET_VRING_ERR = 14,
  VHOST_USER_GET_PROTOCOL_FEATURES = 15,
  VHOST_USER_SET_PROTOCOL_FEATURES = 16,
  VHOST_USER_GET_QUEUE_NUM = 17,
  VHOST_USER_SET_VRING_ENABLE = 18,
  VHOST_USER_SET_BACKEND_REQ_FD = 21,
  VHOST_USER_GET_CONFIG = 24,
  VHOST_USER_SET_CONFIG = 25,
  VHOST_USER_GET_MAX_MEM_SLOTS = 36,
  VHOST_USER_ADD_MEM_REG = 37,
  VHOST_USER_REM_MEM_REG = 38,
};

/* Requests the backend sends on the backend (slave) channel. */
enum vhost_user_backend_request {
  VHOST_USER_BACKEND_CONFIG_CHANGE_MSG = 2,
};

#define VHOST_USER_VERSION 0x1u
#define VHOST_USER_VERSION_MASK 0x3u
#define VHOST_USER_REPLY_MASK (1u << 2)
#define VHOST_USER_NEED_REPLY_MASK (1u << 3)
#define VHOST_USER_HDR_SIZE 12u
#define VHOST_USER_MAX_PAYLOAD 4096u
#define VHOST_USER_VRING_NOFD_MASK (1u << 8)
#define VHOST_USER_CONFIG_MAX 256u

struct vhost_user_header {
  uint32_t request;
  uint32_t flags;
  uint32_t size;
} __attribute__ ((packed));

struct vhost_user_vring_state {
  uint32_t index;
  uint32_t num;
};

struct vhost_user_vring_addr {
  uint32_t index;
  uint32_t flags;
  uint64_t desc;
  uint64_t used;
  uint64_t avail;
  uint64_t log;
};

struct vhost_user_mem_region {
  uint64_t guest_phys_addr;
  uint64_t memory_size;
  uint64_t userspace_addr;
  uint64_t mmap_offset;
};

struct vhost_user_memory {
  uint32_t nregions;
  uint32_t padding;
  struct vhost_user_mem_region regions[8];
};

struct vhost_user_single_mem {
  uint64_t padding;
  struct vhost_user_mem_region region;
};

struct vhost_user_config {
  uint32_t offset;
  uint32_t size;
  uint32_t flags;
  uint8_t data[VHOST_USER_CONFIG_MAX];
};

/* Sends one message (header + payload + fds) in a single sendmsg(), as
 * qemu's server takes fds only with the header.  Returns 0 or -errno. */
int vu_send (int sock, uint32_t request, uint32_t flags,
             const void *payload, uint32_t size, const int *fds, int nfds);

/* Checks a reply header against the request sent: flags exactly
 * VERSION|REPLY, same request code, size == expected_size (or, when
 * expected_size is 0, any size up to max_size).  Returns 0 or -EPROTO
 * with the error set. */
int vu_check_reply_header (const struct vhost_user_header *hdr,
                           uint32_t request, uint32_t expected_size,
                           uint32_t max_size);

/* Receives a reply to `request` within timeout_ms into payload (capacity
 * payload_size), closing any fds the peer attached.  expected_size 0 means
 * "any size up to payload_size"; the actual size is stored in *got.
 * Returns 0 or -errno (-ETIMEDOUT, -ECONNRESET, -EPROTO). */
int vu_recv_reply (int sock, uint32_t request, void *payload,
                   uint32_t expected_size, uint32_t payload_size,
                   uint32_t *got, int timeout_ms);

/* Sends a request that carries no payload expectation and, when
 * need_reply, waits for the u64 ack and checks it is 0.  Returns 0 or
 * -errno. */
int vu_send_checked (int sock, uint32_t request, const void *payload,
                     uint32_t size, const int *fds, int nfds, bool need_reply,
                     int timeout_ms);

/* Sends request (no payload) and receives its u64 reply. */
int vu_get_u64 (int sock, uint32_t request, uint64_t *value, int timeout_ms);

/* Sends request with a u64 payload (and optional ack). */
int vu_set_u64 (int sock, uint32_t request, uint64_t value, bool need_reply,
                int timeout_ms);

/* Makes fd (an eventfd; -1 for none) cancel every wait of the calling
 * thread in this file and in vu_wait once it is readable. */
void vu_set_cancel_fd (int fd);

/* Polls fd for events within *timeout_ms (updated to what is left; -1
 * waits forever), giving up early when the thread's cancel fd fires.
 * Returns 0 when ready, -ETIMEDOUT with no message set (the caller knows
 * what it waited for), -ECANCELED or -errno with the message set naming
 * what. */
int vu_wait (int fd, short events, int *timeout_ms, const char *what);

/* Name of a vhost-user request for messages. */
const char *vu_request_name (uint32_t request);

/* memory.c ------------------------------------------------------------ */

struct pool {
  pthread_mutex_t lock;
  uint8_t *base;            /* first byte of the pool */
  size_t pages;             /* pool size in POOL_PAGE units */
  uint64_t *bitmap;         /* 1 = page in use */
  uint32_t *run_length;     /* pages allocated at a run's first page */
  size_t used_pages;
};

#define POOL_PAGE 4096u
#define HUGE_PAGE (2u << 20)

struct shared_memory {
  int fd;                   /* memfd, -1 when none */
  uint8_t *base;
  size_t size;              /* mapped bytes (2 MiB multiple if hugetlb) */
  bool hugetlb;             /* backed by 2 MiB huge pages */
  char fallback_reason[160]; /* why huge pages were asked for and not
                                used ("" otherwise) */
  struct pool pool;
};

/* Creates and maps a memfd of size bytes whose pool_size bytes from
 * pool_offset form the I/O pool.  With hugetlb it tries 2 MiB huge pages
 * first (size rounded up) and falls back to ordinary memory, recording
 * why in fallback_reason.  Returns 0 or -errno. */
int shared_memory_create (struct shared_memory *mem, size_t size,
                          size_t pool_offset, size_t pool_size,
                          bool hugetlb);

/* Unmaps and closes; accepts a zeroed struct. */
void shared_memory_destroy (struct shared_memory *mem);

/* True if [p, p+len) lies within the pool. */
bool pool_contains (const struct pool *pool, const void *p, size_t len);

/* Allocates len bytes (rounded up to POOL_PAGE) from the pool; NULL if no
 * contiguous run is free.  Thread safe. */
void *pool_alloc (struct pool *pool, size_t len);

/* Frees a block from pool_alloc; NULL is ignored.  Thread safe. */
void pool_free (struct pool *pool, void *p);

/* split_ring.c -------------------------------------------------------- */

#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define VRING_DESC_F_INDIRECT 4
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_USED_F_NO_NOTIFY 1

struct vring_desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};

struct vring_used_elem {
  uint32_t id;
  uint32_t len;
};

struct split_ring {
  uint16_t num;              /* entries, a power of two */
  struct vring_desc *desc;
  uint16_t *avail;           /* flags, idx, ring[num], used_event */
  uint8_t *used;             /* flags, idx, ring[num] elems, avail_event */
  uint16_t avail_idx;        /* our next avail index (shadow) */
  uint16_t kicked_idx;       /* avail idx at the last notification */
  uint16_t last_used_idx;    /* next used entry to harvest */
  bool event_idx;
};

/* Bytes needed for a ring of num entries: desc, avail, used areas, each
 * starting at the offsets written to *avail_off and *used_off. */
size_t split_ring_size (unsigned num, size_t *avail_off, size_t *used_off);

/* Lays a zeroed ring of num entries over mem (split_ring_size bytes). */
void split_ring_init (struct split_ring *ring, void *mem, unsigned num,
                      bool event_idx);

/* Puts head on the avail ring without publishing it. */
void split_ring_push_avail (struct split_ring *ring, uint16_t head);

/* Publishes pushed entries and reports whether the device must be
 * notified (EVENT_IDX or the NO_NOTIFY flag). */
bool split_ring_publish (struct split_ring *ring);

/* virtio's vring_need_event: notify iff event_idx lies in (old, new]. */
static inline bool
vring_need_event (uint16_t event_idx, uint16_t new_idx, uint16_t old_idx)
{
  return (uint16_t) (new_idx - event_idx - 1) < (uint16_t) (new_idx - old_idx);
}

/* Copies up to max used entries into out, advancing last_used_idx.
 * Returns the count, or -EPROTO if the device's used idx claims more
 * entries than the ring holds. */
int split_ring_harvest (struct split_ring *ring, struct vring_used_elem *out,
                        unsigned max);

/* Asks for an interrupt at the next used entry and re-checks the ring
 * after a full barrier.  Returns true if entries are already pending (do
 * not sleep). */
bool split_ring_arm (struct split_ring *ring);

/* Asks the device not to interrupt (while polling). */
void split_ring_disarm (struct split_ring *ring);

/* True if the used ring has entries we have not harvested. */
bool split_ring_has_used (const struct split_ring *ring);

/* packed_ring.c ------------------------------------------------------- */

struct packed_desc {
  uint64_t addr;
  uint32_t len;
  uint16_t id;
  uint16_t flags;
};

/* The wrap counter both sides start with (see packed_ring.c). */
#define PACKED_START_WRAP false

struct packed_ring {
  uint16_t num;
  struct packed_desc *desc;
  uint16_t *driver_event;    /* {off_wrap, flags}: the device reads it */
  uint16_t *device_event;    /* {off_wrap, flags}: we read it */
  uint16_t next_avail;       /* where the next chain goes */
  bool avail_wrap;
  uint16_t next_used;        /* where the next used descriptor appears
                                (atomic: read as a hint without the lock) */
  bool used_wrap;
  unsigned placed;           /* chains placed since the last publish */
  unsigned outstanding;      /* descriptors placed and not yet harvested
                                (atomic: read as a hint) */
  uint8_t ndesc[1024];       /* chain length per buffer id in flight */
};

/* Bytes for a packed ring of num entries; *driver_off and *device_off get
 * the offsets of the two event suppression areas. */
size_t packed_ring_size (unsigned num, size_t *driver_off,
                         size_t *device_off);

/* Lays a zeroed ring of num (<= 1024) entries over mem. */
void packed_ring_init (struct packed_ring *ring, void *mem, unsigned num);

/* Makes the chain of n descriptors available with buffer id id (< num);
 * the head is written last.  The caller guarantees n free positions. */
void packed_ring_place (struct packed_ring *ring, uint16_t id,
                        const struct vring_desc *chain, unsigned n);

/* Reports whether chains were placed since the last call and the device
 * wants notifications. */
bool packed_ring_publish (struct packed_ring *ring);

/* Copies up to max used entries (id, len) into out.  Returns the count,
 * or -EPROTO at a used id with no chain in flight (the *good entries
 * before it are valid and consumed). */
int packed_ring_harvest (struct packed_ring *ring, struct vring_used_elem *out,
                         unsigned max, unsigned *good);

/* Notification control and the lock-free "anything used?" hint, as for
 * split rings. */
bool packed_ring_has_used (const struct packed_ring *ring);
bool packed_ring_arm (struct packed_ring *ring);
void packed_ring_disarm (struct packed_ring *ring);

/* ring.c -------------------------------------------------------------- */

/* A virtqueue of either layout, addressed by slot. */
struct vq_ring {
  bool packed;
  bool indirect;             /* split with INDIRECT_DESC */
  bool event_idx;            /* split with EVENT_IDX */
  unsigned num;
  void *mem;                 /* ring_bytes(num) of shared memory */
  struct split_ring s;
  struct packed_ring p;
};

/* Shared memory a ring of num entries needs, whatever its layout. */
size_t ring_bytes (unsigned num);

/* Lays out a fresh ring over mem.  Indirect descriptors and EVENT_IDX
 * apply to split rings only. */
void ring_init (struct vq_ring *r, void *mem, unsigned num, bool packed,
                bool indirect, bool event_idx);

/* Zeroes the ring and its indexes (a replay starts from scratch). */
void ring_reset (struct vq_ring *r);

/* How many requests (slots) can be in flight at once. */
unsigned ring_slots (const struct vq_ring *r);

/* The three addresses for SET_VRING_ADDR (descriptors, driver area =
 * avail, device area = used) and the num of SET_VRING_BASE. */
void ring_addresses (const struct vq_ring *r, uint64_t *desc,
                     uint64_t *driver, uint64_t *device);
uint32_t ring_base (const struct vq_ring *r);

/* Puts slot's chain of n (<= 3) descriptors on the ring, through the
 * slot's indirect table (at indirect_addr as the device sees it) when the
 * ring uses them.  Not published yet for split rings. */
void ring_place (struct vq_ring *r, unsigned slot,
                 const struct vring_desc *chain, unsigned n,
                 struct vring_desc *indirect, uint64_t indirect_addr);

/* Publishes what was placed; true if the device must be kicked. */
bool ring_publish (struct vq_ring *r);

/* Publishes without asking (after a replay the caller kicks anyway). */
void ring_publish_silently (struct vq_ring *r);

/* Takes up to max used entries, ids translated to slot indexes (not yet
 * checked against the slots in flight).  Sets *violation, with the error
 * recorded, when the ring itself is broken (runaway index, an id that is
 * no chain head); the entries returned before it are good. */
int ring_harvest (struct vq_ring *r, struct vring_used_elem *out,
                  unsigned max, bool *violation);

/* True if a packed ring is in another lap than rings start in. */
bool ring_lap_moved (const struct vq_ring *r);

bool ring_has_used (const struct vq_ring *r);
bool ring_arm (struct vq_ring *r);
void ring_disarm (struct vq_ring *r);

/* blk_config.c -------------------------------------------------------- */

/* virtio feature bits */
#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_GEOMETRY 4
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_TOPOLOGY 10
#define VIRTIO_BLK_F_CONFIG_WCE 11
#define VIRTIO_BLK_F_MQ 12
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14
#define VIRTIO_F_NOTIFY_ON_EMPTY 24
#define VIRTIO_RING_F_INDIRECT_DESC 28
#define VIRTIO_RING_F_EVENT_IDX 29
#define VHOST_USER_F_PROTOCOL_FEATURES 30
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_F_RING_PACKED 34

#define VHOST_USER_PROTOCOL_F_MQ 0
#define VHOST_USER_PROTOCOL_F_REPLY_ACK 3
#define VHOST_USER_PROTOCOL_F_BACKEND_REQ 5
#define VHOST_USER_PROTOCOL_F_CONFIG 9
#define VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS 15

#define VIRTIO_BLK_CONFIG_SIZE 60u

/* The device's config, bounded and in host units. */
struct blk_config {
  uint64_t capacity;        /* 512-byte sectors */
  uint32_t blk_size;        /* bytes, power of two in [512, 64 KiB] */
  uint32_t physical_block_size;
  uint32_t alignment_offset;
  uint32_t min_io_size;
  uint32_t opt_io_size;
  uint32_t size_max;
  uint32_t seg_max;
  uint32_t max_discard_sectors;
  uint32_t max_discard_seg;
  uint32_t discard_sector_alignment;
  uint32_t max_write_zeroes_sectors;
  uint32_t max_write_zeroes_seg;
  bool write_zeroes_may_unmap;
  bool writeback;
  uint16_t num_queues;
};

/* Parses the config bytes (len of them) honouring only fields whose
 * feature bit is in features; rejects absurd values (blk_size not a power
 * of two, capacity overflowing bytes).  Returns 0 or -EPROTO. */
int blk_config_parse (struct blk_config *cfg, const uint8_t *data,
                      uint32_t len, uint64_t features);

/* plan.c -------------------------------------------------------------- */

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
#define VIRTIO_BLK_ID_BYTES 20
#define VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP 1

/* Limits a request plan obeys. */
struct plan_limits {
  uint32_t blk_size;              /* bytes */
  uint32_t max_transfer;          /* bytes per read/write chunk */
  uint64_t max_discard_bytes;     /* per discard chunk */
  uint64_t max_write_zeroes_bytes;
};

/* The geometry of one caller request over [start, end). */
struct io_plan {
  uint64_t start, end;        /* caller's bytes */
  uint64_t astart, aend;      /* outward-aligned range */
  uint64_t istart, iend;      /* inward-aligned range (istart >= iend: none) */
  bool head_partial;          /* block at astart is partly outside */
  bool tail_partial;          /* block at aend - blk is partly outside */
};

/* Computes the aligned ranges of [start, start+len) for blk_size. */
void plan_init (struct io_plan *plan, uint64_t start, uint64_t len,
                uint32_t blk_size);

/* True if a write of this plan needs read-modify-write of edge blocks. */
bool plan_needs_rmw (const struct io_plan *plan);

/* One virtio-blk request to issue. */
struct chunk {
  uint32_t type;          /* VIRTIO_BLK_T_* */
  uint64_t offset;        /* bytes, blk aligned */
  uint32_t len;           /* bytes */
};

/* Next chunk of a read or write over the outward-aligned range starting
 * at *cursor (init to plan->astart); returns false when done. */
bool plan_next_rw_chunk (const struct io_plan *plan,
                         const struct plan_limits *lim, uint32_t type,
                         uint64_t *cursor, struct chunk *out);

/* Next chunk of a write-zeroes: edges as WRITE (of one block each, data
 * merged by the caller), the aligned inside as WRITE_ZEROES chunks. */
bool plan_next_zero_chunk (const struct io_plan *plan,
                           const struct plan_limits *lim, uint64_t *cursor,
                           struct chunk *out);

/* Next chunk of a discard: only the inward-aligned range, split by the
 * discard limit (discard is advisory, partial blocks are left alone). */
bool plan_next_discard_chunk (const struct io_plan *plan,
                              const struct plan_limits *lim, uint64_t *cursor,
                              struct chunk *out);

/* queue.c / request.c / device.c -------------------------------------- */

struct vublk;
struct request;

/* Per-slot control block in shared memory: what the device reads and
 * writes besides the data. */
struct slot_ctl {
  uint32_t type;            /* virtio-blk header, device-readable */
  uint32_t reserved;
  uint64_t sector;
  uint64_t seg_sector;      /* discard/write-zeroes segment */
  uint32_t seg_num_sectors;
  uint32_t seg_flags;
  uint8_t status;           /* device-writable */
  uint8_t pad[15];
  struct vring_desc indirect[4];
};

/* One virtio-blk request in flight (a chunk of a caller request). */
struct slot {
  struct request *req;      /* owner; NULL when free */
  struct slot_ctl *ctl;     /* in shared memory */
  uint64_t ctl_addr;        /* its address as the device sees it */
  void *data;               /* data in shared memory (or NULL) */
  uint32_t data_len;
  bool device_writes;       /* data direction */
  uint32_t type;
  uint64_t seq;             /* submission order, for replay */
  uint64_t submit_ns;
  unsigned timeouts;        /* request timeouts seen */
  unsigned violations;      /* protocol violations it was in flight for */
  bool abandon;             /* fail instead of resubmitting */
  /* Bounce bookkeeping, released when the slot completes. */
  void *bounce;             /* pool block owned by this slot, or NULL */
  void *copy_out;           /* caller memory to copy data back into */
  uint32_t copy_out_skip;   /* bytes of data to skip before copying */
  uint32_t copy_out_len;
  int16_t next_free;
};

/* One caller request's state. */
enum request_phase {
  PHASE_WAIT_RANGE,         /* waiting for the write range lock */
  PHASE_READ_EDGES,         /* RMW: reading partial edge blocks */
  PHASE_MAIN,               /* issuing the main chunks */
  PHASE_FLUSH,              /* FUA: flush after the writes */
  PHASE_DONE,
};

struct request {
  struct vublk_io io;
  struct vublk_queue *q;
  struct io_plan plan;
  enum request_phase phase;
  uint64_t cursor;              /* next chunk position (under q->lock) */
  bool generated_all;           /* phase's chunks all issued */
  unsigned outstanding;         /* chunks in flight (under q->lock) */
  int error;                    /* first error, 0 if none */
  uint8_t *edges;               /* pool: head block, tail block (RMW) */
  bool write_range;             /* holds a range lock */
  uint64_t lock_start, lock_end;
  struct request *next;         /* pending list */
  struct request *range_next;   /* range lock active / waiting lists */
};

struct vublk_queue {
  struct vublk *dev;
  unsigned index;
  pthread_mutex_t lock;
  struct vq_ring ring;
  struct slot *slots;
  unsigned nslots;
  int free_head;                /* free slot list */
  unsigned inflight;
  struct request *pending_head, *pending_tail;  /* chunks not yet issued */
  struct request *done_list;    /* finished without a chunk in flight */
  int kick_fd, call_fd, wake_fd;
  pthread_t thread;
  bool thread_started;
  bool need_kick;
  bool broken;                  /* protocol violation seen: the used ring is
                                   not read again until the replay resets it
                                   (lock held to write, atomic read) */
  atomic_bool stop;
};

/* Sets up queue q's slots and ring inside the shared memory at ring_mem
 * and ctl_mem (addresses the device sees are equal).  Returns 0/-errno. */
int queue_init (struct vublk_queue *q, struct vublk *dev, unsigned index,
                void *ring_mem, struct slot_ctl *ctl_mem, unsigned num);

/* Releases what queue_init made (fds, slot array); accepts a zeroed q. */
void queue_destroy (struct vublk_queue *q);

/* Bytes of shared memory a queue of num entries needs for its ring and its
 * slot control blocks. */
size_t queue_ring_bytes (unsigned num);
size_t queue_ctl_bytes (unsigned num);

/* Maps a used entry to its slot, checking the id is a head we gave out
 * and is in flight, and the length is within what the device may write.
 * Returns NULL on a violation (error recorded).  q->lock held. */
struct slot *queue_validate_used (struct vublk_queue *q,
                                  const struct vring_used_elem *e);

/* What the completion path needs of a finished slot once the lock is
 * dropped. */
struct finished_chunk {
  struct request *req;
  int result;
  void *bounce;
  void *copy_out;
  uint32_t copy_out_skip, copy_out_len;
};

/* queue.c: places slot s (filled) on the ring.  q->lock held. */
void queue_place_slot_locked (struct vublk_queue *q, struct slot *s);

/* queue.c: moves req on to its next phase when its current one has
 * finished (back on the pending list), or returns true when it is done
 * (the caller completes it).  q->lock held. */
bool queue_phase_end_locked (struct vublk_queue *q, struct request *req);

/* queue.c: fails every request on the pending list: those with nothing
 * in flight finish now, the others when their last chunk comes back.
 * q->lock held. */
void queue_fail_pending_locked (struct vublk_queue *q, int err);

/* queue.c: brackets a batch of completion callbacks for q on this thread:
 * what they submit to q is collected and issued at the end in one batch
 * (one publish, at most one notification).  begin returns the bracket
 * it nests in, which end takes back. */
struct vublk_queue *queue_begin_callbacks (struct vublk_queue *q);
void queue_end_callbacks (struct vublk_queue *q, struct vublk_queue *outer);

/* completion.c: releases slot s into out and back to the free list.
 * q->lock held. */
void queue_slot_finish_locked (struct vublk_queue *q, struct slot *s,
                               int result, struct finished_chunk *out);

/* completion.c: completes n harvested chunks (copy out, free bounce
 * buffers, account, run callbacks of requests that finished). */
void queue_finish_chunks (struct vublk_queue *q, struct finished_chunk *f,
                          unsigned n);

/* completion.c: completes requests the pump parked on q->done_list. */
void queue_finish_done_list (struct vublk_queue *q);

/* Starts / stops the completion thread. */
int queue_start_thread (struct vublk_queue *q);
void queue_stop_thread (struct vublk_queue *q);

/* Appends req to q's pending list and issues what fits; called with
 * q->lock NOT held. */
void queue_enqueue (struct vublk_queue *q, struct request *req);

/* The queue the calling thread submits to: the queue whose completion
 * callback is running, else one per thread, round-robin on first use. */
struct vublk_queue *queue_for_current_thread (struct vublk *dev);

/* Issues pending chunks while slots and pool memory allow, then notifies
 * the device if needed.  Called with q->lock held. */
void queue_pump_locked (struct vublk_queue *q);

/* After a reconnect: harvests what the old backend completed, resets the
 * ring and places every in-flight slot again in submission order;
 * abandoned slots (see queue_scan_timeouts, queue_note_violation) fail
 * with EIO instead.  Returns how many failed.  Does not notify. */
unsigned queue_replay (struct vublk_queue *q);

/* Counts a protocol violation against every slot in flight; a slot that
 * was in flight for an earlier one too is abandoned. */
void queue_note_violation (struct vublk_queue *q);

/* Issues pending work and notifies the backend unconditionally. */
void queue_kick (struct vublk_queue *q);

/* Fails every in-flight and pending request of q with err. */
void queue_fail_all (struct vublk_queue *q, int err);

/* Harvests whatever the used ring holds now and completes it. */
void queue_harvest_now (struct vublk_queue *q);

/* Asks the backend not to signal completions (a thread polls the used
 * ring instead).  Takes q->lock. */
void queue_disarm (struct vublk_queue *q);

/* Asks the backend to signal the next completion, then re-checks the
 * used ring: true if entries already wait (harvest them before
 * sleeping).  A broken queue is left alone (false).  q->lock held. */
bool queue_arm_locked (struct vublk_queue *q);

/* One round of harvesting on the calling thread: takes what the used
 * ring holds (up to a batch), refills freed slots, runs the callbacks.
 * Returns how many chunks completed.  Any thread may call it. */
unsigned queue_process (struct vublk_queue *q);

/* Marks slots submitted before deadline_ns as timed out (abandoned on
 * the second time) and returns true if any was found. */
bool queue_scan_timeouts (struct vublk_queue *q, uint64_t deadline_ns);

/* Writes to the queue's wake fd so its thread re-checks state. */
void queue_wake (struct vublk_queue *q);

/* request.c */

/* A new request for io (already validated) that will run on q, in its
 * first phase, with its write range set (not yet locked).  NULL with
 * ENOMEM recorded. */
struct request *request_new (struct vublk *dev, struct vublk_queue *q,
                             const struct vublk_io *io);

/* The current phase of req has issued and completed everything: moves
 * req on to its next phase (RMW write after the edge reads, flush after
 * FUA) and returns false, or returns true when req is complete. */
bool request_phase_end (struct request *req);

/* Produces the next chunk of req into slot s (data, bounce, header).
 * Returns 1 if a chunk was produced, 0 if the phase has no more chunks,
 * -ENOMEM if pool memory is short (retry later).  q->lock held. */
int request_fill_slot (struct request *req, struct slot *s);

/* Releases what req holds (edge buffer, range lock) and delivers its
 * result (callback or harvest queue), then frees it.  Returns the writes
 * that waited for its range and may run now (linked by next), for the
 * caller to enqueue.  Called without any queue lock. */
struct request *request_finish (struct request *req);

/* Range lock: takes req's [lock_start, lock_end) and returns true, or
 * queues req behind the writes it overlaps and returns false. */
bool range_lock_acquire (struct vublk *dev, struct request *req);

/* Releases req's range; returns the waiters granted now (linked by
 * next), whom the caller enqueues. */
struct request *range_lock_release (struct vublk *dev, struct request *req);


/* aio.c */

/* Submits io (already validated) on queue q: creates the request, takes
 * its write range and enqueues it.  Returns 0 or -ENOMEM. */
int aio_submit_to (struct vublk *dev, struct vublk_queue *q,
                   const struct vublk_io *io);

/* The operation's name for messages ("read", "write-zeroes", ...). */
const char *op_name (enum vublk_op op);

/* device.c */
enum device_state {
  DEV_CONNECTED,
  DEV_RECONNECTING,
  DEV_FAILED,           /* past reconnect timeout: fail fast, keep trying */
  DEV_CLOSING,
};

struct range_entry;

struct vublk {
  char *socket_path;
  struct vublk_options opts;
  int sock;                         /* -1 while disconnected */
  int backend_fd;                   /* our end of the backend channel */
  int ctl_wake_fd;                  /* wakes the control thread */
  int close_fd;                     /* readable once vublk_close began:
                                       cancels the control thread's waits */
  uint64_t attempt_deadline_ns;     /* a reconnect attempt's replies must
                                       come before this (0: no bound) */
  pthread_t ctl_thread;
  bool ctl_started;
  _Atomic int state;
  _Atomic uint64_t size;            /* bytes */
  atomic_uint_fast64_t reconnects;
  atomic_uint_fast64_t seq;         /* slot submission order */
  atomic_uint rr;                   /* queue assignment */

  uint64_t backend_features, features;
  uint64_t backend_protocol_features, protocol_features;
  unsigned backend_queues;
  struct blk_config cfg;
  struct plan_limits limits;
  bool readonly;

  struct shared_memory mem;
  struct vublk_queue *queues;
  unsigned nqueues;
  unsigned queue_size;
  unsigned max_slots_per_queue;

  pthread_mutex_t range_lock;       /* write ranges in flight */
  struct request *range_active;     /* list via next */
  struct request *range_waiting;

  pthread_mutex_t harvest_lock;     /* callback-less completions */
  struct vublk_completion *harvest;
  size_t harvest_len, harvest_cap;
  int harvest_fd;

  atomic_uint outstanding;          /* accepted, not completed requests */
  pthread_mutex_t idle_lock;
  atomic_uint once;                 /* enum device_once bits logged */
  char violation_reason[256];       /* what the backend did (control
                                       thread, under info_lock) */
  uint64_t last_reconnect_ns;       /* when the last reconnect succeeded */
  unsigned reconnect_backoff_ms;    /* delay before the next attempt when
                                       reconnects come too fast */
  atomic_bool violation;            /* a queue saw the backend break the
                                       protocol: the control thread
                                       reconnects (only it touches sock) */
  pthread_mutex_t info_lock;        /* cfg, backend_features,
                                       backend_protocol_features and
                                       backend_queues, which a reconnect or
                                       config change rewrites while
                                       vublk_get_info reads them */
  pthread_cond_t idle_cond;
};






/* options.c: checks every field of o against its bounds.  Returns 0 or
 * -EINVAL naming the field. */
int options_check (const struct vublk_options *o);

/* control.c: the control thread's body (arg is the device). */
void *control_thread (void *arg);

/* Negotiation half (up to and including memory) and ring half. */
int handshake_features_and_memory (struct vublk *dev, bool first);
int handshake_rings (struct vublk *dev);

/* Shares the memfd region (ADD_MEM_REG or SET_MEM_TABLE). */
int handshake_share_memory (struct vublk *dev);

/* Reads and bounds the config; updates dev->cfg / dev->size. */
int handshake_read_config (struct vublk *dev);

/* Sends SET_VRING_ENABLE 0 + GET_VRING_BASE for every ring (clean stop). */
void handshake_stop_rings (struct vublk *dev);

/* Milliseconds for the next handshake reply: the connect timeout, cut
 * short by the end of the reconnect window during a reconnect. */
int handshake_reply_timeout_ms (const struct vublk *dev);

/* Reads one message from the backend channel and acts on it (a config
 * change re-reads the config; a broken channel is closed). */
void handshake_backend_message (struct vublk *dev);

/* connect.c */

/* Connects dev->sock to dev->socket_path within timeout_ms, retrying
 * while the backend's listen backlog is full (then EBUSY, "busy").
 * Returns 0 or -errno with the error set. */
int connect_socket (struct vublk *dev, int timeout_ms);

#endif /* VUBLK_INTERNAL_H */
