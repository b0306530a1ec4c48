/* queue.h — a virtqueue's slots and a caller's request: the structs and
 * the functions of queue.c (submission), completion.c (harvesting),
 * replay.c (reconnects) and request.c (chunks, phases, range lock).
 * Included by internal.h.
 */
#ifndef VUBLK_QUEUE_H
#define VUBLK_QUEUE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "blk.h"
#include "ring.h"
#include "vublk.h"

/* queue.c / request.c / device.c -------------------------------------- */

struct vublk;
struct request;

/* Per-slot control block in shared memory: what the device reads and
 * writes besides the data.  Two cache lines: the indirect table, which
 * mostly stays as it was (ring.c leaves equal descriptors alone), and
 * everything that changes per request, so that handing a request to the
 * device takes one line from it, not three. */
struct slot_ctl {
  struct vring_desc indirect[4];
  uint32_t type;            /* virtio-blk header, device-readable */
  uint32_t reserved;
  uint64_t sector;
  uint64_t seg_sector;      /* discard/write-zeroes segment */
  uint32_t seg_num_sectors;
  uint32_t seg_flags;
  uint8_t status;           /* device-writable */
} __attribute__ ((aligned (64)));

/* One virtio-blk request in flight (a chunk of a caller request). */
struct slot {
  struct request *req;      /* owner; NULL when free */
  struct slot_ctl *ctl;     /* in shared memory */
  uint64_t ctl_addr;        /* its address as the device sees it */
  void *data;               /* data in shared memory (or NULL) */
  uint32_t data_len;
  bool device_writes;       /* data direction */
  uint32_t type;
  uint64_t seq;             /* submission order on its queue, for replay */
  uint64_t submit_ns;
  uint64_t placed_at_seen;  /* ring_seen when placed */
  unsigned timeouts;        /* request timeouts seen */
  unsigned violations;      /* protocol violations it was in flight for */
  unsigned drops;           /* connections lost with it in flight */
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
  uint64_t pool_wait_since;     /* when it found the pool short, 0 if not
                                   waiting for pool memory */
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
  unsigned inflight;             /* slots in flight (written under lock,
                                   read atomically without it) */
  uint64_t next_seq;            /* submission order of the next slot */
  struct slot *recent[2];       /* the last two slots placed, newest
                                   first (written under lock, read
                                   atomically by polling threads) */
  struct request *pending_head, *pending_tail;  /* chunks not yet issued */
  atomic_bool driven;           /* a thread drives it (driven.c): no
                                   completion thread touches the ring */
  atomic_bool sync_claimed;     /* driven for a thread's synchronous calls
                                   (thread_queues): harvested only while
                                   it is inside one */
  atomic_bool parked;           /* its completion thread has seen driven
                                   and keeps off the ring and call fd */
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
  /* Requests freed by the thread driving this queue, kept for its next
   * submissions (that thread only; request.c). */
  struct request *request_cache;
  unsigned request_cache_len;
};

/* Sets up queue q's slots and ring inside the shared memory at ring_mem
 * and ctl_mem (addresses the device sees are equal).  Returns 0/-errno. */
int queue_init (struct vublk_queue *q, struct vublk *dev, unsigned index,
                void *ring_mem, struct slot_ctl *ctl_mem, unsigned num);

/* True if q has requests in flight, waiting to be issued, or finished
 * and waiting for their callbacks. */
bool queue_has_work (struct vublk_queue *q);

/* Marks a zeroed q as holding no fds, so that queue_destroy is safe on it
 * whether or not queue_init ran (or got as far as its fds). */
void queue_mark_unopened (struct vublk_queue *q);

/* Releases what queue_init made (fds, slot array); accepts a q that
 * queue_mark_unopened marked. */
void queue_destroy (struct vublk_queue *q);

/* Bytes of shared memory a queue of num entries needs for its ring and its
 * slot control blocks. */
size_t queue_ring_bytes (unsigned num);
size_t queue_ctl_bytes (unsigned num);

/* Maps the used entry just harvested to its slot, checking the id is a
 * head we gave out and is in flight, and that the entry came after the
 * slot was placed, and notes a length other than what the device may
 * write.
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

/* queue.c: plugs dev for this thread (vublk_aio_plug) unless the thread
 * holds a plug already (on this device or another: it stays as it is).
 * Returns true if it plugged; the caller then unplugs with
 * vublk_aio_unplug (dev) before it waits for anything. */
bool queue_plug_unless_plugged (struct vublk *dev);

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
 * the device if needed.  A request that has found the pool short for
 * longer than the request timeout fails with -ENOMEM: memory the caller
 * holds (vublk_buf_alloc) may never come back.  Called with q->lock
 * held. */
void queue_pump_locked (struct vublk_queue *q);

/* After a reconnect: harvests what the old backend completed, resets the
 * ring and places every in-flight slot again in submission order;
 * abandoned slots (see queue_scan_timeouts, queue_note_violation,
 * queue_note_drop) fail
 * with EIO instead, and, when the new backend is read-only, requests that
 * modify fail with EROFS.  Returns how many failed with EIO.  Does not
 * notify. */
unsigned queue_replay (struct vublk_queue *q, bool backend_readonly);

/* Counts a protocol violation against every slot in flight; a slot that
 * was in flight for an earlier one too is abandoned. */
void queue_note_violation (struct vublk_queue *q);

/* A slot in flight across this many lost connections in a row is
 * abandoned: a backend that dies on a request (and is restarted) must
 * not be fed it for ever.  One backend restart, or two, are survived. */
#define MAX_DROPS_IN_FLIGHT 3

/* Counts a lost connection against every slot in flight; a slot that
 * reaches MAX_DROPS_IN_FLIGHT is abandoned.  Returns how many were. */
unsigned queue_note_drop (struct vublk_queue *q);

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

/* How many completions one queue_process call takes at most, so a
 * thread that drives several things gets back to them. */
#define PROCESS_BUDGET 64u

/* One round of harvesting on the calling thread: takes what the used
 * ring holds (up to max chunks), refills freed slots, runs the
 * callbacks; then finishes the requests parked as done (beyond max).
 * Returns how many chunks completed, plus requests that finished with
 * no chunk at all (a flush without FLUSH).  Any thread may call it. */
unsigned queue_process (struct vublk_queue *q, unsigned max);

/* Marks slots submitted before deadline_ns as timed out (abandoned on
 * the second time) and returns true if any was found.  While the used
 * ring holds answers nobody has harvested yet, marks nothing, wakes
 * whoever harvests q and returns false: the backend is answering. */
bool queue_scan_timeouts (struct vublk_queue *q, uint64_t deadline_ns);

/* Disarms q and polls its used ring without the lock until an entry
 * waits (true: harvest it), until passes or *stop (if stop) is set
 * (false).  What the next completion is read from is prefetched while it
 * polls.  A broken queue is not looked at. */
bool queue_poll_used (struct vublk_queue *q, uint64_t until,
                      const atomic_bool *stop);

/* Writes to the queue's wake fd so its thread re-checks state. */
void queue_wake (struct vublk_queue *q);

/* Wakes whoever harvests q to look at it: the owner of a driven queue,
 * which sleeps on the call eventfd, else the completion thread. */
void queue_wake_harvester (struct vublk_queue *q);

/* request.c */

/* A new request for io (already validated) that will run on q, in its
 * first phase, with its write range set (not yet locked).  NULL with
 * ENOMEM recorded. */
struct request *request_new (struct vublk *dev, struct vublk_queue *q,
                             const struct vublk_io *io);

/* Frees the requests q's driving thread kept for reuse.  Called by that
 * thread as it lets the queue go. */
void request_cache_drop (struct vublk_queue *q);

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

#endif /* VUBLK_QUEUE_H */
