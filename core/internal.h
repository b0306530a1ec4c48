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
 *   control.c    the control thread: reconnect, timeouts, config change
 *   device.c     open and close
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
#define MAX_TRANSFER_DEFAULT (1u << 20)

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

/* thread.c */

/* pthread_create with every signal blocked in the new thread.  Returns 0
 * or an errno value. */
int library_thread_start (pthread_t *thread, void *(*fn) (void *),
                          void *arg);

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
  struct finished_chunk *recovery_chunks; /* nslots each, for replay.c */
  struct slot **recovery_order;           /* (control thread only) */
  int free_head;                /* free slot list */
  unsigned inflight;
  struct request *pending_head, *pending_tail;  /* chunks not yet issued */
  atomic_bool driven;           /* a thread drives it (driven.c): no
                                   completion thread touches the ring */
  struct request *handoff;      /* finished on another thread while
                                   driven: the owner runs the callbacks
                                   (under lock) */
  struct request *done_list;    /* finished without a chunk in flight
                                   (lock held to write, atomic peek) */
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

/* queue.c: makes q the queue the calling thread drives (NULL: none);
 * its submissions go there. */
void queue_set_thread_driven (struct vublk_queue *q);

/* queue.c: true if the calling thread drives q. */
bool queue_is_thread_driven (const struct vublk_queue *q);

/* completion.c: runs, on the owner, the callbacks of requests another
 * thread finished while q was driven.  Returns how many. */
unsigned queue_run_handoff (struct vublk_queue *q);

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

/* completion.c: completes requests the pump parked on q->done_list;
 * returns how many. */
unsigned queue_finish_done_list (struct vublk_queue *q);

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
 * Returns how many chunks completed, plus requests that finished with no
 * chunk at all (a flush without FLUSH).  Any thread may call it. */
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


/* driven.c: the queue handle the calling thread drives for dev, claiming
 * one first when dev's thread_queues option asks for it (NULL: the
 * thread uses the shared queues). */
struct vublk_tq *driven_handle_of_thread (struct vublk *dev);

/* aio.c */

/* Validates io against the device, then submits it on queue q. */
int aio_submit_checked (struct vublk *dev, struct vublk_queue *q,
                        const struct vublk_io *io);

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
  size_t harvest_reserved;          /* room promised to callback-less
                                       requests in flight */
  int harvest_fd;

  atomic_uint outstanding;          /* accepted, not completed requests */
  atomic_uint refs;                 /* vublk_open's, plus one per driven
                                       queue handle: freed at 0 */
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
