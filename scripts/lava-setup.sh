#!/usr/bin/env bash
# Idempotent install of LAVA's dispatcher (lava-run) 2023.01
# from Debian 12 packages WITHOUT installing lava-dispatcher (which Depends on
# systemd-sysv, python3-guestfs -> libguestfs/supermin/linux-image, ...).
#
#  * apt-get download lava-dispatcher lava-common lava-dispatcher-host
#    (lava_dispatcher imports lava_dispatcher_host at module level, so the
#    host package's python code is needed; nothing of it is "installed").
#  * dpkg-deb -x into $ROOT/prefix
#  * python deps from Debian packages (none pulls systemd; checked with
#    apt-get install -s), run with Debian's /usr/bin/python3 (3.11).
#  * a stub `guestfs` module (lava_dispatcher imports guestfs at module level,
#    but only uses it for qcow2 overlays / apply-overlay-guest, which a
#    monitors-only job never runs).
#  * the job scratch dir (hard-coded /var/lib/lava/dispatcher/tmp) is made
#    overridable by $LAVA_DISPATCHER_DOWNLOAD_DIR (default $ROOT/var/tmp).
#
# Prints the path of the lava-run wrapper on its last line.
set -euo pipefail

ROOT=${LAB_LAVA_DIR:-/opt/lab-lava}
VER=2023.01-2
PREFIX=$ROOT/prefix
SITE=$PREFIX/usr/lib/python3/dist-packages
PY=/usr/bin/python3            # Debian's python: the python3-* debs live here
export DEBIAN_FRONTEND=noninteractive

mkdir -p "$ROOT/debs" "$ROOT/stubs" "$ROOT/var/tmp"

# 1. Python deps + tools (no systemd in the closure; refuse if it would be).
PKGS="python3-aiohttp python3-configobj python3-jinja2 python3-magic
      python3-netifaces python3-pexpect python3-pyudev python3-requests
      python3-setproctitle python3-tz python3-yaml python3-voluptuous
      file qemu-system-x86"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if ! apt-cache show python3-voluptuous >/dev/null 2>&1; then apt-get update -qq; fi
  # shellcheck disable=SC2086
  if apt-get install -s --no-install-recommends $missing | grep -E '^Inst (systemd|systemd-sysv|libguestfs)' ; then
    echo "refusing: installing$missing would pull systemd/libguestfs" >&2; exit 1
  fi
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# 2. Download + extract the LAVA debs (pinned version).
for p in lava-common lava-dispatcher lava-dispatcher-host; do
  deb="$ROOT/debs/${p}_${VER}_all.deb"
  if [ ! -s "$deb" ]; then
    (cd "$ROOT/debs" && apt-get download -q "$p=$VER" 2>/dev/null) ||
      { apt-get update -qq; (cd "$ROOT/debs" && apt-get download -q "$p=$VER"); }
  fi
done
stamp="$PREFIX/.extracted-$VER"
if [ ! -e "$stamp" ]; then
  rm -rf "$PREFIX"
  for p in lava-common lava-dispatcher lava-dispatcher-host; do
    dpkg-deb -x "$ROOT/debs/${p}_${VER}_all.deb" "$PREFIX"
  done
  # make the hard-coded scratch dir overridable (idempotent: runs once per extract)
  sed -i 's|^DISPATCHER_DOWNLOAD_DIR = "/var/lib/lava/dispatcher/tmp"$|import os as _os\nDISPATCHER_DOWNLOAD_DIR = _os.environ.get("LAVA_DISPATCHER_DOWNLOAD_DIR", "/var/lib/lava/dispatcher/tmp").rstrip("/")|' \
    "$SITE/lava_common/constants.py"
  grep -q LAVA_DISPATCHER_DOWNLOAD_DIR "$SITE/lava_common/constants.py"
  touch "$stamp"
fi

# 3. guestfs stub (only reached by qcow2/guestfs overlay code paths).
cat > "$ROOT/stubs/guestfs.py" <<'EOF'
# Stub: python3-guestfs is not installed (it drags libguestfs, supermin, a
# kernel image and systemd). lava_dispatcher imports it at module level but
# only calls it for deploy actions that build a qcow2 test overlay.
class GuestFS:
    def __init__(self, *a, **k):
        raise RuntimeError("python3-guestfs is not installed (stub); this job needs a guestfs overlay")
EOF

# 4. Wrapper.
cat > "$ROOT/lava-run" <<EOF
#!/bin/sh
# lava-run 2023.01 from $PREFIX (must run as root: lava-run checks euid 0).
export PYTHONPATH="$SITE:$ROOT/stubs\${PYTHONPATH:+:\$PYTHONPATH}"
export LAVA_DISPATCHER_DOWNLOAD_DIR="\${LAVA_DISPATCHER_DOWNLOAD_DIR:-$ROOT/var/tmp}"
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:\$PATH"
exec $PY -s $PREFIX/usr/bin/lava-run "\$@"
EOF
chmod +x "$ROOT/lava-run"

# 5. Smoke: imports resolve.
PYTHONPATH="$SITE:$ROOT/stubs" $PY -s -c 'import lava_dispatcher.parser, lava_dispatcher.actions.deploy.image, lava_dispatcher.actions.boot.qemu, lava_dispatcher.actions.test.monitor' 

echo "$ROOT/lava-run"
