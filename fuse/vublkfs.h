/* vublkfs.h — what vublk-fuse's parts share: the mounted device's state
 * and the FUSE low-level operations that serve it. */
#ifndef VUBLKFS_H
#define VUBLKFS_H

#define FUSE_USE_VERSION 312

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "vublk.h"

/* Inode of the disk file: the root itself when mounted over a file. */
#define VUBLKFS_DIR_DISK_INO 2

struct vublkfs {
  struct vublk *dev;              /* the one shared connection */
  struct vublk_info info;         /* as negotiated at mount time */
  bool readonly;                  /* -r, or the device is read-only */
  bool cache;                     /* --cache: page cache instead of direct */
  bool root_is_file;              /* mounted over a regular file */
  uint64_t init_unique;           /* INIT awaiting the shared-mmap flag */
  const char *filename;           /* the disk's name in directory mode */
  const char *socket_path;        /* for messages */
  /* Request buffers come from the shared pool (zero copy) while they
   * hold at most half of it; the rest stays for the bounce buffers and
   * edge blocks the library needs, so a request never waits for memory
   * that only our own waiting requests hold. */
  _Atomic uint64_t pool_held;
  /* When a write or fallocate last changed the disk (CLOCK_REALTIME ns,
   * 0: not since the times were last set): its mtime and ctime follow,
   * so tools that compare times (cp -u, rsync, make) see the change. */
  _Atomic int64_t modified_ns;
  /* Requests submitted to the device and not yet answered (io.c). */
  _Atomic unsigned io_in_flight;

  pthread_mutex_t attr_lock;      /* protects the fields below */
  mode_t mode;                    /* permission bits of the disk file */
  mode_t dir_mode;                /* permission bits of the directory */
  uid_t uid;
  gid_t gid;
  struct timespec atime, mtime, ctime;
};

/* Notes that the disk's contents changed just now (io.c, on writes and
 * fallocate that succeeded). */
void vublkfs_note_modified (struct vublkfs *fs);

/* Makes the calling loop thread submit its requests on tq, a queue it
 * drives (NULL: the shared queues). */
void vublkfs_drive (struct vublk_tq *tq);

/* Returns once every request submitted to the device has been answered:
 * each ends, answered or failed by the device's request timeout.  For the
 * flush at exit, which covers only writes completed before it. */
void vublkfs_wait_answered (struct vublkfs *fs);

/* The low-level operations; userdata of the session is a struct vublkfs. */
extern const struct fuse_lowlevel_ops vublkfs_ops;

/* Data path (io.c): read, write, fsync, fallocate, answered from the
 * device's completion callbacks so no thread waits per request. */
void vublkfs_read (fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                   struct fuse_file_info *fi);
void vublkfs_write (fuse_req_t req, fuse_ino_t ino, const char *buf,
                    size_t size, off_t off, struct fuse_file_info *fi);
void vublkfs_fsync (fuse_req_t req, fuse_ino_t ino, int datasync,
                    struct fuse_file_info *fi);
void vublkfs_fallocate (fuse_req_t req, fuse_ino_t ino, int mode,
                        off_t offset, off_t length,
                        struct fuse_file_info *fi);

/* Changes to the names (namespace.c): refused, EPERM (EROFS read-only):
 * a directory mount holds the disk and nothing else. */
void vublkfs_create (fuse_req_t req, fuse_ino_t parent, const char *name,
                     mode_t mode, struct fuse_file_info *fi);
void vublkfs_mknod (fuse_req_t req, fuse_ino_t parent, const char *name,
                    mode_t mode, dev_t rdev);
void vublkfs_mkdir (fuse_req_t req, fuse_ino_t parent, const char *name,
                    mode_t mode);
void vublkfs_symlink (fuse_req_t req, const char *link, fuse_ino_t parent,
                      const char *name);
void vublkfs_link (fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
                   const char *newname);
void vublkfs_unlink (fuse_req_t req, fuse_ino_t parent, const char *name);
void vublkfs_rmdir (fuse_req_t req, fuse_ino_t parent, const char *name);
void vublkfs_rename (fuse_req_t req, fuse_ino_t parent, const char *name,
                     fuse_ino_t newparent, const char *newname,
                     unsigned flags);

/* Makes the kernel allow mmap(MAP_SHARED) of the file opened for direct
 * I/O (FUSE_DIRECT_IO_ALLOW_MMAP, kernel 6.6+; older kernels ignore it).
 * Call on a mounted session before serving it.  Returns 0 or -errno. */
int vublkfs_allow_shared_mmap (struct fuse_session *se);

/* True if ino names the disk file (as opposed to the directory). */
bool vublkfs_is_disk (const struct vublkfs *fs, fuse_ino_t ino);

#endif
