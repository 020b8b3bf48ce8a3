#!/usr/bin/env bash
# The system libvirt daemon (qemu:///system) for the emulator tests and for machines without systemd.
#
#   scripts/libvirtd.sh start    start virtlogd + libvirtd unless a libvirtd already answers;
#                                prints "started" (we started it) or "running" (it already ran)
#   scripts/libvirtd.sh stop     stop the daemons this script started (by their pid files)
#   scripts/libvirtd.sh status   say whether qemu:///system answers (exit 0 yes, 1 no)
#
# Debian 12 ships the monolithic libvirtd. Started by hand (no systemd) it needs /var/log/libvirt
# and, for the qemu driver's console and stdio logs, virtlogd. Daemons started here write pid files
# and logs into IMAGELAKE_LIBVIRTD_DIR (default /run/imagelake-libvirtd) and are stopped by pid,
# never by name. A libvirtd that was already running (systemd's, or another run's) is left alone.
# Needs root: as another user it says so and exits 1 (the tests then use whatever libvirtd
# answers, or skip; under CI=true they fail).
set -euo pipefail

case ":$PATH:" in *:/usr/sbin:*) ;; *) export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" ;; esac

say() { printf 'libvirtd.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

state=${IMAGELAKE_LIBVIRTD_DIR:-/run/imagelake-libvirtd}
uri=qemu:///system

answers() { virsh -q -c "$uri" version >/dev/null 2>&1; }

pid_alive() {  # pid_alive FILE: the pid in FILE names a live process
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_for() {  # wait_for SECONDS COMMAND...: poll until COMMAND succeeds
  local limit=$1; shift
  local i
  for ((i = 0; i < limit * 10; i++)); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}

start() {
  if answers; then
    echo running
    return
  fi
  [ "$(id -u)" -eq 0 ] || die "starting the system libvirtd needs root; run: sudo bash scripts/libvirtd.sh start"
  local tool
  for tool in libvirtd virtlogd virsh; do
    command -v "$tool" >/dev/null 2>&1 \
      || die "$tool not found; install it with: sudo bash scripts/setup-system.sh (Debian packages libvirt-daemon-system libvirt-clients)"
  done
  id libvirt-qemu >/dev/null 2>&1 \
    || die "no 'libvirt-qemu' user; install the Debian package libvirt-daemon-system (sudo bash scripts/setup-system.sh)"
  mkdir -p "$state" /var/log/libvirt/qemu /run/libvirt
  chmod 0755 "$state"
  if ! pid_alive "$state/virtlogd.pid"; then
    LIBVIRT_LOG_OUTPUTS="3:file:$state/virtlogd.log" virtlogd --daemon --pid-file "$state/virtlogd.pid"
    wait_for 10 pid_alive "$state/virtlogd.pid" || die "virtlogd did not start; see $state/virtlogd.log"
  fi
  if ! pid_alive "$state/libvirtd.pid"; then
    LIBVIRT_LOG_OUTPUTS="3:file:$state/libvirtd.log" libvirtd --daemon --pid-file "$state/libvirtd.pid"
  fi
  if ! wait_for 30 answers; then
    tail -n 20 "$state/libvirtd.log" >&2 2>/dev/null || true
    stop
    die "libvirtd did not answer on $uri within 30 s; see $state/libvirtd.log"
  fi
  say "libvirtd running (pid $(cat "$state/libvirtd.pid"), virtlogd pid $(cat "$state/virtlogd.pid"), logs in $state)"
  echo started
}

stop_one() {  # stop_one NAME: TERM the pid in $state/NAME.pid, wait, then KILL
  local file="$state/$1.pid" pid
  pid_alive "$file" || { rm -f "$file"; return 0; }
  pid=$(cat "$file")
  kill -TERM "$pid" 2>/dev/null || true
  wait_for 15 bash -c "! kill -0 $pid 2>/dev/null" || { say "$1 (pid $pid) ignored TERM; killing it"; kill -KILL "$pid" 2>/dev/null || true; }
  rm -f "$file"
}

stop() {
  if [ ! -d "$state" ]; then
    return 0
  fi
  stop_one libvirtd
  stop_one virtlogd
  say "stopped the daemons started from $state"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status)
    if answers; then
      if pid_alive "$state/libvirtd.pid"; then say "running (pid $(cat "$state/libvirtd.pid"), started by this script)"; else say "running (not started by this script)"; fi
    else
      say "not running"; exit 1
    fi
    ;;
  *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
