/* internal.h — libvublk's cross-file internals, grouped by the file that
 * defines them (libnbd style).  Nothing here is exported.  The wire
 * format is in vhost_user.h, the ring layouts in ring.h, virtio-blk
 * config and request planning in blk.h; virtio's own definitions come
 * from the kernel's <linux/virtio_*.h>.
 *
 * Layers, bottom up (no file calls one above it):
 *   clock.c errors.c log.c   clocks and eventfds, the last error, the log
 *   message.c    vhost-user framing: one sendmsg per message, checked replies
 *   connect.c    connecting with a deadline (a busy backend)
 *   memory.c     the memfd region shared with the backend and its I/O pool
 *   split_ring.c packed_ring.c ring.c   the two layouts behind one interface
 *   blk_config.c plan.c   virtio-blk config; byte ranges into requests
 *   options.c    defaults and bounds of struct vublk_options
 *   info.c       vublk_get_info, feature names
 *   handshake.c  features, config, memory, rings (replayed on reconnect),
 *                the backend channel
 *   request.c    a caller's request: chunks, bounce, RMW phases, range lock
 *   queue.c      one virtqueue's submission: slots, pending list, pump, plug
 *   completion.c harvesting, callbacks, the completion thread
 *   replay.c     replay after a reconnect, giving up on repeated faults
 *   aio.c spin.c sync.c   the public asynchronous and synchronous API
 *   driven.c call_wait.c   run to completion: a thread drives its queue
 *                and sleeps on its call eventfd
 *   control.c    the control thread: reconnect, timeouts, config change
 *   device.c close.c   open (limits, memory, queues, references), close
 */
#ifndef VUBLK_INTERNAL_H
#define VUBLK_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#include "vhost_user.h"
#include "vublk.h"


#define SECTOR_SIZE 512u
#define MAX_QUEUES 64u
#define MAX_QUEUE_SIZE 1024u
#define DEFAULT_QUEUE_SIZE 256u
#define DEFAULT_POOL_SIZE (64u << 20)
#define MAX_SPIN_US 10000u
/* Polling for completions pays only while at most this many requests
 * are in flight (vublk_aio_spin, driven queues): with more, the backend
 * is busy and a polling thread only takes a core from it. */
#define SPIN_MAX_INFLIGHT 2u
/* The same bound for vublk_tq_spin: one event loop's thread polls there
 * (not one thread per request), and it pays at higher depths.
 * vublk-fuse, fio 4k random writes against qemu-storage-daemon's thread
 * pool: 16k to 40-42k IOPS at queue depth 4, 30k to 40-54k at depth 8
 * with a bound of 8; a bound of 64 cost depths 16 and 32 about 10%. */
#define LOOP_SPIN_MAX_INFLIGHT 8u
/* The window the poll option polls for before sleeping: a sleep costs
 * a wake-up (tens of microseconds here) and makes the backend signal,
 * so it must be rare while the backend answers.  On a virtual machine
 * whose host is busy, a 4k round trip to a null-co backend sometimes
 * takes over 50 us: vublk bench, poll, QD1, medians of 8 interleaved
 * rounds: 272k IOPS with a 50 us window, 300k with 200 us, 326k with
 * 1 ms and 325k with 10 ms (the minimal client 364k).  A backend that
 * answers nothing for 1 ms costs the poller at most that much CPU before
 * it sleeps. */
#define POLL_SPIN_NS 1000000ull
/* Polling with at least this many requests in flight on a driven queue,
 * the resubmissions of one pass over its ring are announced together,
 * POLL_BATCH_REQUESTS completions' worth at a time (driven.c).  Groups
 * of 8 against the whole pass (up to 64), vublk bench --poll --queues 1,
 * 4k reads, qemu-storage-daemon null-co, 4 interleaved rounds of 1 s on
 * a 2-core AMD EPYC virtual machine: QD16 2.03M against 1.37M IOPS,
 * QD32 1.89M against 1.42M, QD64 2.28M against 1.79M, QD8 unchanged.
 * The group size was picked on ad hoc builds that flushed the plug by
 * bytes instead (6 rounds): groups of 16 made 1.36M, 1.67M and 2.27M
 * at QD16, 32 and 64 against 1.50M, 1.70M and 2.31M for 8. */
#define POLL_BATCH_MIN_INFLIGHT 16u
#define POLL_BATCH_REQUESTS 8u
/* A driven queue whose completions come closer together than half this
 * polls its ring this long before it sleeps (driven.c). */
#define GAP_SPIN_NS 5000ull
#define MAX_TRANSFER_DEFAULT (1u << 20)

#define unlikely(x) __builtin_expect (!!(x), 0)
#define likely(x) __builtin_expect (!!(x), 1)
#define ARRAY_SIZE(a) (sizeof (a) / sizeof ((a)[0]))
/* A small thread-local read on every request: one load from the thread
 * pointer instead of a __tls_get_addr call per access (ten of them per
 * request were 3% of its instructions).  The library may be dlopen()ed
 * (the nbdkit plugin), so these few words come out of the static TLS
 * space glibc keeps for that; large or rarely used thread-locals (the
 * error message) stay plain __thread. */
#define HOT_THREAD_LOCAL __thread __attribute__ ((tls_model ("initial-exec")))

/* info.c: writes the names of the feature bits set in bits, comma
 * separated ("FLUSH, MQ"; unnamed ones as "bit N"), vhost-user protocol
 * names if protocol, into buf (always terminated, cut short if len is
 * too small). */
void feature_list (uint64_t bits, bool protocol, char *buf, size_t len);

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

/* True if fd (a caller's input, an eventfd) has input now; false for a
 * negative fd.  Never blocks. */
bool fd_readable (int fd);

/* thread.c */

/* pthread_create with every signal blocked in the new thread.  Returns 0
 * or an errno value. */
int library_thread_start (pthread_t *thread, void *(*fn) (void *),
                          void *arg);

/* Makes q the queue the calling thread drives (NULL: none; driven.c). */
struct vublk_queue;
void thread_set_driven_queue (const struct vublk_queue *q);

/* True if the calling thread drives q. */
bool thread_drives (const struct vublk_queue *q);

/* The queue the calling thread drives, or NULL. */
const struct vublk_queue *thread_driven_queue (void);

/* log.c */

/* Things noted once per device in the log. */
enum device_once {
  ONCE_USED_LEN,            /* a used length that disagrees with the chain */
  ONCE_QUEUE_NUM,           /* num_queues without VIRTIO_BLK_F_MQ */
  ONCE_POOL_STARVED,        /* a request failed for want of pool memory */
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

#include "ring.h"
#include "blk.h"

#include "queue.h"

/* call_wait.c: an edge-triggered epoll set watching call_fd alone, or -1
 * if the system refuses one (call_wait then polls). */
int call_wait_open (int call_fd);
/* Sleeps until call_fd is signalled or wait_ms milliseconds pass (-1: no
 * limit), on epoll_fd from call_wait_open (or poll and a read if it is
 * -1).  A signal after the last wake-up ends the sleep once. */
void call_wait (int epoll_fd, int call_fd, int wait_ms);

/* driven.c: the queue handle the calling thread drives for dev, claiming
 * one first when dev's thread_queues option asks for it (NULL: the
 * thread uses the shared queues). */
struct vublk_tq *driven_handle_of_thread (struct vublk *dev);
/* After a synchronous call on tq completed its own request: if a
 * synchronous call claimed tq and other threads' requests are on its
 * queue, lets the queue go (tq is freed) to the completion thread that
 * then answers them. */
void driven_leave_if_shared (struct vublk_tq *tq);
/* Lets go of the queue a synchronous call of this thread claimed on dev,
 * if any (vublk_close: the thread may live on, and the handle would keep
 * the device's memory). */
void driven_release_own (struct vublk *dev);

/* ops.c */

/* What the core needs to know of an operation. */
struct op_desc {
  const char *name;               /* in messages: "write-zeroes" */
  bool modifies;                  /* refused read-only; holds its range */
  bool ranged;                    /* offset and len must be on the device */
  bool needs_buffer;              /* buf is read or written */
  bool device_writes;             /* the device writes the data */
  bool no_op_without_feature;     /* succeeds at once without feature */
  int feature;                    /* VIRTIO_BLK_F_* it needs, -1 none */
  uint32_t virtio_type;           /* VIRTIO_BLK_T_* it becomes */
};

/* The row of op, NULL for an unknown operation. */
const struct op_desc *op_desc (enum vublk_op op);

/* The operation's name for messages ("read", "write-zeroes", ...). */
const char *op_name (enum vublk_op op);

/* aio.c */

/* Validates io against the device, then submits it on queue q. */
int aio_submit_checked (struct vublk *dev, struct vublk_queue *q,
                        const struct vublk_io *io);

/* Submits io (already validated) on queue q: creates the request, takes
 * its write range and enqueues it.  Returns 0 or -ENOMEM. */
int aio_submit_to (struct vublk *dev, struct vublk_queue *q,
                   const struct vublk_io *io);

/* Sets the error for operation op (at offset, if with_offset) on a
 * device that failed: no reconnect succeeded within the reconnect
 * timeout, and the last attempt's error.  Returns -EIO. */
int aio_failed_error (struct vublk *dev, enum vublk_op op, bool with_offset,
                      uint64_t offset);


/* device.c */
enum device_state {
  DEV_CONNECTED,
  DEV_RECONNECTING,
  DEV_FAILED,           /* past reconnect timeout: fail fast, keep trying */
  DEV_CLOSING,
  DEV_CLOSED,           /* vublk_close returned; driven handles remain */
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
  atomic_uint rr;                   /* queue assignment */

  uint64_t backend_features, features;
  uint64_t backend_protocol_features, protocol_features;
  unsigned backend_queues;
  struct blk_config cfg;
  struct plan_limits limits;
  bool readonly;                    /* opened read-only (asked, or the
                                       backend was read-only then) */
  atomic_bool backend_readonly;     /* the connected backend offers
                                       VIRTIO_BLK_F_RO (a restarted backend
                                       may change it) */
  bool offered_readonly;            /* the backend of the handshake under
                                       way offers it (control thread) */

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
  size_t harvest_reserved;          /* room promised to callback-less
                                       requests in flight */
  int harvest_fd;

  atomic_uint outstanding;          /* accepted, not completed requests */
  uint64_t serial;                  /* unique per vublk_open in this process
                                       (an address may be reused) */
  atomic_uint refs;                 /* vublk_open's, plus one per driven
                                       queue handle: freed at 0 */
  pthread_mutex_t idle_lock;
  atomic_uint once;                 /* enum device_once bits logged */
  char violation_reason[256];       /* what the backend did (control
                                       thread, under info_lock) */
  char failure_reason[256];         /* once failed: why the last
                                       reconnect attempt failed (control
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
  pthread_mutex_t claim_lock;       /* counting undriven queues and
                                       claiming one, as one step */
};






/* True if virtio feature bit was negotiated with dev's backend. */
static inline bool
device_has (const struct vublk *dev, unsigned bit)
{
  return dev->features & (1ull << bit);
}

/* True if writes must be refused: opened read-only, or the backend came
 * back read-only after a restart. */
static inline bool
device_readonly (const struct vublk *dev)
{
  return dev->readonly
         || atomic_load_explicit (&dev->backend_readonly, memory_order_relaxed);
}

/* device.c: takes / drops a reference to dev; the last one frees it. */
void device_ref (struct vublk *dev);
void device_unref (struct vublk *dev);

/* device.c: true once vublk_close has returned. */
bool device_is_gone (const struct vublk *dev);

/* options.c: checks every field of o against its bounds.  Returns 0 or
 * -EINVAL naming the field. */
int options_check (const struct vublk_options *o);

/* options.c: copies the caller's options (NULL: the defaults) into out,
 * whatever vublk.h the caller was built with: fields its struct_size does
 * not cover keep their defaults.  Returns 0 or -EINVAL (not prepared by
 * vublk_options_init). */
int options_import (struct vublk_options *out,
                    const struct vublk_options *in);

/* control.c: the control thread's body (arg is the device). */
void *control_thread (void *arg);

/* The control thread's backoff: sleeps ms, returning early (true) only
 * if the device is closing.  Other wake-ups (a queue reporting a fault)
 * are drained and the sleep goes on: left readable, the wake fd would
 * cut every later backoff short. */
bool control_sleep (struct vublk *dev, int ms);

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

/* After a reconnect's handshake succeeded: makes the read-only state the
 * new backend offered the device's (writes then fail with EROFS, reads go
 * on), logging a change unless the device was opened read-only. */
void handshake_apply_readonly (struct vublk *dev);

/* Reads one message from the backend channel and acts on it (a config
 * change re-reads the config; a broken channel is closed).  Returns false
 * if the control socket must be reconnected: the changed config could
 * not be read (logged). */
bool handshake_backend_message (struct vublk *dev);

/* connect.c */

/* Connects dev->sock to dev->socket_path within timeout_ms, retrying
 * while the backend's listen backlog is full (then EBUSY, "busy").
 * Returns 0 or -errno with the error set. */
int connect_socket (struct vublk *dev, int timeout_ms);

#endif /* VUBLK_INTERNAL_H */
