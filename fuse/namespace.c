/* namespace.c — changes to the mount's names, all refused: a directory
 * mount holds exactly one file, the disk.  Without these the kernel
 * answers ENOSYS ("Function not implemented"), as if the operation were
 * missing; the answer is EPERM, or EROFS on a read-only mount, as a
 * file system with a fixed set of names gives. */
#include <errno.h>

#include "vublkfs.h"

/* Answers req with the error a change to the names gets. */
static void
refuse (fuse_req_t req)
{
  const struct vublkfs *fs = fuse_req_userdata (req);

  fuse_reply_err (req, fs->readonly ? EROFS : EPERM);
}

void
vublkfs_create (fuse_req_t req, fuse_ino_t parent, const char *name,
                mode_t mode, struct fuse_file_info *fi)
{
  (void) parent, (void) name, (void) mode, (void) fi;
  refuse (req);
}

void
vublkfs_mknod (fuse_req_t req, fuse_ino_t parent, const char *name,
               mode_t mode, dev_t rdev)
{
  (void) parent, (void) name, (void) mode, (void) rdev;
  refuse (req);
}

void
vublkfs_mkdir (fuse_req_t req, fuse_ino_t parent, const char *name,
               mode_t mode)
{
  (void) parent, (void) name, (void) mode;
  refuse (req);
}

void
vublkfs_symlink (fuse_req_t req, const char *link, fuse_ino_t parent,
                 const char *name)
{
  (void) link, (void) parent, (void) name;
  refuse (req);
}

void
vublkfs_link (fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
              const char *newname)
{
  (void) ino, (void) newparent, (void) newname;
  refuse (req);
}

void
vublkfs_unlink (fuse_req_t req, fuse_ino_t parent, const char *name)
{
  (void) parent, (void) name;
  refuse (req);
}

void
vublkfs_rmdir (fuse_req_t req, fuse_ino_t parent, const char *name)
{
  (void) parent, (void) name;
  refuse (req);
}

void
vublkfs_rename (fuse_req_t req, fuse_ino_t parent, const char *name,
                fuse_ino_t newparent, const char *newname, unsigned flags)
{
  (void) parent, (void) name, (void) newparent, (void) newname, (void) flags;
  refuse (req);
}
