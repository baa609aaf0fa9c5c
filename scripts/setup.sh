#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian 12 machine for `lab`: Debian packages, the arm64 multiarch
# packages the guest image needs, and the rustup targets for the static guest programs.
# Safe to run again: every step checks before it acts. Called by `make setup`, which the README's
# two commands run first.
set -euo pipefail

# The pinned kernel source. kernels/debian-6.12.toml records the tarball's sha256; lab verifies it.
LINUX_SOURCE_VERSION="6.12.117-1~deb12u1"

APT_PACKAGES=(
  build-essential bc bison flex libelf-dev libssl-dev ccache kmod cpio python3 perl git
  gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu libc6-dev-arm64-cross
  qemu-system-x86 qemu-system-arm
  "linux-source-6.12=${LINUX_SOURCE_VERSION}"
  dropbear-bin busybox-static openssh-client rsync
  chromium fonts-dejavu-core
)

# Packages fetched as .deb files (not installed) for the guest image, per Debian arch.
GUEST_DEBS=(dropbear-bin libc6 libcrypt1 libtomcrypt1 libtommath1 zlib1g libgmp10 busybox-static rt-tests libnuma1)

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

log() { printf 'setup: %s\n' "$*" >&2; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  name=${p%%=*}
  want=${p#*=}
  have=$(dpkg-query -W -f='${Status} ${Version}' "$name" 2>/dev/null || true)
  case "$have" in
    "install ok installed"*)
      if [ "$name" != "$p" ] && [ "${have##* }" != "$want" ]; then missing+=("$p"); fi ;;
    *) missing+=("$p") ;;
  esac
done

need_update=0
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  log "adding the arm64 architecture (multiarch) for guest packages"
  $SUDO dpkg --add-architecture arm64
  need_update=1
fi

if [ ${#missing[@]} -gt 0 ] || [ $need_update -eq 1 ]; then
  log "apt-get update"
  $SUDO apt-get update -q
fi

if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  # Debian's qemu-system-* 7.2 conflicts with the newer qemu-utils preinstalled on these
  # machines: installing bookworm's qemu-utils in the same transaction resolves it.
  extra=()
  if dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null | grep -q bpo; then
    extra=(qemu-utils/bookworm qemu-block-extra/bookworm --allow-downgrades)
  fi
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" "${extra[@]}"
else
  log "Debian packages already installed"
fi

# Guest .debs, per arch, into the lab cache. lab extracts them with dpkg-deb when it assembles
# the initramfs, so the host's own libraries are never copied into a guest.
cache=${LAB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lab}
for arch in amd64 arm64; do
  dir="$cache/debs/$arch"
  mkdir -p "$dir"
  want=()
  for p in "${GUEST_DEBS[@]}"; do
    compgen -G "$dir/${p}_*_${arch}.deb" >/dev/null || compgen -G "$dir/${p}_*_all.deb" >/dev/null || want+=("$p:$arch")
  done
  if [ ${#want[@]} -gt 0 ]; then
    log "downloading guest packages for $arch: ${want[*]}"
    (cd "$dir" && apt-get download -q -o APT::Sandbox::User=root "${want[@]}")
  fi
done

# Rust targets for the static guest programs.
if command -v rustup >/dev/null; then
  for t in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
    rustup target list --installed | grep -qx "$t" || { log "rustup target add $t"; rustup target add "$t"; }
  done
else
  log "error: rustup not found; install Rust with rustup first" && exit 3
fi

# Slurm and munge for lab's Slurm executor and its tests (a local cluster:
# scripts/slurm-localhost.sh), installed without starting any daemon.
"$(dirname "$0")/slurm-localhost.sh" install

# LAVA's dispatcher (lava-run), for `lab lava` and its smoke test, without systemd: the
# Debian debs unpacked under $LAB_LAVA_DIR (default /opt/lab-lava).
"$(dirname "$0")/lava-setup.sh" >/dev/null

log "done"
