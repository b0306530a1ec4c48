/* abi_client — a program built against a released vublk.h (the include
 * path picks the snapshot), run with today's library: options set by
 * field and by name, open, info, a read and a write that reads back. */
#include <stdio.h>
#include <string.h>
#include <vublk.h>

int
main (int argc, char **argv)
{
  struct vublk_options o;
  struct vublk_info info;
  struct vublk *dev;
  char buf[4096], back[4096];

  if (argc != 2)
    return 2;
  vublk_options_init (&o);
  o.queue_size = 128;
  if (vublk_options_set (&o, "reconnect-timeout", "5") != 0
      || vublk_options_set (&o, "queues", "1") != 0) {
    fprintf (stderr, "abi_client: %s\n", vublk_get_error ());
    return 1;
  }
  if (!(dev = vublk_open (argv[1], &o))) {
    fprintf (stderr, "abi_client: %s\n", vublk_get_error ());
    return 1;
  }
  memset (&info, 0xff, sizeof info);
  vublk_get_info (dev, &info);
  if (info.queue_size != 128 || info.num_queues != 1 || info.size == 0
      || info.logical_block_size < 512) {
    fprintf (stderr, "abi_client: info disagrees: queue size %u, %u queues, "
             "%llu bytes\n", info.queue_size, info.num_queues,
             (unsigned long long) info.size);
    return 1;
  }
  memset (buf, 0xa5, sizeof buf);
  if (vublk_pwrite (dev, buf, sizeof buf, 8192, 0) != (ssize_t) sizeof buf
      || vublk_pread (dev, back, sizeof back, 8192) != (ssize_t) sizeof back
      || memcmp (buf, back, sizeof buf)) {
    fprintf (stderr, "abi_client: I/O: %s\n", vublk_get_error ());
    return 1;
  }
  printf ("abi_client %d.%d: libvublk %s, %llu bytes\n", VUBLK_VERSION_MAJOR,
          VUBLK_VERSION_MINOR, vublk_version (),
          (unsigned long long) info.size);
  vublk_close (dev);
  return 0;
}
