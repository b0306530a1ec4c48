/* handshake.c — everything said on the control socket to bring a device
 * up, in the order qemu-storage-daemon 7.2 and SPDK accept (see
 * docs/protocol.md): features, protocol features, queue count, owner, backend
 * channel, config, SET_FEATURES, memory, then each ring (NUM, BASE, ADDR,
 * CALL, KICK, ENABLE).  The same steps are replayed after a reconnect,
 * with the same memory and fresh rings.
 *
 * Only features this library implements are negotiated: an unknown
 * request makes qemu's server drop the connection.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

/* virtio features we implement and ask for when offered. */
#define WANTED_FEATURES                                                 \
  ((1ull << VIRTIO_BLK_F_SIZE_MAX) | (1ull << VIRTIO_BLK_F_SEG_MAX)     \
   | (1ull << VIRTIO_BLK_F_RO) | (1ull << VIRTIO_BLK_F_BLK_SIZE)        \
   | (1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_TOPOLOGY)     \
   | (1ull << VIRTIO_BLK_F_CONFIG_WCE) | (1ull << VIRTIO_BLK_F_MQ)      \
   | (1ull << VIRTIO_BLK_F_DISCARD) | (1ull << VIRTIO_BLK_F_WRITE_ZEROES) \
   | (1ull << VIRTIO_RING_F_INDIRECT_DESC)                              \
   | (1ull << VIRTIO_RING_F_EVENT_IDX)                                  \
   | (1ull << VHOST_USER_F_PROTOCOL_FEATURES)                           \
   | (1ull << VIRTIO_F_VERSION_1))

#define WANTED_PROTOCOL_FEATURES                                        \
  ((1ull << VHOST_USER_PROTOCOL_F_MQ)                                   \
   | (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK)                          \
   | (1ull << VHOST_USER_PROTOCOL_F_BACKEND_REQ)                        \
   | (1ull << VHOST_USER_PROTOCOL_F_CONFIG)                             \
   | (1ull << VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS))

/* The one feature a restarted backend may drop or gain. */
#define RO_FEATURE (1ull << VIRTIO_BLK_F_RO)

static bool
has_protocol (const struct vublk *dev, unsigned bit)
{
  return dev->protocol_features & (1ull << bit);
}

static bool
reply_ack (const struct vublk *dev)
{
  return has_protocol (dev, VHOST_USER_PROTOCOL_F_REPLY_ACK);
}

int
handshake_read_config (struct vublk *dev)
{
  struct vhost_user_config cfg = { .offset = 0, .size = VIRTIO_BLK_CONFIG_SIZE };
  uint32_t msg_size = offsetof (struct vhost_user_config, data)
                      + VIRTIO_BLK_CONFIG_SIZE;
  uint32_t got;
  struct blk_config parsed;
  uint64_t size, old_size;
  int err;

  if (!has_protocol (dev, VHOST_USER_PROTOCOL_F_CONFIG))
    return set_error (ENOTSUP, "%s: backend does not offer the CONFIG "
                      "protocol feature; the device size is unknown",
                      dev->socket_path);
  err = vu_send (dev->sock, VHOST_USER_GET_CONFIG, 0, &cfg, msg_size, NULL, 0,
                 handshake_reply_timeout_ms (dev));
  if (err)
    return err;
  err = vu_recv_reply (dev->sock, VHOST_USER_GET_CONFIG, &cfg, 0, msg_size,
                       &got, handshake_reply_timeout_ms (dev));
  if (err)
    return err;
  if (got != msg_size || cfg.size != VIRTIO_BLK_CONFIG_SIZE || cfg.offset != 0)
    return set_error (EPROTO, "%s: GET_CONFIG answered %u bytes (size field "
                      "%u), expected %u", dev->socket_path, got, cfg.size,
                      msg_size);
  err = blk_config_parse (&parsed, cfg.data, cfg.size, dev->features);
  if (err)
    return err;
  /* Requests are cut in the first block size: it may not change (after a
   * reconnect, or announced by a config change), and the one in use is
   * kept for vublk_get_info. */
  if (dev->limits.blk_size && parsed.blk_size != dev->limits.blk_size)
    return set_error (EPROTO, "%s: backend now reports a block size of %u "
                      "bytes, %u before", dev->socket_path, parsed.blk_size,
                      dev->limits.blk_size);
  pthread_mutex_lock (&dev->info_lock);
  dev->cfg = parsed;
  pthread_mutex_unlock (&dev->info_lock);
  /* A last partial logical block cannot be read or written (requests
   * are whole blocks): the device ends before it, as in Linux. */
  size = parsed.capacity * SECTOR_SIZE / parsed.blk_size * parsed.blk_size;
  old_size = atomic_exchange (&dev->size, size);
  if (old_size && size != old_size)
    device_log (dev, VUBLK_LOG_INFO, "device size is now %llu bytes "
                "(was %llu)", (unsigned long long) size,
                (unsigned long long) old_size);
  return 0;
}

int
handshake_reply_timeout_ms (const struct vublk *dev)
{
  int ms = dev->opts.connect_timeout > 0
           ? (int) (dev->opts.connect_timeout * 1000) : 5000;

  if (dev->attempt_deadline_ns) {
    uint64_t now = now_ns (), left;

    left = dev->attempt_deadline_ns > now
           ? (dev->attempt_deadline_ns - now) / 1000000 : 0;
    if (left < 1)
      left = 1;   /* one last look, never a wait without end */
    if (left < (uint64_t) ms)
      ms = (int) left;
  }
  return ms;
}

/* Creates the backend channel (socketpair) and hands one end over, so the
 * backend can announce config changes (e.g. after block_resize). */
static int
setup_backend_channel (struct vublk *dev, int timeout)
{
  int sv[2], err;

  if (!has_protocol (dev, VHOST_USER_PROTOCOL_F_BACKEND_REQ))
    return 0;
  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
    return set_error_errno (errno, "socketpair for backend channel");
  err = vu_send_checked (dev->sock, VHOST_USER_SET_BACKEND_REQ_FD, NULL, 0,
                         &sv[1], 1, reply_ack (dev), timeout);
  close (sv[1]);
  if (err) {
    close (sv[0]);
    return err;
  }
  if (dev->backend_fd >= 0)
    close (dev->backend_fd);
  dev->backend_fd = sv[0];
  return 0;
}

/* Adds VIRTIO_F_RING_PACKED to dev->features when packed rings were
 * asked for; the default stays split, the one layout every backend serves
 * across reconnects (DPDK's vhost_blk example keeps its packed wrap
 * counter from one client to the next, so a second client whose lap
 * differs is never served).  Our packed rings use neither EVENT_IDX (only
 * the enable/disable flags) nor indirect descriptors: those are dropped
 * with them.  Returns 0 or -ENOTSUP when packed was asked for and not
 * offered. */
static int
choose_ring_layout (struct vublk *dev, uint64_t offered)
{
  bool can = offered & (1ull << VIRTIO_F_RING_PACKED);

  if (dev->opts.ring != VUBLK_RING_PACKED)
    return 0;
  if (!can)
    return set_error (ENOTSUP, "%s: backend does not offer packed "
                      "virtqueues (VIRTIO_F_RING_PACKED); use split rings",
                      dev->socket_path);
  dev->features |= 1ull << VIRTIO_F_RING_PACKED;
  dev->features &= ~((1ull << VIRTIO_RING_F_EVENT_IDX)
                     | (1ull << VIRTIO_RING_F_INDIRECT_DESC));
  return 0;
}

/* Fails a reconnect to a backend that no longer offers every feature
 * negotiated at the first connect, naming the missing ones.  Returns
 * -EPROTO with the error set. */
static int
refuse_fewer_features (struct vublk *dev, uint64_t offered,
                       uint64_t proto_offered)
{
  char virtio[256], protocol[256];

  feature_list (dev->features & ~offered & ~RO_FEATURE, false, virtio,
                sizeof virtio);
  feature_list (dev->protocol_features & ~proto_offered, true, protocol,
                sizeof protocol);
  return set_error (EPROTO, "%s: backend came back without features "
                    "negotiated at the first connect: %s%s%s%s",
                    dev->socket_path, virtio,
                    *virtio && *protocol ? "; " : "",
                    *protocol ? "vhost-user protocol " : "", protocol);
}

void
handshake_apply_readonly (struct vublk *dev)
{
  bool now = dev->offered_readonly;
  bool before = atomic_exchange (&dev->backend_readonly, now);

  if (now == before || dev->readonly)
    return;
  if (now)
    device_log (dev, VUBLK_LOG_WARNING, "backend came back read-only: "
                "writes fail with EROFS until it is writable again");
  else
    device_log (dev, VUBLK_LOG_WARNING, "backend came back writable: "
                "writes are accepted again");
}

/* Negotiates features; on a reconnect the backend must still offer what
 * was negotiated the first time (rings and memory are laid out for it),
 * except VIRTIO_BLK_F_RO, which follows the backend (dev->offered_readonly,
 * handshake_apply_readonly). */
static int
negotiate (struct vublk *dev, bool first, int timeout)
{
  uint64_t offered, proto_offered = 0, queues = 1;
  int err;

  err = vu_get_u64 (dev->sock, VHOST_USER_GET_FEATURES, &offered, timeout);
  if (err)
    return err;
  if (!(offered & (1ull << VIRTIO_F_VERSION_1)))
    return set_error (ENOTSUP, "%s: backend does not offer VIRTIO_F_VERSION_1",
                      dev->socket_path);
  if (offered & (1ull << VHOST_USER_F_PROTOCOL_FEATURES)) {
    err = vu_get_u64 (dev->sock, VHOST_USER_GET_PROTOCOL_FEATURES,
                      &proto_offered, timeout);
    if (err)
      return err;
  }
  if (!first && ((offered & dev->features & ~RO_FEATURE)
                 != (dev->features & ~RO_FEATURE)
                 || (proto_offered & dev->protocol_features)
                    != dev->protocol_features))
    return refuse_fewer_features (dev, offered, proto_offered);
  pthread_mutex_lock (&dev->info_lock);
  dev->backend_features = offered;
  dev->backend_protocol_features = proto_offered;
  pthread_mutex_unlock (&dev->info_lock);
  dev->offered_readonly = offered & RO_FEATURE;
  if (first) {
    atomic_store (&dev->backend_readonly, dev->offered_readonly);
    /* Tests switch features off to exercise the other code paths (no
     * indirect descriptors, no EVENT_IDX) against real backends. */
    const char *mask = getenv ("VUBLK_TEST_DISABLE_FEATURES");

    dev->features = offered & WANTED_FEATURES;
    if (mask)
      dev->features &= ~strtoull (mask, NULL, 0);
    err = choose_ring_layout (dev, offered);
    if (err)
      return err;
    dev->protocol_features = proto_offered & WANTED_PROTOCOL_FEATURES;
  }
  if (device_has (dev, VHOST_USER_F_PROTOCOL_FEATURES)) {
    err = vu_set_u64 (dev->sock, VHOST_USER_SET_PROTOCOL_FEATURES,
                      dev->protocol_features, false, timeout);
    if (err)
      return err;
  }
  if (has_protocol (dev, VHOST_USER_PROTOCOL_F_MQ)) {
    err = vu_get_u64 (dev->sock, VHOST_USER_GET_QUEUE_NUM, &queues, timeout);
    if (err)
      return err;
    if (queues == 0 || queues > 65535)
      return set_error (EPROTO, "%s: backend reports %llu queues",
                        dev->socket_path, (unsigned long long) queues);
  }
  err = vu_send (dev->sock, VHOST_USER_SET_OWNER, 0, NULL, 0, NULL, 0,
                 timeout);
  if (err)
    return err;
  err = setup_backend_channel (dev, timeout);
  if (err)
    return err;
  err = handshake_read_config (dev);
  if (err)
    return err;
  /* Without VIRTIO_BLK_F_MQ the device has exactly one request queue,
   * whatever GET_QUEUE_NUM says (DPDK's example answers 128 and serves
   * queue 0 only); blk_config_parse then reports num_queues 1. */
  if (dev->cfg.num_queues < queues) {
    if (!device_has (dev, VIRTIO_BLK_F_MQ)
        && device_first_time (dev, ONCE_QUEUE_NUM))
      device_log (dev, VUBLK_LOG_DEBUG, "backend reports %llu queues without "
                  "offering VIRTIO_BLK_F_MQ: using one",
                  (unsigned long long) queues);
    queues = dev->cfg.num_queues;
  }
  if (!first && queues < dev->nqueues)
    return set_error (EPROTO, "%s: backend came back with %llu queues, "
                      "%u in use", dev->socket_path,
                      (unsigned long long) queues, dev->nqueues);
  pthread_mutex_lock (&dev->info_lock);
  dev->backend_queues = queues;
  pthread_mutex_unlock (&dev->info_lock);
  /* RO is acknowledged only when offered now. */
  return vu_set_u64 (dev->sock, VHOST_USER_SET_FEATURES,
                     (dev->features & ~RO_FEATURE) | (offered & RO_FEATURE),
                     false, timeout);
}

/* Shares the memfd: ADD_MEM_REG when CONFIGURE_MEM_SLOTS was negotiated,
 * SET_MEM_TABLE otherwise.  gpa == uva == our mapping, so ring and buffer
 * addresses need no translation. */
int
handshake_share_memory (struct vublk *dev)
{
  int timeout = handshake_reply_timeout_ms (dev);
  struct vhost_user_mem_region region = {
    .guest_phys_addr = (uint64_t) (uintptr_t) dev->mem.base,
    .memory_size = dev->mem.size,
    .userspace_addr = (uint64_t) (uintptr_t) dev->mem.base,
    .mmap_offset = 0,
  };
  bool ack = reply_ack (dev);

  if (has_protocol (dev, VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS)
      && !getenv ("VUBLK_FORCE_MEM_TABLE")) {
    struct vhost_user_single_mem single = { .region = region };
    uint64_t slots;
    int err = vu_get_u64 (dev->sock, VHOST_USER_GET_MAX_MEM_SLOTS, &slots,
                          timeout);
    if (err)
      return err;
    if (slots < 1)
      return set_error (EPROTO, "%s: backend offers no memory slots",
                        dev->socket_path);
    return vu_send_checked (dev->sock, VHOST_USER_ADD_MEM_REG, &single,
                            sizeof single, &dev->mem.fd, 1, ack, timeout);
  }
  struct vhost_user_memory table = { .nregions = 1, .regions = { region } };
  return vu_send_checked (dev->sock, VHOST_USER_SET_MEM_TABLE, &table,
                          offsetof (struct vhost_user_memory, regions)
                          + sizeof region, &dev->mem.fd, 1, ack, timeout);
}

int
handshake_features_and_memory (struct vublk *dev, bool first)
{
  int timeout = handshake_reply_timeout_ms (dev), err;

  if (dev->sock >= 0) {
    close (dev->sock);
    dev->sock = -1;
  }
  err = connect_socket (dev, timeout);
  if (err)
    return err;
  err = negotiate (dev, first, timeout);
  if (err)
    return err;
  if (dev->mem.base)
    return handshake_share_memory (dev);
  return 0;
}

/* Sets up ring q: NUM, BASE, ADDR, CALL, KICK, ENABLE. */
static int
setup_ring (struct vublk *dev, struct vublk_queue *q, int timeout)
{
  struct vhost_user_vring_state num = { q->index, q->ring.num };
  struct vhost_user_vring_state base = { q->index, ring_base (&q->ring) };
  struct vhost_user_vring_addr addr = { .index = q->index, .flags = 0 };
  uint64_t idx = q->index;
  int err;

  ring_addresses (&q->ring, &addr.desc, &addr.avail, &addr.used);
  if ((err = vu_send (dev->sock, VHOST_USER_SET_VRING_NUM, 0, &num,
                      sizeof num, NULL, 0, timeout))
      || (err = vu_send (dev->sock, VHOST_USER_SET_VRING_BASE, 0, &base,
                         sizeof base, NULL, 0, timeout))
      || (err = vu_send (dev->sock, VHOST_USER_SET_VRING_ADDR, 0, &addr,
                         sizeof addr, NULL, 0, timeout))
      || (err = vu_send (dev->sock, VHOST_USER_SET_VRING_CALL, 0, &idx,
                         sizeof idx, &q->call_fd, 1, timeout))
      || (err = vu_send (dev->sock, VHOST_USER_SET_VRING_KICK, 0, &idx,
                         sizeof idx, &q->kick_fd, 1, timeout)))
    return err;
  if (device_has (dev, VHOST_USER_F_PROTOCOL_FEATURES)) {
    struct vhost_user_vring_state enable = { q->index, 1 };
    err = vu_send_checked (dev->sock, VHOST_USER_SET_VRING_ENABLE, &enable,
                           sizeof enable, NULL, 0, reply_ack (dev), timeout);
  }
  return err;
}

int
handshake_rings (struct vublk *dev)
{
  int timeout = handshake_reply_timeout_ms (dev), err;
  uint64_t features;

  for (unsigned i = 0; i < dev->nqueues; i++) {
    err = setup_ring (dev, &dev->queues[i], timeout);
    if (err)
      return err;
  }
  if (!reply_ack (dev)) {
    /* Without acks, a request with a reply is the barrier that tells us
     * the backend took every message before it. */
    err = vu_get_u64 (dev->sock, VHOST_USER_GET_FEATURES, &features, timeout);
    if (err)
      return err;
  }
  return 0;
}

void
handshake_stop_rings (struct vublk *dev)
{
  int timeout = 1000;

  if (dev->sock < 0)
    return;
  for (unsigned i = 0; i < dev->nqueues; i++) {
    struct vhost_user_vring_state st = { i, 0 };
    uint32_t got;

    if (device_has (dev, VHOST_USER_F_PROTOCOL_FEATURES)
        && vu_send_checked (dev->sock, VHOST_USER_SET_VRING_ENABLE, &st,
                            sizeof st, NULL, 0, reply_ack (dev), timeout))
      return;
    if (vu_send (dev->sock, VHOST_USER_GET_VRING_BASE, 0, &st, sizeof st,
                 NULL, 0, timeout)
        || vu_recv_reply (dev->sock, VHOST_USER_GET_VRING_BASE, &st,
                          sizeof st, sizeof st, &got, timeout))
      return;
  }
}

/* Reads one message from the backend channel and acts on it.  Returns
 * false if the control socket must be reconnected: reading a
 * configuration announced as changed failed (logged), and a reply may
 * still be on its way there. */
bool
handshake_backend_message (struct vublk *dev)
{
  struct vhost_user_header hdr;
  uint8_t payload[VHOST_USER_MAX_PAYLOAD];
  /* A message started is finished within the handshake's deadline: a
   * backend that sends part of one must not hold the control thread
   * (request timeouts, reconnects, vublk_close) for ever. */
  int err = vu_recv_message (dev->backend_fd, &hdr, payload, sizeof payload,
                             (int) (dev->opts.connect_timeout * 1000));

  if (err) {
    /* Closed, cut short or garbage: stop listening; the main socket
     * tells us if the backend is gone. */
    if (err == -ETIMEDOUT)
      device_log (dev, VUBLK_LOG_WARNING, "backend channel: a message was "
                  "cut short (nothing more within %g s); no longer "
                  "listening to it", dev->opts.connect_timeout);
    else if (err != -ECONNRESET && err != -ECANCELED)
      device_log (dev, VUBLK_LOG_WARNING, "backend channel: %s; no longer "
                  "listening to it", vublk_get_error ());
    close (dev->backend_fd);
    dev->backend_fd = -1;
    return true;
  }
  if (hdr.flags & VHOST_USER_NEED_REPLY_MASK) {
    struct {
      struct vhost_user_header h;
      uint64_t v;
    } __attribute__ ((packed)) reply = {
      { hdr.request, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK, 8 },
      hdr.request == VHOST_USER_BACKEND_CONFIG_CHANGE_MSG ? 0 : 1,
    };
    /* Never blocks: a backend that does not read its replies loses the
     * rest of them, not our control thread. */
    if (send (dev->backend_fd, &reply, sizeof reply,
              MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
      /* the backend is going away (the main socket reports it) or not
       * reading */
    }
  }
  if (hdr.request == VHOST_USER_BACKEND_CONFIG_CHANGE_MSG
      && (err = handshake_read_config (dev)) != 0
      && err != -ECANCELED && atomic_load (&dev->state) != DEV_CLOSING) {
    device_log (dev, VUBLK_LOG_WARNING, "backend announced a configuration "
                "change, and reading it failed (%s); reconnecting",
                vublk_get_error ());
    return false;
  }
  return true;
}
