#!/usr/bin/env bash
# Remote use: nbdkit vhostuser over TCP on 127.0.0.1 with TLS required and
# a pre-shared key; nbdinfo and nbdcopy read it with the key, a client
# without TLS or with a wrong key is refused.
. "$(dirname "$0")/lib.sh"
requires qemu-storage-daemon nbdkit nbdinfo nbdcopy psktool cmp
if plugin_is_instrumented; then
  echo "SKIP: plugin is sanitizer-instrumented; nbdkit is not" >&2
  exit 77
fi

make_random_image "$T/disk.img" 8M
start_qsd "$T/disk.img" "$T/v.sock"
psktool -u alice -p "$T/keys.psk" >/dev/null
psktool -u alice -p "$T/wrong.psk" >/dev/null

start_nbdkit_tcp nbdkit "nbds://alice@127.0.0.1:PORT/?tls-psk-file=$T/keys.psk" \
  --tls=require --tls-psk="$T/keys.psk" "$VUBLK_PLUGIN" socket="$T/v.sock"
port=$TCP_PORT uri=$TCP_URI
nbdinfo --size "$uri" >"$T/size" 2>/dev/null || true
[[ $(cat "$T/size") == $((8 << 20)) ]] || fail "size over TLS: $(cat "$T/size"); $(cat "$T/nbdkit.log")"
nbdcopy "$uri" "$T/copy.raw" || fail "nbdcopy over TLS"
cmp "$T/disk.img" "$T/copy.raw" || fail "data over TLS differs"

# Writes over TLS reach the device.
make_random_image "$T/new.img" 8M
nbdcopy "$T/new.img" "$uri" || fail "nbdcopy into the export over TLS"
cmp "$T/disk.img" "$T/new.img" || fail "written data differs"

# Refused: plain NBD, and a wrong key.
if nbdinfo --size "nbd://127.0.0.1:$port/" >/dev/null 2>&1; then
  fail "a client without TLS was served"
fi
if nbdinfo --size "nbds://alice@127.0.0.1:$port/?tls-psk-file=$T/wrong.psk" >/dev/null 2>&1; then
  fail "a client with the wrong key was served"
fi
echo PASS
