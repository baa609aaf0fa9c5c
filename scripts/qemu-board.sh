#!/usr/bin/env bash
# A board made of QEMU: for trying `lab run --target` without hardware, and for lab's own
# test of the board path (orchestrator/tests/board.rs). lab does not start or stop it: like
# a board on a lab network it keeps running between runs, answers SSH on 127.0.0.1:PORT, and
# boots what its install hook is handed.
#
#   QEMU_BOARD_DIR=DIR QEMU_BOARD_PORT=PORT scripts/qemu-board.sh install   the install hook
#   QEMU_BOARD_DIR=DIR scripts/qemu-board.sh console   the console hook: its serial line
#   QEMU_BOARD_DIR=DIR scripts/qemu-board.sh stop      power it off
#
# DIR/rootfs.cpio is the board's own root file system: an initramfs whose sshd accepts the
# target's key (lab's test uses lab's guest image with a key of its own). The install hook
# gets what lab.toml documents under [target.NAME] (LAB_ARCH, LAB_KERNEL_IMAGE,
# LAB_KERNEL_VMLINUX, LAB_CMDLINE, ...). QEMU_BOARD_CMDLINE, when set, replaces LAB_CMDLINE:
# a hook that forgets lab's words, which lab must notice.
set -euo pipefail

dir=${QEMU_BOARD_DIR:?set QEMU_BOARD_DIR to the board folder}

stop() {
  local pid
  [ -f "$dir/qemu.pid" ] || return 0
  pid=$(cat "$dir/qemu.pid")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/qemu.pid"
}

case ${1:-} in
  install)
    port=${QEMU_BOARD_PORT:?set QEMU_BOARD_PORT to the SSH port}
    stop
    case ${LAB_ARCH:?} in
      x86_64)
        qemu=qemu-system-x86_64
        machine=(-machine microvm,x-option-roms=off,isa-serial=on,rtc=on,pit=on,pic=on,acpi=off -cpu max)
        kernel=$LAB_KERNEL_VMLINUX nic=virtio-net-device words="console=ttyS0 reboot=t pci=off no_timer_check" ;;
      arm64)
        qemu=qemu-system-aarch64
        machine=(-machine virt -cpu max,pauth=off)
        kernel=$LAB_KERNEL_IMAGE nic=virtio-net-pci words="console=ttyAMA0" ;;
      *) echo "qemu-board: no board for arch $LAB_ARCH" >&2; exit 2 ;;
    esac
    : > "$dir/console.log"
    echo "qemu-board: booting $LAB_KERNEL_LABEL ($LAB_ARCH) on 127.0.0.1:$port"
    "$qemu" "${machine[@]}" -accel tcg -smp 2 -m 512M -nodefaults -no-user-config \
      -display none -no-reboot -serial "file:$dir/console.log" \
      -kernel "$kernel" -initrd "$dir/rootfs.cpio" \
      -append "$words panic=-1 lab.mode=ssh ${QEMU_BOARD_CMDLINE-$LAB_CMDLINE}" \
      -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:22" -device "$nic,netdev=n0" \
      -daemonize -pidfile "$dir/qemu.pid"
    ;;
  console)
    exec tail -n +1 -F "$dir/console.log" 2>/dev/null ;;
  stop)
    stop ;;
  *)
    echo "usage: QEMU_BOARD_DIR=DIR [QEMU_BOARD_PORT=PORT] $0 install|console|stop" >&2
    exit 2 ;;
esac
