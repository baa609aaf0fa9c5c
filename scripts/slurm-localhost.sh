#!/usr/bin/env bash
# A real Slurm cluster on this machine, for lab's Slurm executor and its tests:
#
#   scripts/slurm-localhost.sh install|start|stop|status [DIR]
#
#   install  the Debian packages (slurmctld, slurmd, slurm-client, munge), idempotent; no
#            daemon is started by the packages (a policy-rc.d refuses it while they install)
#   start    munged, slurmctld and two slurmd (nodes n1 and n2, both on 127.0.0.1, on ports
#            of their own), each in its own process group, with a configuration of its own in
#            DIR; waits until both nodes are idle; prints `export SLURM_CONF=...`
#   stop     stops every daemon started from DIR (SIGTERM, then SIGKILL after 10 s) and checks
#            that none is left; exits 1 if one is
#   status   the daemons' pids and `sinfo`; exits 1 if a daemon is down
#
# DIR defaults to $LAB_CACHE_DIR/slurm (or ~/.cache/lab/slurm). Nothing outside DIR is
# touched: the munge key, sockets, pid files, logs, spool and state are all in it, so this
# cluster never meets a system-wide munge or Slurm.
#
# The nodes: n1 and n2 each offer the host's cores (`CPUs`) and its memory less 1 GiB; n1 has
# the feature `x86_64`, n2 `arm64host` (a stand-in for an arm64 build or run host). Partitions
# `build` and `run` both hold both nodes. Jobs are allocated per core (select/cons_tres,
# CR_Core_Memory), so `srun -c 2` on a 2-core node takes the whole node.
#
# Exit status: 0 done, 1 a daemon failed to start or stop, 2 bad usage or a missing package.
set -euo pipefail

cmd=${1:-}
dir=${2:-${LAB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lab}/slurm}
# slurmctld listens on PORT (SLURM_LOCALHOST_PORT, default 16817), the nodes on PORT+1, PORT+2.
CTLD_PORT=${SLURM_LOCALHOST_PORT:-16817}
NODE_PORTS=($((CTLD_PORT + 1)) $((CTLD_PORT + 2)))
NODES=(n1 n2)
FEATURES=(x86_64 arm64host)
PACKAGES=(slurmctld slurmd slurm-client munge)

log() { printf 'slurm-localhost: %s\n' "$*" >&2; }
die() {
  log "error: $2"
  exit "$1"
}

conf=$dir/etc/slurm.conf
sock=$dir/run/munge.socket

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  log "installing ${missing[*]}"
  # Debian's postinst scripts start munged and the Slurm daemons with the system-wide
  # configuration; this cluster is started by `start` with its own. policy-rc.d (exit 101:
  # "action forbidden") keeps invoke-rc.d from starting anything while they install.
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [ ! -e $policy ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee $policy >/dev/null
    $sudo chmod 755 $policy
    own_policy=1
  fi
  local rc=0
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 || rc=$?
  if [ $rc -ne 0 ]; then
    $sudo apt-get update -q >&2 && $sudo env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q "${missing[@]}" >&2 && rc=0 || rc=$?
  fi
  [ $own_policy -eq 1 ] && $sudo rm -f $policy
  [ $rc -eq 0 ] || die 2 "apt-get install ${missing[*]} failed (exit $rc)"
}

need_tools() {
  for t in munged mungekey slurmctld slurmd sinfo scontrol; do
    command -v $t >/dev/null 2>&1 ||
      PATH=$PATH:/usr/sbin command -v $t >/dev/null 2>&1 ||
      die 2 "$t is missing: run \`$0 install\` (make setup does)"
  done
  export PATH=$PATH:/usr/sbin
}

# The pid recorded in FILE, if that process is alive.
live_pid() {
  local f=$1 pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

pidfiles() {
  echo "$dir/run/munged.pid" "$dir/run/slurmctld.pid"
  for n in "${NODES[@]}"; do echo "$dir/run/slurmd-$n.pid"; done
}

write_config() {
  mkdir -p "$dir"/{etc,run,log,state}
  for n in "${NODES[@]}"; do mkdir -p "$dir/spool/$n"; done
  chmod 700 "$dir" "$dir/etc" "$dir/run"
  [ -s "$dir/etc/munge.key" ] || mungekey --create --keyfile="$dir/etc/munge.key" --bits=1024
  chmod 600 "$dir/etc/munge.key"
  local cpus mem
  cpus=$(nproc)
  mem=$(($(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 1024))
  local tmp=$conf.new
  {
    echo "# Written by scripts/slurm-localhost.sh; rewritten on every start."
    echo "ClusterName=lablocal"
    echo "SlurmctldHost=localhost(127.0.0.1)"
    echo "SlurmctldPort=$CTLD_PORT"
    echo "AuthType=auth/munge"
    echo "CredType=cred/munge"
    echo "AuthInfo=socket=$sock"
    echo "SlurmUser=root"
    echo "SlurmdUser=root"
    echo "StateSaveLocation=$dir/state"
    echo "SlurmdSpoolDir=$dir/spool/%n"
    echo "SlurmctldPidFile=$dir/run/slurmctld.pid"
    echo "SlurmdPidFile=$dir/run/slurmd-%n.pid"
    echo "SlurmctldLogFile=$dir/log/slurmctld.log"
    echo "SlurmdLogFile=$dir/log/slurmd-%n.log"
    # No cgroups here (no systemd): processes are tracked through /proc.
    echo "ProctrackType=proctrack/linuxproc"
    echo "TaskPlugin=task/none"
    echo "JobAcctGatherType=jobacct_gather/none"
    echo "AccountingStorageType=accounting_storage/none"
    echo "MpiDefault=none"
    echo "SchedulerType=sched/backfill"
    echo "SelectType=select/cons_tres"
    echo "SelectTypeParameters=CR_Core_Memory"
    # A job that asks no memory gets this much per core, not the whole node.
    echo "DefMemPerCPU=1024"
    echo "ReturnToService=2"
    echo "SlurmdTimeout=30"
    echo "InactiveLimit=0"
    echo "KillWait=5"
    for i in "${!NODES[@]}"; do
      echo "NodeName=${NODES[$i]} NodeHostname=localhost NodeAddr=127.0.0.1 Port=${NODE_PORTS[$i]} CPUs=$cpus RealMemory=$mem Features=${FEATURES[$i]} State=UNKNOWN"
    done
    echo "PartitionName=build Nodes=$(IFS=,; echo "${NODES[*]}") Default=YES MaxTime=INFINITE State=UP"
    echo "PartitionName=run Nodes=$(IFS=,; echo "${NODES[*]}") MaxTime=INFINITE State=UP"
  } > "$tmp"
  mv "$tmp" "$conf"
}

start() {
  need_tools
  if status >/dev/null 2>&1; then
    log "already running from $dir"
    echo "export SLURM_CONF=$conf"
    return 0
  fi
  stop >/dev/null 2>&1 || true
  write_config
  export SLURM_CONF=$conf
  # Each daemon in its own session (setsid), so a Ctrl-C in the terminal that started the
  # cluster does not reach it; `stop` ends them.
  setsid munged --socket="$sock" --key-file="$dir/etc/munge.key" \
    --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" \
    --seed-file="$dir/state/munged.seed" --force </dev/null
  wait_for "munged" 10 test -S "$sock"
  setsid slurmctld -f "$conf" </dev/null
  wait_for "slurmctld" 20 scontrol ping
  for n in "${NODES[@]}"; do
    setsid slurmd -f "$conf" -N "$n" </dev/null
  done
  wait_for "both nodes idle" 30 nodes_idle
  log "running from $dir: $(sinfo -h -o '%D nodes %c cpus/node %t' | tr '\n' ' ')"
  echo "export SLURM_CONF=$conf"
}

nodes_idle() {
  # One line per node and partition: count the nodes.
  [ "$(sinfo -h -N -o '%N %t' 2>/dev/null | sort -u | awk '$2 == "idle"' | wc -l)" -eq ${#NODES[@]} ]
}

wait_for() {
  local what=$1 secs=$2
  shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= end)); then
      log "$what not ready after ${secs}s; the logs:"
      tail -n 5 "$dir"/log/*.log >&2 2>/dev/null || true
      stop >/dev/null 2>&1 || true
      die 1 "$what did not come up (logs in $dir/log)"
    fi
    sleep 0.2
  done
}

# Every process whose command line names this cluster's files: a daemon whose pid file is
# gone is still found.
ours() {
  pgrep -f -- "$dir/(etc/slurm.conf|etc/munge.key|run/munge.socket)" || true
}

# Ends PIDS: SIGTERM, up to 10 s, then SIGKILL.
end_pids() {
  [ $# -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null || true
  local end=$((SECONDS + 10)) p alive
  while ((SECONDS < end)); do
    alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && return 0
    sleep 0.2
  done
  kill -KILL "$@" 2>/dev/null || true
}

stop() {
  local slurm=() munge=() f p n=0
  for f in $(pidfiles); do
    if p=$(live_pid "$f"); then
      case $f in */munged.pid) munge+=("$p") ;; *) slurm+=("$p") ;; esac
    fi
  done
  # Slurm daemons first, munged last: the Slurm daemons talk over munge while they go down.
  end_pids "${slurm[@]}"
  end_pids "${munge[@]}"
  n=$((${#slurm[@]} + ${#munge[@]}))
  # Any other process of this cluster (a daemon whose pid file is gone).
  local stray
  mapfile -t stray < <(ours)
  end_pids "${stray[@]}"
  n=$((n + ${#stray[@]}))
  rm -f "$dir"/run/*.pid
  local left
  left=$(ours)
  if [ -n "$left" ]; then
    ps -o pid,stat,cmd -p "$(echo "$left" | paste -sd,)" >&2 || true
    die 1 "processes left behind: $(echo "$left" | paste -sd' ')"
  fi
  log "stopped ($n process(es) ended, none left)"
}

status() {
  need_tools
  local down=0 f p
  for f in $(pidfiles); do
    if p=$(live_pid "$f"); then
      echo "$(basename "$f" .pid) $p"
    else
      echo "$(basename "$f" .pid) down"
      down=1
    fi
  done
  [ -f "$conf" ] && SLURM_CONF=$conf sinfo -N -o '%N %P %c %m %f %t' 2>/dev/null || down=1
  return $down
}

case "$cmd" in
  install) install_packages ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *)
    echo "usage: $0 install|start|stop|status [DIR]" >&2
    exit 2
    ;;
esac
