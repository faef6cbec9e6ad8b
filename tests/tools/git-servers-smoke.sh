#!/usr/bin/env bash
# Smoke test of the test git servers with stock git: starts git-https-server.sh and
# git-ssh-server.sh in a temporary directory, clones, pushes and fetches over each, checks that
# a wrong password, an unknown CA, an unknown host key, a key not in authorized_keys, a shell
# and a path outside the repositories are refused, then stops both and checks no process is
# left. Prints `N passed, N failed`; exit status 0 when all passed.
#
#   bash tests/tools/git-servers-smoke.sh          (KEEP=1 keeps the temporary directory)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/git-servers-smoke.XXXXXX")
passed=0 failed=0

cleanup() {
  "$here/git-https-server.sh" stop "$tmp/https" >/dev/null 2>&1
  "$here/git-ssh-server.sh" stop "$tmp/ssh" >/dev/null 2>&1
  if [ -n "${KEEP:-}" ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

ok() { echo "ok: $*"; passed=$((passed + 1)); }
ko() { echo "FAILED: $*"; failed=$((failed + 1)); }
# check DESCRIPTION COMMAND...: passes when COMMAND succeeds.
check() { local d=$1; shift; if "$@" >"$tmp/out" 2>&1; then ok "$d"; else ko "$d"; sed 's/^/    /' "$tmp/out"; fi; }
# refused DESCRIPTION PATTERN COMMAND...: passes when COMMAND fails and says PATTERN.
refused() {
  local d=$1 pattern=$2; shift 2
  if "$@" >"$tmp/out" 2>&1; then ko "$d (succeeded)"; sed 's/^/    /' "$tmp/out"
  elif grep -qiE -- "$pattern" "$tmp/out"; then ok "$d"
  else ko "$d (failed without /$pattern/)"; sed 's/^/    /' "$tmp/out"; fi
}
# load FILE: exports its KEY=VALUE lines (values run to the end of the line, unquoted).
load() { local line; while IFS= read -r line; do export "${line?}"; done <"$1"; }

export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_TERMINAL_PROMPT=0
export GIT_AUTHOR_NAME=smoke GIT_AUTHOR_EMAIL=smoke@localhost
export GIT_COMMITTER_NAME=smoke GIT_COMMITTER_EMAIL=smoke@localhost
# Push from a work tree with one more commit, then fetch it from another clone.
round_trip() {
  local url=$1 name=$2
  git clone -q "$url" "$tmp/$name-a" &&
    echo "$name" >"$tmp/$name-a/file" &&
    git -C "$tmp/$name-a" add file && git -C "$tmp/$name-a" commit -qm "first over $name" &&
    git -C "$tmp/$name-a" push -q origin HEAD:refs/heads/main &&
    git clone -q --branch main "$url" "$tmp/$name-b" &&
    echo more >>"$tmp/$name-a/file" && git -C "$tmp/$name-a" commit -qam "second over $name" &&
    git -C "$tmp/$name-a" push -q origin HEAD:refs/heads/main &&
    git -C "$tmp/$name-b" fetch -q origin &&
    [ "$(git -C "$tmp/$name-b" rev-parse origin/main)" = "$(git -C "$tmp/$name-a" rev-parse HEAD)" ]
}

t0=$SECONDS
echo "== https (lighttpd + git http-backend)"
if "$here/git-https-server.sh" start "$tmp/https" >"$tmp/https.env" 2>"$tmp/https.err"; then
  ok "https server started ($(grep ^GIT_HTTPS_URL "$tmp/https.env"))"
  load "$tmp/https.env"
  git init -q --bare "$GIT_HTTPS_REPOS/smoke.git"
  # The password reaches git through a credential helper reading the file, never the URL.
  helper="!f() { test \"\$1\" = get && echo username=$GIT_HTTPS_USER && echo password=\$(cat $GIT_HTTPS_PASSWORD_FILE); }; f"
  # (For the clones inside round_trip, the helper is set through the environment.)
  export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=credential.helper GIT_CONFIG_VALUE_0="$helper"
  GIT_SSL_CAINFO="$GIT_HTTPS_CA" check "https: clone, push, fetch with the CA and basic auth" \
    round_trip "$GIT_HTTPS_URL/smoke.git" https
  # libgit2 always pushes with Transfer-Encoding: chunked; stock git does past http.postBuffer.
  chunked_push() {
    head -c 200000 /dev/urandom >"$tmp/https-a/blob" &&
      git -C "$tmp/https-a" add blob && git -C "$tmp/https-a" commit -qm "a pack over 1 KiB" &&
      git -C "$tmp/https-a" -c http.postBuffer=1024 push -q origin HEAD:refs/heads/main
  }
  GIT_SSL_CAINFO="$GIT_HTTPS_CA" check "https: a chunked push (a pack larger than http.postBuffer)" chunked_push
  unset GIT_CONFIG_COUNT GIT_CONFIG_KEY_0 GIT_CONFIG_VALUE_0
  GIT_SSL_CAINFO="$GIT_HTTPS_CA" refused "https: a wrong password is refused" "Authentication failed" \
    git -c credential.helper="!f() { echo username=$GIT_HTTPS_USER; echo password=wrong; }; f" \
    ls-remote "$GIT_HTTPS_URL/smoke.git"
  GIT_SSL_CAINFO="$GIT_HTTPS_CA" refused "https: no credentials is refused" "terminal prompts disabled|Authentication failed|could not read Username" \
    git ls-remote "$GIT_HTTPS_URL/smoke.git"
  GIT_SSL_CAINFO=/etc/ssl/certs/ca-certificates.crt refused "https: a server certificate from an unknown CA is refused" "certificate" \
    git -c credential.helper="$helper" ls-remote "$GIT_HTTPS_URL/smoke.git"
  # The certificate names 127.0.0.1 and localhost: another name for the same address is refused.
  GIT_SSL_CAINFO="$GIT_HTTPS_CA" refused "https: a certificate for another host name is refused" "no alternative|certificate|SSL" \
    git -c credential.helper="$helper" -c "http.curloptResolve=git.invalid:$GIT_HTTPS_PORT:127.0.0.1" \
    ls-remote "https://git.invalid:$GIT_HTTPS_PORT/git/smoke.git"
else
  ko "https server did not start"; sed 's/^/    /' "$tmp/https.err"
fi

echo "== ssh (sshd + git-shell)"
if "$here/git-ssh-server.sh" start "$tmp/ssh" >"$tmp/ssh.env" 2>"$tmp/ssh.err"; then
  ok "ssh server started ($(grep ^GIT_SSH_URL "$tmp/ssh.env"))"
  load "$tmp/ssh.env"
  git init -q --bare "$GIT_SSH_REPOS/smoke.git"
  base_ssh="ssh -F none -o IdentitiesOnly=yes -o GlobalKnownHostsFile=none -o BatchMode=yes -o StrictHostKeyChecking=yes"
  GIT_SSH_COMMAND="$GIT_SSH_COMMAND" check "ssh: clone, push, fetch with the ed25519 key and known_hosts" \
    round_trip "$GIT_SSH_URL/smoke.git" ssh
  check "ssh: the RSA (PEM) key works too" \
    env GIT_SSH_COMMAND="$base_ssh -i $GIT_SSH_KEY_RSA -o UserKnownHostsFile=$GIT_SSH_KNOWN_HOSTS" \
    git ls-remote "$GIT_SSH_URL/smoke.git"
  check "ssh: an scp-like address (host:path) reaches the same repository" \
    env GIT_SSH_COMMAND="$GIT_SSH_COMMAND -p $GIT_SSH_PORT" git ls-remote "$GIT_SSH_USER@127.0.0.1:smoke.git"
  ssh-keygen -q -t ed25519 -N '' -f "$tmp/other_host_key"
  echo "[127.0.0.1]:$GIT_SSH_PORT $(cut -d' ' -f1,2 "$tmp/other_host_key.pub")" >"$tmp/wrong_known_hosts"
  refused "ssh: an unknown host key is refused (StrictHostKeyChecking=yes)" "Host key verification failed" \
    env GIT_SSH_COMMAND="$base_ssh -i $GIT_SSH_KEY -o UserKnownHostsFile=$tmp/wrong_known_hosts" \
    git ls-remote "$GIT_SSH_URL/smoke.git"
  : >"$tmp/empty_known_hosts"
  refused "ssh: a host missing from known_hosts is refused" "Host key verification failed" \
    env GIT_SSH_COMMAND="$base_ssh -i $GIT_SSH_KEY -o UserKnownHostsFile=$tmp/empty_known_hosts" \
    git ls-remote "$GIT_SSH_URL/smoke.git"
  ssh-keygen -q -t ed25519 -N '' -f "$tmp/stranger_key"
  refused "ssh: a key not in authorized_keys is refused" "Permission denied" \
    env GIT_SSH_COMMAND="$base_ssh -i $tmp/stranger_key -o UserKnownHostsFile=$GIT_SSH_KNOWN_HOSTS" \
    git ls-remote "$GIT_SSH_URL/smoke.git"
  refused "ssh: a shell command is refused" "only git" \
    sh -c "$GIT_SSH_COMMAND -p $GIT_SSH_PORT $GIT_SSH_USER@127.0.0.1 id"
  refused "ssh: a path outside the repositories is refused" "refused path" \
    env GIT_SSH_COMMAND="$GIT_SSH_COMMAND" git ls-remote "$GIT_SSH_URL/../https/repos/smoke.git"
else
  ko "ssh server did not start"; sed 's/^/    /' "$tmp/ssh.err"
fi

echo "== stop"
https_pid=$(sed -n 's/^GIT_HTTPS_PID=//p' "$tmp/https.env" 2>/dev/null)
ssh_pid=$(sed -n 's/^GIT_SSH_PID=//p' "$tmp/ssh.env" 2>/dev/null)
check "https server stops" "$here/git-https-server.sh" stop "$tmp/https"
check "ssh server stops" "$here/git-ssh-server.sh" stop "$tmp/ssh"
check "stopping twice is fine" bash -c "'$here/git-https-server.sh' stop '$tmp/https' && '$here/git-ssh-server.sh' stop '$tmp/ssh'"
alive() { local p; for p in "$@"; do [ -n "$p" ] && [ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null && return 0; done; return 1; }
if alive "$https_pid" "$ssh_pid"; then ko "a server process is left ($https_pid $ssh_pid)"; else ok "no server process is left"; fi
left=""
for p in /proc/[0-9]*; do
  p=${p#/proc/}
  [ "$p" = $$ ] || [ "$p" = "$BASHPID" ] && continue
  tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -qF -- "$tmp" && left="$left $p"
done
if [ -n "$left" ]; then ko "processes still name $tmp:$left"; else ok "no process names the state directory"; fi

echo "git servers smoke test: $((SECONDS - t0)) s"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
