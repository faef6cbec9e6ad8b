# shellcheck shell=bash
# Shared helpers of git-https-server.sh and git-ssh-server.sh (sourced, not run).
# Servers listen on 127.0.0.1 only; every process is started and stopped by its pid file.

die() { echo "error: $*" >&2; exit 1; }

# A TCP port that is free on 127.0.0.1 right now. nginx/lighttpd/sshd cannot be told to pick
# port 0 and report it, so the caller starts the server on this port and retries with another
# one when the bind loses a race.
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
  else
    local p
    for _ in $(seq 50); do
      p=$((20000 + RANDOM % 40000))
      ss -Hltn "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return 0; }
    done
    return 1
  fi
}

# Waits until 127.0.0.1:$1 accepts connections (at most $2 seconds, default 10).
wait_port() {
  local port=$1 deadline=$((SECONDS + ${2:-10}))
  while ((SECONDS < deadline)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

# Pids of every descendant of $1 (children first found, then theirs), read from /proc.
descendants() {
  local parent=$1 pid ppid stat
  for stat in /proc/[0-9]*/stat; do
    # field 4 of /proc/PID/stat is the parent pid; the command (field 2) may hold spaces.
    read -r pid ppid < <(sed -E 's/^([0-9]+) \(.*\) [A-Za-z] ([0-9]+) .*/\1 \2/' "$stat" 2>/dev/null) || continue
    if [ "$ppid" = "$parent" ]; then
      echo "$pid"
      descendants "$pid"
    fi
  done
}

# True when $1 is a live process whose command line mentions $2 (guards against a pid file
# naming a pid that was reused by an unrelated process).
pid_matches() {
  local pid=$1 needle=$2
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$needle"
}

# Stops the server whose pid file is $1 and whose command line mentions $2, with every
# process it started (TERM, then KILL after 5 s). Idempotent: nothing running is success.
stop_pidfile() {
  local pidfile=$1 needle=$2 pid kids
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile" 2>/dev/null || true)
  if pid_matches "$pid" "$needle"; then
    kids=$(descendants "$pid")
    # shellcheck disable=SC2086
    kill -TERM "$pid" $kids 2>/dev/null || true
    for _ in $(seq 50); do
      pid_matches "$pid" "$needle" || break
      sleep 0.1
    done
    # shellcheck disable=SC2086
    kill -KILL "$pid" $kids 2>/dev/null || true
    # A KILLed process stays a zombie until its parent reaps it; it holds nothing.
  fi
  rm -f "$pidfile"
}

# Prints KEY=VALUE lines ($@) on stdout and keeps them in $STATE/env for `env DIR`.
emit() {
  local state=$1
  shift
  : >"$state/env"
  for kv in "$@"; do
    printf '%s\n' "$kv" | tee -a "$state/env"
  done
}
