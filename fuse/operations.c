/* operations.c — vublk-fuse's namespace: one regular file (the root
 * itself when mounted over a file, or the single entry of the mounted
 * directory), its attributes, open, statfs; and the connection setup. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vublkfs.h"

/* INIT flag (kernel 6.6+, FUSE protocol 7.39; called FUSE_DIRECT_IO_RELAX
 * in 6.6): files opened with direct I/O may still be mapped shared. */
#ifndef FUSE_DIRECT_IO_ALLOW_MMAP
#define FUSE_DIRECT_IO_ALLOW_MMAP (1ULL << 36)
#endif

/* Attributes may change (backend resize), so the kernel rechecks them. */
#define ATTR_TIMEOUT 1.0

bool
vublkfs_is_disk (const struct vublkfs *fs, fuse_ino_t ino)
{
  return fs->root_is_file ? ino == FUSE_ROOT_ID : ino == VUBLKFS_DIR_DISK_INO;
}

/* Sets *time to t if t is later. */
static void
keep_later (struct timespec *time, struct timespec t)
{
  if (t.tv_sec > time->tv_sec
      || (t.tv_sec == time->tv_sec && t.tv_nsec > time->tv_nsec))
    *time = t;
}

/* Fills *st for ino; returns false if ino is unknown. */
static bool
fill_stat (struct vublkfs *fs, fuse_ino_t ino, struct stat *st)
{
  memset (st, 0, sizeof *st);
  pthread_mutex_lock (&fs->attr_lock);
  st->st_uid = fs->uid;
  st->st_gid = fs->gid;
  st->st_atim = fs->atime;
  st->st_mtim = fs->mtime;
  st->st_ctim = fs->ctime;
  if (vublkfs_is_disk (fs, ino)) {
    int64_t m = atomic_load (&fs->modified_ns);

    if (m) {
      struct timespec t = { m / 1000000000, m % 1000000000 };

      keep_later (&st->st_mtim, t);
      keep_later (&st->st_ctim, t);
    }
    uint64_t size = vublk_get_size (fs->dev);

    st->st_ino = ino;
    st->st_mode = S_IFREG | fs->mode;
    st->st_nlink = 1;
    st->st_size = size;
    st->st_blksize = fs->info.logical_block_size;
    st->st_blocks = (size + 511) / 512;
  }
  else if (!fs->root_is_file && ino == FUSE_ROOT_ID) {
    st->st_ino = ino;
    st->st_mode = S_IFDIR | fs->dir_mode;
    st->st_nlink = 2;
    st->st_size = 0;
    st->st_blksize = 4096;
  }
  else {
    pthread_mutex_unlock (&fs->attr_lock);
    return false;
  }
  pthread_mutex_unlock (&fs->attr_lock);
  return true;
}

/* Large requests, many of them in the background, asynchronous direct
 * I/O, and shared mmap of the direct-I/O file (see
 * vublkfs_allow_shared_mmap).  Not ATOMIC_O_TRUNC, which libfuse asks
 * for by default: with it the kernel takes an O_TRUNC open for a
 * truncation done, sets the file's size to 0 and drops its cached and
 * mapped pages, and until the next stat an O_APPEND write lands at offset
 * 0, an asynchronous direct read returns nothing and a mapping faults
 * with SIGBUS.  Without it the kernel asks for the truncation as a
 * setattr (vublkfs_setattr ignores it, as a block device does). */
static void
vublkfs_init (void *userdata, struct fuse_conn_info *conn)
{
  (void) userdata;
  conn->max_write = 1 << 20;
  conn->max_background = 128;
  conn->congestion_threshold = 96;
  conn->want |= conn->capable & (FUSE_CAP_ASYNC_DIO | FUSE_CAP_ASYNC_READ);
#ifdef FUSE_CAP_DIRECT_IO_ALLOW_MMAP
  conn->want |= conn->capable & FUSE_CAP_DIRECT_IO_ALLOW_MMAP;
#endif
  conn->want &= ~(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_AUTO_INVAL_DATA
                  | FUSE_CAP_ATOMIC_O_TRUNC);
}

/* Shared mmap of a direct-I/O file.  The kernel refuses mmap(MAP_SHARED)
 * of a file opened with FOPEN_DIRECT_IO (ENODEV) unless the server set
 * FUSE_DIRECT_IO_ALLOW_MMAP in its INIT reply.  libfuse learnt to ask for
 * it in 3.16 (FUSE_CAP_DIRECT_IO_ALLOW_MMAP, used in vublkfs_init);
 * Debian 12 ships 3.14, whose INIT reply carries the second flags word
 * (flags2, where the bit lives) but has no way to set the bit.  Its public
 * custom-I/O hook (fuse_session_custom_io, 3.14+) lets us see the raw
 * requests and replies, so on such a libfuse we remember the unique of
 * each INIT request that offers the flag and set the bit in the reply to
 * it; every other message passes untouched.  The alternatives were worse:
 * giving up direct I/O (the page cache would then hold a second copy of
 * the disk and reads would no longer see the backend), or answering INIT
 * ourselves behind libfuse's back.
 *
 * What the kernel then keeps coherent (fs/fuse/file.c, 6.6 and later):
 * mmap invalidates the file's cached pages; a direct read or write first
 * writes back dirty mapped pages in its range, and a direct write then
 * invalidates (and unmaps) the cached pages in its range, so the map
 * faults the new data in from us afterwards.  Not covered: a page faulted
 * in while a direct write to it is still in flight may keep the old data
 * until the next invalidation; and changes made by anyone else to the
 * backend are not seen through an existing map (as with any cached
 * page). */
#ifndef FUSE_CAP_DIRECT_IO_ALLOW_MMAP
/* Reads one message from /dev/fuse, noting an INIT that offers the flag. */
static ssize_t
init_patch_read (int fd, void *buf, size_t len, void *userdata)
{
  struct vublkfs *fs = userdata;
  ssize_t n = read (fd, buf, len);
  const struct fuse_in_header *in = buf;
  const struct fuse_init_in *arg = (const void *) (in + 1);

  if (n >= (ssize_t) (sizeof *in + offsetof (struct fuse_init_in, unused))
      && in->opcode == FUSE_INIT && arg->major == 7
      && (arg->flags & FUSE_INIT_EXT)
      && (arg->flags2 & (FUSE_DIRECT_IO_ALLOW_MMAP >> 32)))
    __atomic_store_n (&fs->init_unique, in->unique, __ATOMIC_RELEASE);
  return n;
}

/* Writes one reply to /dev/fuse, adding the flag to the reply of a
 * remembered INIT that libfuse answered with the extended flags. */
static ssize_t
init_patch_writev (int fd, struct iovec *iov, int count, void *userdata)
{
  struct vublkfs *fs = userdata;
  uint64_t want = __atomic_load_n (&fs->init_unique, __ATOMIC_ACQUIRE);
  const struct fuse_out_header *out = iov[0].iov_base;
  struct fuse_init_out reply;
  struct iovec patched[2];

  if (!want || count != 2 || iov[0].iov_len != sizeof *out
      || out->unique != want || out->error != 0
      || iov[1].iov_len < offsetof (struct fuse_init_out, unused)
      || iov[1].iov_len > sizeof reply)
    return writev (fd, iov, count);
  __atomic_store_n (&fs->init_unique, 0, __ATOMIC_RELEASE);
  memset (&reply, 0, sizeof reply);
  memcpy (&reply, iov[1].iov_base, iov[1].iov_len);
  if (reply.flags & FUSE_INIT_EXT)
    reply.flags2 |= FUSE_DIRECT_IO_ALLOW_MMAP >> 32;
  patched[0] = iov[0];
  patched[1] = (struct iovec) { .iov_base = &reply, .iov_len = iov[1].iov_len };
  return writev (fd, patched, 2);
}
#endif

int
vublkfs_allow_shared_mmap (struct fuse_session *se)
{
#ifdef FUSE_CAP_DIRECT_IO_ALLOW_MMAP
  (void) se;
  return 0;
#else
  static const struct fuse_custom_io io = {
    .read = init_patch_read,
    .writev = init_patch_writev,
  };

  return fuse_session_custom_io (se, &io, fuse_session_fd (se));
#endif
}

static void
vublkfs_lookup (fuse_req_t req, fuse_ino_t parent, const char *name)
{
  struct vublkfs *fs = fuse_req_userdata (req);
  struct fuse_entry_param e;

  if (fs->root_is_file || parent != FUSE_ROOT_ID
      || strcmp (name, fs->filename)) {
    fuse_reply_err (req, ENOENT);
    return;
  }
  memset (&e, 0, sizeof e);
  e.ino = VUBLKFS_DIR_DISK_INO;
  e.generation = 1;
  e.attr_timeout = ATTR_TIMEOUT;
  e.entry_timeout = ATTR_TIMEOUT;
  fill_stat (fs, e.ino, &e.attr);
  fuse_reply_entry (req, &e);
}

static void
vublkfs_getattr (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  struct vublkfs *fs = fuse_req_userdata (req);
  struct stat st;

  (void) fi;
  if (!fill_stat (fs, ino, &st))
    fuse_reply_err (req, ENOENT);
  else
    fuse_reply_attr (req, &st, ATTR_TIMEOUT);
}

/* Returns the time a setattr asks for: now, or the given one. */
static struct timespec
chosen_time (int to_set, int set_now, const struct timespec *given)
{
  struct timespec now;

  if (to_set & set_now) {
    clock_gettime (CLOCK_REALTIME, &now);
    return now;
  }
  return *given;
}

/* True if a setattr may be the truncation of an O_TRUNC open: size 0
 * with no file handle.  The kernel sends truncate(2) by path to 0 the same
 * way, so that is ignored too; ftruncate carries a file handle. */
static bool
is_open_truncation (const struct stat *attr, int to_set,
                    const struct fuse_file_info *fi)
{
  return (to_set & FUSE_SET_ATTR_SIZE) && attr->st_size == 0 && !fi;
}

/* Mode, owner and times are kept in memory.  The size is the device's:
 * the truncation of an O_TRUNC open is ignored, as for a block device
 * (the reply carries the real size, so the kernel keeps its pages);
 * any other size change fails with EPERM and a message. */
static void
vublkfs_setattr (fuse_req_t req, fuse_ino_t ino, struct stat *attr,
                 int to_set, struct fuse_file_info *fi)
{
  struct vublkfs *fs = fuse_req_userdata (req);
  bool disk = vublkfs_is_disk (fs, ino);

  if (to_set & FUSE_SET_ATTR_SIZE) {
    uint64_t size = vublk_get_size (fs->dev);

    if (!disk) {
      fuse_reply_err (req, EISDIR);
      return;
    }
    /* A read-only device under a mount the kernel thinks writable
     * (-r -o rw) refuses even the truncation it would ignore. */
    if (fs->readonly) {
      fuse_reply_err (req, EROFS);
      return;
    }
    if ((uint64_t) attr->st_size != size
        && !is_open_truncation (attr, to_set, fi)) {
      fuse_log (FUSE_LOG_ERR, "vublk-fuse: %s: cannot change the size to "
                "%lld bytes: a vhost-user-blk device has a fixed size "
                "(%llu bytes)\n", fs->socket_path,
                (long long) attr->st_size, (unsigned long long) size);
      fuse_reply_err (req, EPERM);
      return;
    }
  }
  pthread_mutex_lock (&fs->attr_lock);
  if (to_set & FUSE_SET_ATTR_MODE) {
    if (disk)
      fs->mode = attr->st_mode & 07777;
    else
      fs->dir_mode = attr->st_mode & 07777;
  }
  if (to_set & FUSE_SET_ATTR_UID)
    fs->uid = attr->st_uid;
  if (to_set & FUSE_SET_ATTR_GID)
    fs->gid = attr->st_gid;
  if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW))
    fs->atime = chosen_time (to_set, FUSE_SET_ATTR_ATIME_NOW, &attr->st_atim);
  if (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)) {
    fs->mtime = chosen_time (to_set, FUSE_SET_ATTR_MTIME_NOW, &attr->st_mtim);
    atomic_store (&fs->modified_ns, 0);   /* the time set wins, until a write */
  }
  clock_gettime (CLOCK_REALTIME, &fs->ctime);
  pthread_mutex_unlock (&fs->attr_lock);
  vublkfs_getattr (req, ino, fi);
}

/* Direct I/O unless --cache (shared mmap works either way, see
 * vublkfs_allow_shared_mmap); writes to a read-only device fail here with
 * EROFS.  O_TRUNC never reaches open: the kernel sends it as a setattr
 * (vublkfs_setattr ignores it). */
static void
vublkfs_open (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  struct vublkfs *fs = fuse_req_userdata (req);

  if (!vublkfs_is_disk (fs, ino)) {
    fuse_reply_err (req, EISDIR);
    return;
  }
  if ((fi->flags & O_ACCMODE) != O_RDONLY && fs->readonly) {
    fuse_reply_err (req, EROFS);
    return;
  }
  fi->direct_io = !fs->cache;
  fi->keep_cache = fs->cache;
  fi->noflush = 1;
  fuse_reply_open (req, fi);
}

/* close() needs no device work: fsync is what flushes. */
static void
vublkfs_flush (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  (void) ino;
  (void) fi;
  fuse_reply_err (req, 0);
}

static void
vublkfs_opendir (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  struct vublkfs *fs = fuse_req_userdata (req);

  if (fs->root_is_file || ino != FUSE_ROOT_ID)
    fuse_reply_err (req, ENOTDIR);
  else
    fuse_reply_open (req, fi);
}

/* Adds one entry to buf (of cap bytes, used *len) if it fits; returns
 * false when it does not. */
static bool
add_entry (fuse_req_t req, char *buf, size_t cap, size_t *len,
           const char *name, fuse_ino_t ino, mode_t type, off_t next)
{
  struct stat st = { .st_ino = ino, .st_mode = type };
  size_t need = fuse_add_direntry (req, NULL, 0, name, NULL, 0);

  if (*len + need > cap)
    return false;
  fuse_add_direntry (req, buf + *len, cap - *len, name, &st, next);
  *len += need;
  return true;
}

/* The directory holds ".", ".." and the disk file. */
static void
vublkfs_readdir (fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                 struct fuse_file_info *fi)
{
  struct vublkfs *fs = fuse_req_userdata (req);
  char buf[1024];
  size_t len = 0, cap = size < sizeof buf ? size : sizeof buf;

  (void) fi;
  if (fs->root_is_file || ino != FUSE_ROOT_ID) {
    fuse_reply_err (req, ENOTDIR);
    return;
  }
  if (off < 1 && !add_entry (req, buf, cap, &len, ".", FUSE_ROOT_ID,
                             S_IFDIR, 1))
    goto out;
  if (off < 2 && !add_entry (req, buf, cap, &len, "..", FUSE_ROOT_ID,
                             S_IFDIR, 2))
    goto out;
  if (off < 3)
    add_entry (req, buf, cap, &len, fs->filename, VUBLKFS_DIR_DISK_INO,
               S_IFREG, 3);
 out:
  fuse_reply_buf (req, buf, len);
}

/* The "file system" is exactly the device: its blocks, none free. */
static void
vublkfs_statfs (fuse_req_t req, fuse_ino_t ino)
{
  struct vublkfs *fs = fuse_req_userdata (req);
  uint32_t bsize = fs->info.logical_block_size;
  struct statvfs sv;

  (void) ino;
  memset (&sv, 0, sizeof sv);
  sv.f_bsize = bsize;
  sv.f_frsize = bsize;
  sv.f_blocks = vublk_get_size (fs->dev) / bsize;
  sv.f_files = fs->root_is_file ? 1 : 2;
  sv.f_namemax = 255;
  if (fs->readonly)
    sv.f_flag |= ST_RDONLY;
  fuse_reply_statfs (req, &sv);
}

const struct fuse_lowlevel_ops vublkfs_ops = {
  .init = vublkfs_init,
  .lookup = vublkfs_lookup,
  .getattr = vublkfs_getattr,
  .setattr = vublkfs_setattr,
  .open = vublkfs_open,
  .flush = vublkfs_flush,
  .read = vublkfs_read,
  .write = vublkfs_write,
  .fsync = vublkfs_fsync,
  .fallocate = vublkfs_fallocate,
  .opendir = vublkfs_opendir,
  .readdir = vublkfs_readdir,
  .statfs = vublkfs_statfs,
  .create = vublkfs_create,
  .mknod = vublkfs_mknod,
  .mkdir = vublkfs_mkdir,
  .symlink = vublkfs_symlink,
  .link = vublkfs_link,
  .unlink = vublkfs_unlink,
  .rmdir = vublkfs_rmdir,
  .rename = vublkfs_rename,
};
