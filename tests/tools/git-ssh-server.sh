#!/usr/bin/env bash
# A git server over ssh for tests: Debian's OpenSSH `sshd` (package openssh-server) on a free
# port of 127.0.0.1, with host keys made at start, client keys in authorized_keys, and a
# forced command that serves only git (git-upload-pack, git-receive-pack, git-upload-archive
# through git-shell) on the repositories under DIR/repos.
#
#   git-ssh-server.sh start DIR    start (DIR is created; any server already there is stopped)
#   git-ssh-server.sh stop DIR     stop it and every process it started (idempotent)
#   git-ssh-server.sh env DIR      print the KEY=VALUE lines of the running server again
#
# `start` prints, one per line (and keeps them in DIR/env):
#   GIT_SSH_URL=ssh://USER@127.0.0.1:PORT   base URL; a repository is $GIT_SSH_URL/NAME.git
#                                           (paths are relative to GIT_SSH_REPOS, like a git host's)
#   GIT_SSH_HOST, GIT_SSH_PORT, GIT_SSH_USER (the user running this script: sshd can only
#   log a non-root caller in as itself),
#   GIT_SSH_KEY (ed25519 private key, OpenSSH format), GIT_SSH_KEY_RSA (RSA private key, PEM,
#   for clients that read only that), GIT_SSH_KNOWN_HOSTS (the server's ed25519, ECDSA and RSA
#   host keys as `[127.0.0.1]:PORT TYPE KEY` lines), GIT_SSH_REPOS (`git init --bare
#   "$GIT_SSH_REPOS/NAME.git"` creates a repository), GIT_SSH_PID, and
#   GIT_SSH_COMMAND (an ssh command line for stock git: the key, that known_hosts file,
#   StrictHostKeyChecking=yes, BatchMode).
# Password and keyboard-interactive logins are off; a key that is not in authorized_keys, a
# shell, a command other than git's, or a path outside GIT_SSH_REPOS is refused.
# Logs: DIR/sshd.log. Exit status: 0 ok, 1 failure (reason on stderr).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/tools/lib-servers.sh
. "$here/lib-servers.sh"

usage() { echo "usage: $0 start|stop|env DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
mkdir -p "$2"
dir=$(cd "$2" && pwd)
conf="$dir/sshd_config"
pidfile="$dir/sshd.pid"
keys="$dir/ssh"

make_keys() {
  rm -rf "$keys"
  mkdir -p "$keys"
  chmod 700 "$keys"
  ssh-keygen -q -t ed25519 -N '' -C 'provisio test host' -f "$keys/host_ed25519_key"
  ssh-keygen -q -t ecdsa -b 256 -N '' -C 'provisio test host' -f "$keys/host_ecdsa_key"
  ssh-keygen -q -t rsa -b 3072 -N '' -C 'provisio test host' -f "$keys/host_rsa_key"
  ssh-keygen -q -t ed25519 -N '' -C 'provisio test client' -f "$keys/id_ed25519"
  ssh-keygen -q -t rsa -b 3072 -m PEM -N '' -C 'provisio test client' -f "$keys/id_rsa"
}

# The forced command: only git's transport commands, only on repositories under DIR/repos.
# A path is taken relative to DIR/repos (leading `/` or `~/` dropped), as a git host does.
write_forced_command() {
  cat >"$keys/git-only" <<EOF
#!/bin/sh
# Written by git-ssh-server.sh: the only command this server runs for a client.
set -eu
repos='$dir/repos'
EOF
  cat >>"$keys/git-only" <<'EOF'
c=${SSH_ORIGINAL_COMMAND:-}
verb=${c%% *}
case $verb in
  git-upload-pack|git-receive-pack|git-upload-archive) ;;
  *) echo "git-ssh-server: only git fetch/push here (got: ${c:-an interactive shell})" >&2; exit 1 ;;
esac
path=${c#"$verb" }
path=${path#\'}; path=${path%\'}
path=${path#/}; path=${path#\~/}
case /$path/ in
  */../*|*\'*) echo "git-ssh-server: refused path $path" >&2; exit 1 ;;
esac
cd "$repos"
exec git-shell -c "$verb '$path'"
EOF
  chmod 755 "$keys/git-only"
  local opts="restrict,command=\"$keys/git-only\""
  {
    echo "$opts $(cat "$keys/id_ed25519.pub")"
    echo "$opts $(cat "$keys/id_rsa.pub")"
  } >"$keys/authorized_keys"
  chmod 600 "$keys/authorized_keys"
}

write_conf() {
  local port=$1 user=$2
  cat >"$conf" <<EOF
# Written by git-ssh-server.sh.
ListenAddress 127.0.0.1
Port $port
HostKey $keys/host_ed25519_key
HostKey $keys/host_ecdsa_key
HostKey $keys/host_rsa_key
PidFile $pidfile
AuthorizedKeysFile $keys/authorized_keys
AuthorizedPrincipalsFile none
AllowUsers $user
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
HostbasedAuthentication no
PermitRootLogin prohibit-password
UsePAM no
# The state directory usually lives under /tmp, which StrictModes would refuse.
StrictModes no
AllowTcpForwarding no
AllowAgentForwarding no
AllowStreamLocalForwarding no
X11Forwarding no
PermitTTY no
PermitUserEnvironment no
PermitTunnel no
AcceptEnv GIT_PROTOCOL
LogLevel VERBOSE
EOF
}

start() {
  local sshd
  sshd=$(command -v sshd || echo /usr/sbin/sshd)
  [ -x "$sshd" ] || die "sshd is missing (apt-get install openssh-server)"
  command -v git-shell >/dev/null || [ -x "$(git --exec-path)/git-shell" ] || die "git-shell is missing"
  stop_pidfile "$pidfile" "$conf"
  mkdir -p "$dir/repos"
  # sshd started by root needs its privilege separation directory.
  if [ "$(id -u)" = 0 ] && [ ! -d /run/sshd ]; then mkdir -p /run/sshd && chmod 755 /run/sshd; fi
  make_keys
  write_forced_command
  local user port attempt
  user=$(id -un)
  for attempt in $(seq 10); do
    port=$(free_port) || die "no free port found"
    write_conf "$port" "$user"
    "$sshd" -t -f "$conf" 2>"$dir/sshd-check.log" || die "sshd rejects its configuration: $(cat "$dir/sshd-check.log")"
    # Without -D, sshd binds, then daemonizes (exit status 255 when it cannot bind).
    if "$sshd" -f "$conf" -E "$dir/sshd.log" </dev/null >/dev/null 2>&1 && wait_port "$port" 10; then
      for _ in $(seq 50); do [ -s "$pidfile" ] && break; sleep 0.1; done
      {
        for t in ed25519 ecdsa rsa; do
          echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$keys/host_${t}_key.pub")"
        done
      } >"$keys/known_hosts"
      emit "$dir" "GIT_SSH_URL=ssh://$user@127.0.0.1:$port" "GIT_SSH_HOST=127.0.0.1" \
        "GIT_SSH_PORT=$port" "GIT_SSH_USER=$user" "GIT_SSH_KEY=$keys/id_ed25519" \
        "GIT_SSH_KEY_RSA=$keys/id_rsa" "GIT_SSH_KNOWN_HOSTS=$keys/known_hosts" \
        "GIT_SSH_REPOS=$dir/repos" "GIT_SSH_PID=$(cat "$pidfile")" \
        "GIT_SSH_COMMAND=ssh -F none -i $keys/id_ed25519 -o IdentitiesOnly=yes -o UserKnownHostsFile=$keys/known_hosts -o GlobalKnownHostsFile=none -o StrictHostKeyChecking=yes -o BatchMode=yes"
      return 0
    fi
    stop_pidfile "$pidfile" "$conf"
    echo "git-ssh-server: port $port failed (attempt $attempt), trying another" >&2
  done
  die "sshd did not start; see $dir/sshd.log"
}

case $cmd in
  start) start ;;
  stop) stop_pidfile "$pidfile" "$conf" ;;
  env)
    if [ -f "$pidfile" ] && pid_matches "$(cat "$pidfile")" "$conf"; then cat "$dir/env"; else die "not running in $dir"; fi ;;
  *) usage ;;
esac
