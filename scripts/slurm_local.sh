#!/usr/bin/env bash
# A one-node Slurm cluster on this machine (issue 29): munged, slurmctld and slurmd on localhost.
#
#   scripts/slurm_local.sh start    install slurm-wlm + munge with apt if missing, write slurm.conf,
#                                   start the daemons, wait until sinfo shows the node idle (idempotent)
#   scripts/slurm_local.sh stop     cancel the cluster's jobs, stop the daemons it started (by the PIDs
#                                   it recorded), leave none behind
#   scripts/slurm_local.sh status   "up: ..." (exit 0), or "down: <why>" (exit 1), or "cannot start
#                                   here: <why>" (exit 2)
#
# Everything it writes (slurm.conf, munge key and socket, PIDs, logs, spool and state) lives in one
# folder, $PAM_SLURM_DIR (default /tmp/pam-slurm), never in the repository. Clients find the cluster
# through SLURM_CONF: `export SLURM_CONF=$PAM_SLURM_DIR/slurm.conf` (start prints it).
# One node with this machine's cores (its CPU affinity) and memory, one partition (cpu, the default),
# no cgroup plugins (proctrack/linuxproc, task/none): it runs in a container without systemd.
set -euo pipefail

DIR=$(realpath -m "${PAM_SLURM_DIR:-/tmp/pam-slurm}")
CONF=$DIR/slurm.conf
SOCKET=$DIR/munge/munge.socket.2
PARTITION=cpu
NODE=localhost
DAEMONS=(munged slurmctld slurmd)  # started in this order, stopped in the reverse one
export SLURM_CONF=$CONF

say() { echo "slurm_local: $*"; }

# Why the cluster cannot start on this machine ("" when it can).
why_not() {
  if [[ $(uname -s) != Linux ]]; then
    echo "Slurm's daemons run on Linux only (this is $(uname -s))"
  elif [[ $(id -u) != 0 ]]; then
    echo "it must run as root (slurmd starts the jobs; this is uid $(id -u))"
  elif ! have_slurm && ! command -v apt-get >/dev/null 2>&1; then
    echo "slurm-wlm and munge are not installed and apt-get is not available to install them"
  fi
}

have_slurm() {
  local b
  for b in munged mungekey slurmctld slurmd sbatch sinfo squeue scancel srun; do
    command -v "$b" >/dev/null 2>&1 || [[ -x /usr/sbin/$b ]] || return 1
  done
}

install() {
  have_slurm && return 0
  say "installing slurm-wlm and munge with apt-get"
  # Keep the packages' init scripts from starting system-wide daemons: this script starts its own.
  local policy=/usr/sbin/policy-rc.d added=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added=1
  fi
  local rc=0
  (export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq slurm-wlm munge) \
    >"$DIR/log/apt.log" 2>&1 || rc=$?
  [[ $added == 1 ]] && rm -f "$policy"
  if [[ $rc != 0 ]] || ! have_slurm; then
    echo "cannot start here: apt-get install slurm-wlm munge failed (exit $rc; see $DIR/log/apt.log)"
    tail -5 "$DIR/log/apt.log" | sed 's/^/  /'
    exit 2
  fi
}

# The PID recorded for daemon $1 if that process is alive and is the one this script started
# (its command line names this folder), else nothing.
our_pid() {
  local file=$DIR/pids/$1.pid pid
  [[ -s $file ]] || return 0
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 0
  if tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$DIR/"; then echo "$pid"; fi
}

node_state() { timeout 10 sinfo -h -n "$NODE" -o %t 2>/dev/null | head -1 || true; }

# "up" when every daemon this script started runs and the node takes jobs; else why not.
health() {
  local d
  for d in "${DAEMONS[@]}"; do
    [[ -n $(our_pid "$d") ]] || { echo "$d is not running (start it: scripts/slurm_local.sh start)"; return; }
  done
  local state
  state=$(node_state)
  case $state in
    idle|mix|alloc|comp) echo up ;;
    "") echo "sinfo does not answer (see $DIR/log/slurmctld.log)" ;;
    *) echo "node $NODE is $state (see $DIR/log/slurmd.log)" ;;
  esac
}

cpus() { nproc; }  # the CPU affinity of this process: a container's share, not the host's

mem_mb() {  # MemTotal, or the cgroup's limit when lower, less 5 % for the system
  local mb limit
  mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
  for limit in /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes; do
    if [[ -r $limit ]] && [[ $(<"$limit") =~ ^[0-9]+$ ]]; then
      local l=$(( $(<"$limit") / 1048576 ))
      (( l < mb )) && mb=$l
    fi
  done
  echo $(( mb * 95 / 100 ))
}

write_conf() {
  cat >"$CONF" <<EOF
# Written by scripts/slurm_local.sh: a one-node cluster on this machine.
ClusterName=pam-local
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$SOCKET
CryptoType=crypto/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/pids/slurmctld.pid
SlurmdPidFile=$DIR/pids/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups: the container has no systemd and may lack the cgroup controllers.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
# Ended jobs stay visible to squeue and scontrol for an hour (there is no accounting database).
MinJobAge=3600
KillWait=5
InactiveLimit=0
Waittime=0
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$(cpus) RealMemory=$(mem_mb) State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munged() {
  [[ -n $(our_pid munged) ]] && return 0
  if [[ ! -s $DIR/munge/munge.key ]]; then
    mungekey --create --keyfile="$DIR/munge/munge.key" >/dev/null 2>&1 \
      || dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$DIR/munge/munge.key"
  fi
  rm -f "$SOCKET"
  # --force: the key and socket folder belong to root, not to a munge user.
  "$(command -v munged || echo /usr/sbin/munged)" --force --socket="$SOCKET" \
    --key-file="$DIR/munge/munge.key" --pid-file="$DIR/pids/munged.pid" \
    --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"
  local i
  for i in $(seq 50); do
    munge -n -S "$SOCKET" 2>/dev/null | unmunge -S "$SOCKET" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "down: munged did not answer on $SOCKET (see $DIR/log/munged.log)"
  exit 1
}

start_daemon() {  # $1: slurmctld or slurmd; they fork into the background and write their pid files
  [[ -n $(our_pid "$1") ]] && return 0
  local args=(-f "$CONF")
  [[ $1 == slurmd ]] && args+=(-N "$NODE")
  "$(command -v "$1" || echo "/usr/sbin/$1")" "${args[@]}"
  local i
  for i in $(seq 50); do
    [[ -n $(our_pid "$1") ]] && return 0
    sleep 0.2
  done
  echo "down: $1 did not start (see $DIR/log/$1.log)"
  tail -5 "$DIR/log/$1.log" 2>/dev/null | sed 's/^/  /'
  exit 1
}

cmd_start() {
  local why
  why=$(why_not)
  [[ -z $why ]] || { echo "cannot start here: $why"; exit 2; }
  if [[ $(health) == up ]]; then
    say "already up ($(summary))"
    return 0
  fi
  mkdir -p "$DIR"/{munge,state,spool,pids,log}
  chmod 700 "$DIR/munge"
  install
  write_conf
  start_munged
  start_daemon slurmctld
  start_daemon slurmd
  local i state
  for i in $(seq 60); do
    state=$(node_state)
    if [[ $state == idle* ]]; then
      say "up ($(summary))"
      say "use it with: export SLURM_CONF=$CONF"
      return 0
    fi
    [[ $state == down* || $state == drain* ]] && timeout 10 scontrol update NodeName="$NODE" State=RESUME \
      >/dev/null 2>&1 || true
    sleep 1
  done
  echo "down: node $NODE is not idle after 60 s (state ${state:-none}; see $DIR/log/slurmd.log)"
  exit 1
}

summary() {
  echo "node $NODE with $(awk -F= '/^NodeName/ {print $0}' "$CONF" | grep -o 'CPUs=[0-9]*') and" \
       "$(grep -o 'RealMemory=[0-9]*' "$CONF") MB, partition $PARTITION, state in $DIR"
}

# Cancel every job of this cluster and wait until no job step process (slurmstepd) is left: each
# one holds a socket in the spool folder until it ends.
drain_jobs() {
  [[ -n $(our_pid slurmctld) ]] || return 0
  timeout 10 scancel --partition="$PARTITION" >/dev/null 2>&1 || true
  local i
  for i in $(seq 60); do
    if [[ -z $(timeout 10 squeue -h -t running,completing,configuring -o %i 2>/dev/null) ]] \
       && ! compgen -G "$DIR/spool/${NODE}_*" >/dev/null; then
      return 0
    fi
    sleep 0.5
  done
  say "warning: jobs still ending after 30 s"
}

stop_daemon() {
  local pid i
  pid=$(our_pid "$1")
  [[ -n $pid ]] || { rm -f "$DIR/pids/$1.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do
    [[ -d /proc/$pid ]] || break
    sleep 0.2
  done
  [[ -d /proc/$pid ]] && kill -KILL "$pid" 2>/dev/null
  rm -f "$DIR/pids/$1.pid"
  say "stopped $1 (pid $pid)"
}

cmd_stop() {
  [[ -d $DIR ]] || { say "nothing to stop (no $DIR)"; return 0; }
  drain_jobs
  local i
  for (( i = ${#DAEMONS[@]} - 1; i >= 0; i-- )); do
    stop_daemon "${DAEMONS[i]}"
  done
}

cmd_status() {
  local why health
  why=$(why_not)
  [[ -z $why ]] || { echo "cannot start here: $why"; exit 2; }
  if [[ ! -f $CONF ]]; then
    echo "down: no cluster in $DIR (start it: scripts/slurm_local.sh start)"
    exit 1
  fi
  health=$(health)
  if [[ $health == up ]]; then
    echo "up: $(summary); export SLURM_CONF=$CONF"
    return 0
  fi
  echo "down: $health"
  exit 1
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 start|stop|status  (state in \$PAM_SLURM_DIR, default /tmp/pam-slurm)" >&2; exit 64 ;;
esac
