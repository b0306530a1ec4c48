/* vhost_user.h — the vhost-user wire format a frontend speaks (message
 * codes, header, payloads, feature bits) and the framing functions of
 * message.c.  Only the protocol: a test backend can include this alone
 * (with the kernel's <linux/virtio_*.h> for the virtio side).  What each
 * field means, and the habits of real backends: docs/protocol.md.
 */
#ifndef VUBLK_VHOST_USER_H
#define VUBLK_VHOST_USER_H

#include <stdbool.h>
#include <stdint.h>

/* The virtio feature bit that says vhost-user protocol features exist. */
#define VHOST_USER_F_PROTOCOL_FEATURES 30

/* qemu's server takes at most this many fds, and only with the header. */
#define MAX_FDS_PER_MSG 8

/* Protocol feature bits this client knows. */
#define VHOST_USER_PROTOCOL_F_MQ 0
#define VHOST_USER_PROTOCOL_F_REPLY_ACK 3
#define VHOST_USER_PROTOCOL_F_BACKEND_REQ 5
#define VHOST_USER_PROTOCOL_F_CONFIG 9
#define VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS 15

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
 * qemu's server takes fds only with the header; only when the socket is
 * full does the rest follow, once it drains, within timeout_ms (-1: no
 * deadline).  Returns 0, -ETIMEDOUT (the backend stopped reading),
 * -ECANCELED (see vu_set_cancel_fd) or -errno. */
int vu_send (int sock, uint32_t request, uint32_t flags,
             const void *payload, uint32_t size, const int *fds, int nfds,
             int timeout_ms);

/* Checks a reply header against the request sent: flags exactly
 * VERSION|REPLY, same request code, size == expected_size (or, when
 * expected_size is 0, any size up to max_size).  Returns 0 or -EPROTO
 * with the error set. */
int vu_check_reply_header (const struct vhost_user_header *hdr,
                           uint32_t request, uint32_t expected_size,
                           uint32_t max_size);

/* Receives one message the backend sent on its own (the backend channel)
 * within timeout_ms: its header into *hdr, its payload into payload
 * (capacity payload_size), closing any fds the peer attached.  Returns 0
 * or -errno (-ETIMEDOUT, -ECANCELED, -ECONNRESET, -EPROTO for a payload
 * larger than payload_size). */
int vu_recv_message (int sock, struct vhost_user_header *hdr, void *payload,
                     size_t payload_size, int timeout_ms);

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

#endif /* VUBLK_VHOST_USER_H */
