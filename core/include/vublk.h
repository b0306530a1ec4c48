/* vublk.h — libvublk, a vhost-user-blk client.
 *
 * libvublk connects to a vhost-user-blk UNIX socket (qemu-storage-daemon,
 * SPDK, rust-vmm backends), negotiates features, shares rings and an I/O
 * buffer pool with the backend through memfd memory, and issues virtio-blk
 * requests.  One `struct vublk` is one connection; it is thread safe: any
 * number of threads may submit requests at once, many requests in flight.
 *
 * Errors: functions return -1 / NULL, or -errno on I/O paths.  The message
 * and errno of the last failure are kept per thread: vublk_get_error(),
 * vublk_get_errno().  The library never prints and never exits.
 *
 * Threads: each queue has a completion thread that harvests the used ring
 * and runs completion callbacks; one control thread watches the socket,
 * applies config changes, enforces timeouts and reconnects after a backend
 * restart, resubmitting every request that had not completed.
 *
 * Rules that follow from those threads:
 *  - Signals: the library's threads block every signal, so a program's
 *    handlers run on its own threads; nothing needs blocking around
 *    vublk_open().
 *  - fork(): threads do not survive it.  Open the device in the process
 *    that uses it, after any fork (daemonizing, nbdkit's after_fork); a
 *    child must not use a device its parent opened.  Opening, closing and
 *    forking afterwards is fine (it is how a probe before fork works).
 *  - Callbacks and the log callback run on library threads (or inside a
 *    submitting call); they must not block or call vublk_close().
 *  - vublk_close() must not race with other calls on the same device.
 */
#ifndef VUBLK_H
#define VUBLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "vublk-version.h"   /* VUBLK_VERSION_MAJOR ... _STRING */

/* Returns the library version as "MAJOR.MINOR.MICRO". */
const char *vublk_version (void);

/* The last error message of this thread ("" if none); valid until the next
 * failing libvublk call on this thread. */
const char *vublk_get_error (void);

/* The errno of this thread's last failure (0 if none). */
int vublk_get_errno (void);

struct vublk;

/* Log levels, most severe first. */
enum vublk_log_level {
  VUBLK_LOG_ERROR = 1,      /* requests failed because of the event */
  VUBLK_LOG_WARNING,        /* backend lost, reconnects and their reasons */
  VUBLK_LOG_INFO,           /* backend back, what was resubmitted */
  VUBLK_LOG_DEBUG,          /* tolerated backend quirks, each noted once */
};

/* Receives one line (no newline) about an event the library noticed on
 * its own, from whichever thread noticed it: the caller of vublk_open,
 * the control thread or a completion thread.  It must be thread safe,
 * must not block for long and must not call libvublk. */
typedef void (*vublk_log_fn) (void *opaque, int level, const char *msg);

/* "error", "warning", "info" or "debug". */
const char *vublk_log_level_name (int level);

/* What backs the memory shared with the backend. */
enum vublk_memory {
  VUBLK_MEMORY_NORMAL = 0,  /* ordinary pages (memfd) */
  VUBLK_MEMORY_HUGETLB,     /* 2 MiB huge pages (memfd MFD_HUGETLB), as
                               SPDK's NVMe and RDMA backends need; falls
                               back to ordinary pages with a warning in
                               the log when none are free */
};

/* The virtqueue layout. */
enum vublk_ring {
  VUBLK_RING_AUTO = 0,      /* today split: every backend serves it
                               across reconnects, while DPDK's vhost_blk
                               example keeps packed-ring state from one
                               client to the next */
  VUBLK_RING_SPLIT,         /* split rings */
  VUBLK_RING_PACKED,        /* packed rings (VIRTIO_F_RING_PACKED); open
                               fails if the backend does not offer them */
};

/* Options for vublk_open().  Prepare with vublk_options_init(), which
 * records the size of the struct this program was built with: a program
 * built against an older vublk.h keeps working with a newer library
 * (fields it does not know get their defaults), and new fields are only
 * ever added at the end.  Set fields directly or by name with
 * vublk_options_set(). */
struct vublk_options {
  size_t struct_size;        /* set by vublk_options_init */
  unsigned num_queues;       /* queues to use; 0 = min(backend's, 4) */
  unsigned queue_size;       /* ring entries, power of two <= 1024; 0 = 256 */
  bool poll;                 /* busy-poll; sleep only after 1 ms with
                                requests in flight and none completing */
  bool readonly;             /* refuse writes even if the device allows them */
  size_t pool_size;          /* bytes of shared I/O buffer pool; 0 = 64 MiB */
  double connect_timeout;    /* seconds to wait for each handshake reply */
  double request_timeout;    /* seconds before an unanswered request counts
                                as a hung backend (reconnect); 0 = never */
  double reconnect_timeout;  /* seconds to keep trying to reconnect after
                                the backend goes away before failing
                                pending and new requests with EIO;
                                0 = fail at once */
  unsigned spin_us;          /* synchronous calls (vublk_pread, ...):
                                poll this many microseconds for their
                                completion before sleeping, while at most
                                two requests are in flight (see
                                vublk_aio_spin); 0 = sleep at once;
                                at most 10000 */
  enum vublk_memory memory;  /* default VUBLK_MEMORY_NORMAL */
  enum vublk_ring ring;      /* default VUBLK_RING_AUTO */
  vublk_log_fn log;          /* NULL: no log */
  void *log_opaque;          /* passed to log */
  int log_level;             /* deliver levels <= this; 0 means
                                VUBLK_LOG_INFO */
  bool thread_queues;        /* each thread's synchronous calls claim a
                                queue of their own on first use and
                                drive it (see vublk_tq_open) while at
                                least one other queue stays shared, else
                                use the shared queues; released at
                                thread exit */
};

/* Fills *opts with the defaults (queues 0, queue size 256, no polling,
 * split rings, normal memory, 64 MiB pool, connect 5 s, request 30 s,
 * reconnect 30 s, no spinning, no log) and records its size. */
#define vublk_options_init(opts) \
  vublk_options_init_size ((opts), sizeof *(opts))
void vublk_options_init_size (struct vublk_options *opts, size_t size);

/* Sets the option called name from the text value, as a user typed it:
 * the names are the long options of vublk and vublk-fuse without their
 * dashes and the nbdkit plugin's keys ("queues" or "num-queues",
 * "queue-size", "poll", "ring", "memory", "pool-size", "connect-timeout",
 * "reconnect-timeout", "request-timeout", "spin", "readonly",
 * "thread-queues").  Numbers
 * are checked against the option's bounds; sizes take k/M/G/T suffixes;
 * booleans on/off, yes/no, true/false, 1/0.  Returns 0, or -EINVAL with
 * a message naming the option and what was wrong (the field unchanged). */
int vublk_options_set (struct vublk_options *opts, const char *name,
                       const char *value);

/* One option settable by name, for help texts. */
struct vublk_option_info {
  const char *name;          /* "queue-size" */
  const char *value_hint;    /* "N", "S", "split|packed" */
  const char *help;          /* one sentence, with the default */
  const char *alias;         /* another name vublk_options_set takes for
                                it ("num-queues"), or NULL; since 1.2 */
};

/* The i-th option settable by name (from 0), NULL past the last. */
const struct vublk_option_info *vublk_option_info (unsigned i);

/* Connects to the vhost-user-blk socket at socket_path and completes the
 * handshake.  opts may be NULL for the defaults.  Returns a device handle
 * to be released with vublk_close(), or NULL with the error set. */
struct vublk *vublk_open (const char *socket_path,
                          const struct vublk_options *opts);

/* Waits for every submitted request to complete, stops the rings and
 * closes the connection.  Accepts NULL. */
void vublk_close (struct vublk *dev);

/* Returns the socket path this device was opened with (owned by dev). */
const char *vublk_get_socket_path (struct vublk *dev);

/* What the device is and what was negotiated.  Filled by
 * vublk_get_info(), which passes the size of the struct this program was
 * built with: new fields are only ever added at the end. */
struct vublk_info {
  uint64_t size;                      /* bytes (capacity * 512) */
  uint32_t logical_block_size;        /* bytes; I/O granularity */
  uint32_t physical_block_size;       /* bytes */
  uint32_t alignment_offset;          /* bytes */
  uint32_t min_io_size;               /* bytes, 0 if unknown */
  uint32_t opt_io_size;               /* bytes, 0 if unknown */
  uint32_t size_max;                  /* max bytes per segment, 0 = none */
  uint32_t seg_max;                   /* max data segments, 0 = unknown */
  uint32_t max_transfer;              /* bytes per request the core sends */
  uint32_t max_discard_sectors;       /* 512-byte sectors */
  uint32_t max_discard_seg;
  uint32_t discard_sector_alignment;  /* 512-byte sectors */
  uint32_t max_write_zeroes_sectors;  /* 512-byte sectors */
  uint32_t max_write_zeroes_seg;
  bool write_zeroes_may_unmap;
  bool readonly;                      /* device is RO, or opened readonly */
  bool can_flush;
  bool can_discard;
  bool can_write_zeroes;
  bool writeback;                     /* volatile write cache in use */
  unsigned num_queues;                /* queues in use */
  unsigned backend_queues;            /* queues the backend offers */
  unsigned queue_size;
  bool event_idx;
  bool indirect_desc;
  uint64_t features;                  /* virtio features negotiated */
  uint64_t backend_features;          /* virtio features offered */
  uint64_t protocol_features;         /* vhost-user protocol negotiated */
  uint64_t backend_protocol_features; /* vhost-user protocol offered */
  uint64_t reconnects;                /* successful reconnects so far */
  bool hugetlb;                       /* shared memory in 2 MiB pages */
  bool packed_ring;                   /* packed virtqueues in use */
  uint64_t shared_memory_size;        /* bytes shared with the backend */
  uint64_t pool_size;                 /* bytes of it in the I/O buffer pool
                                         (vublk_buf_alloc, bounces) */
  unsigned queue_depth;               /* requests one queue holds in flight
                                         (more wait in the library); since
                                         1.2: an older library leaves it as
                                         the caller had it (zero the struct
                                         first: 0 = not known) */
};

/* Fills *info (size bytes of it) with the device's current description.
 * Returns 0. */
#define vublk_get_info(dev, info) \
  vublk_get_info_size ((dev), (info), sizeof *(info))
int vublk_get_info_size (struct vublk *dev, struct vublk_info *info,
                         size_t size);

/* Current size in bytes (follows config-change notifications). */
uint64_t vublk_get_size (struct vublk *dev);

/* Name of a virtio (transport or blk) feature bit, or NULL if unknown. */
const char *vublk_feature_name (unsigned bit);

/* Name of a vhost-user protocol feature bit, or NULL if unknown. */
const char *vublk_protocol_feature_name (unsigned bit);

/* Allocates len bytes inside the memory shared with the backend.  I/O
 * whose buffer lies wholly in such a block is zero copy; other buffers are
 * bounced.  Returns NULL with ENOMEM when the pool is exhausted. */
void *vublk_buf_alloc (struct vublk *dev, size_t len);

/* Frees a block from vublk_buf_alloc().  Accepts NULL. */
void vublk_buf_free (struct vublk *dev, void *buf);

/* Asynchronous API --------------------------------------------------- */

enum vublk_op {
  VUBLK_OP_READ = 0,
  VUBLK_OP_WRITE,
  VUBLK_OP_FLUSH,
  VUBLK_OP_DISCARD,
  VUBLK_OP_WRITE_ZEROES,
  VUBLK_OP_GET_ID,          /* buf of >= 21 bytes gets the NUL-ended serial */
};

/* Flags of struct vublk_io. */
#define VUBLK_F_UNMAP       (1u << 0) /* write-zeroes may deallocate */
#define VUBLK_F_FUA         (1u << 1) /* write: flush before completing */

/* Called exactly once per accepted request, from a library thread (or
 * from inside vublk_aio_submit when the request ends at once).  result is
 * 0 on success or -errno (-EIO, -EROFS, -ENOSPC, -ENOTSUP, -EINVAL ...).
 * It may submit new requests; it must not block or call vublk_close(). */
typedef void (*vublk_complete_fn) (void *opaque, int result);

/* One request.  offset and len are bytes and need not be aligned: the
 * library splits requests over the device's limits and serves unaligned
 * ranges by read-modify-write; overlapping writes never tear. */
struct vublk_io {
  enum vublk_op op;
  uint32_t flags;           /* VUBLK_F_* */
  uint64_t offset;          /* bytes */
  void *buf;                /* READ, WRITE, GET_ID; must stay valid until
                               completion */
  size_t len;               /* bytes (GET_ID: buffer size) */
  vublk_complete_fn cb;     /* NULL: completion goes to vublk_aio_harvest */
  void *opaque;             /* passed to cb */
  uint64_t user_data;       /* returned by vublk_aio_harvest */
};

/* Submits io (the struct is copied).  Returns 0 when accepted: the
 * completion then arrives exactly once (callback or harvest).  Returns
 * -errno, with no completion, if io is invalid (-EINVAL), beyond the end
 * (-ENOSPC for writes, -EINVAL for reads), not allowed (-EROFS, -ENOTSUP)
 * or the device has failed for good (-EIO). */
int vublk_aio_submit (struct vublk *dev, const struct vublk_io *io);

/* Batching: between vublk_aio_plug() and vublk_aio_unplug() the requests
 * this thread submits are put on the rings but the backend is told only
 * at unplug, once per queue — fewer notifications and larger batches for
 * the backend.  Once 256 KiB of data is waiting, the backend is told at
 * once, so large requests do not wait for the rest of the burst.  Use it
 * around a burst of submissions (for example, every request a FUSE or NBD
 * loop has ready); unplug before waiting for anything.  Plugs are per
 * thread and do not nest: plugging the same device again changes
 * nothing, plugging another first announces what waits on the first,
 * and unplugging a device this thread has not plugged does nothing.
 * vublk_close() unplugs the calling thread's plug on the device; unplug
 * on other threads before closing. */
void vublk_aio_plug (struct vublk *dev);
void vublk_aio_unplug (struct vublk *dev);

/* Adaptive polling for an event loop about to go idle: for up to ns
 * nanoseconds this thread harvests completions itself (their callbacks
 * run here, on this thread) and watches fd (if >= 0) for input.  Returns
 * 1 as soon as something completed or fd is readable, 0 if the time ran
 * out with nothing to do (then sleep).  Meanwhile the backend is asked
 * not to send completion notifications; on return they are re-enabled,
 * so the completion threads take over while the caller sleeps.  Saves
 * two thread wake-ups per request at low queue depth, at the cost of up
 * to ns of CPU each time the loop goes idle.  Returns 0 at once while
 * more than two requests are in flight: the completion threads are busy
 * then, and spinning would only take CPU from them and the backend. */
int vublk_aio_spin (struct vublk *dev, uint64_t ns, int fd);

/* A completion of a request submitted without callback. */
struct vublk_completion {
  uint64_t user_data;
  int result;               /* 0 or -errno */
};

/* Moves up to max finished callback-less completions into out and returns
 * how many (0 if none).  Never blocks. */
int vublk_aio_harvest (struct vublk *dev, struct vublk_completion *out,
                       unsigned max);

/* An fd that polls readable while harvestable completions are pending. */
int vublk_aio_completion_fd (struct vublk *dev);

/* Run to completion: a thread drives a queue ---------------------------- */

/* A queue claimed by the calling thread, which then submits to it and
 * runs all its completions itself (vublk_tq_process): no completion
 * thread and no thread wake-up between the backend and the caller.
 * Other threads' requests avoid driven queues while an undriven one is
 * left.  The control thread keeps working for it: requests it replays
 * after a backend restart complete as usual, and those it fails are
 * handed to the owner's next vublk_tq_process.  A thread drives at most
 * one queue; its synchronous calls (vublk_pread, ...) use it too, while
 * what it submits with vublk_aio_submit goes to the shared queues (the
 * library's threads complete it).  Once every queue is driven (a
 * single-queue backend whose queue one thread claimed), there are no
 * shared queues: an owner's vublk_aio_submit requests go to its own
 * queue and complete in its vublk_tq_process, and other threads'
 * requests go to some owner's queue and complete when that owner
 * processes. */
struct vublk_tq;

/* Claims a queue no other thread drives.  Returns the handle, or NULL
 * with EBUSY when every queue is driven (or this thread drives one). */
struct vublk_tq *vublk_tq_open (struct vublk *dev);

/* Runs what was handed over, gives the queue back to its completion
 * thread and frees the handle.  The handle (and the memory it refers
 * to) stays valid until this call, even after vublk_close().  Accepts
 * NULL.  Call it from the owner. */
void vublk_tq_close (struct vublk_tq *tq);

/* Submits io on the driven queue; as vublk_aio_submit, but the callback
 * (or harvest entry) is delivered inside vublk_tq_process on the owner. */
int vublk_tq_submit (struct vublk_tq *tq, const struct vublk_io *io);

/* Harvests completions and runs their callbacks on this thread until at
 * least min have completed or timeout_ns passes (-1: no timeout; 0: just
 * look).  Polls the used ring first — busily with the poll option, for
 * spin_us while at most two requests are in flight on the device — then
 * sleeps on the queue's call eventfd.  Busy polling with 16 or more in
 * flight, what the callbacks submit is announced to the backend after
 * every 8 completions (and before it returns, polls or sleeps), not one
 * by one; if the caller holds a plug (vublk_aio_plug), at its unplug.
 * Returns how many completed, or -ESHUTDOWN after
 * vublk_close().  vublk_close() waits for requests on driven queues:
 * their owners must keep processing. */
int vublk_tq_process (struct vublk_tq *tq, unsigned min, int64_t timeout_ns);

/* The queue's call eventfd, for an event loop's poll/epoll: readable
 * when the backend signalled a completion.  Before sleeping on it, call
 * vublk_tq_arm() (it empties the eventfd: vublk_tq_process leaves it
 * readable); when it reports work, or the fd is readable, call
 * vublk_tq_process (tq, 0, 0). */
int vublk_tq_fd (struct vublk_tq *tq);

/* For an event loop about to go idle: polls the queue (running what
 * completes) and fd (if >= 0) for up to ns.  Returns 1 as soon as
 * something completed or fd is readable, 0 when the time ran out — or at
 * once while more than eight requests are in flight on the device (then
 * the backend is busy and spinning only takes CPU from it) or while all
 * that is in flight is on other queues (the completion threads answer
 * those), unless the poll option asks for busy polling.  -ESHUTDOWN
 * after vublk_close(). */
int vublk_tq_spin (struct vublk_tq *tq, uint64_t ns, int fd);

/* Prepares to sleep on vublk_tq_fd: empties it and asks the backend to
 * signal the next completion.  Returns 1 if completions are already
 * waiting (process them, do not sleep), 0 if sleeping is safe, or
 * -ESHUTDOWN after vublk_close(). */
int vublk_tq_arm (struct vublk_tq *tq);

/* Synchronous helpers (built on the asynchronous API) ------------------ */

/* Reads up to len bytes at offset; short at the end of the device.
 * Returns bytes read or -errno. */
ssize_t vublk_pread (struct vublk *dev, void *buf, size_t len,
                     uint64_t offset);

/* Writes len bytes at offset (flags: VUBLK_F_FUA).  Returns len or -errno
 * (-ENOSPC past the end, -EROFS on a read-only device). */
ssize_t vublk_pwrite (struct vublk *dev, const void *buf, size_t len,
                      uint64_t offset, uint32_t flags);

/* Flushes the device's volatile cache.  Returns 0 or -errno. */
int vublk_flush (struct vublk *dev);

/* Discards [offset, offset+len).  Returns 0 or -errno (-ENOTSUP). */
int vublk_discard (struct vublk *dev, uint64_t offset, uint64_t len);

/* Zeroes [offset, offset+len), deallocating if VUBLK_F_UNMAP and the
 * device allows.  Returns 0 or -errno (-ENOTSUP without write-zeroes). */
int vublk_write_zeroes (struct vublk *dev, uint64_t offset, uint64_t len,
                        uint32_t flags);

/* Reads the device serial (virtio-blk GET_ID) into serial[21],
 * NUL-terminated.  Returns 0 or -errno. */
int vublk_get_serial (struct vublk *dev, char serial[21]);

#ifdef __cplusplus
}
#endif

#endif /* VUBLK_H */
