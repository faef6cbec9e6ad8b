#!/usr/bin/env bash
# A git server over https for tests: git's own smart-HTTP backend (`git http-backend`, CGI)
# behind lighttpd (Debian: lighttpd, lighttpd-mod-openssl, apache2-utils for htpasswd,
# openssl) on 127.0.0.1, with a CA made at start, basic auth, and push enabled.
#
#   git-https-server.sh start DIR    start (DIR is created; any server already there is stopped)
#   git-https-server.sh stop DIR     stop it and every process it started (idempotent)
#   git-https-server.sh env DIR      print the KEY=VALUE lines of the running server again
#
# `start` prints, one per line (and keeps them in DIR/env):
#   GIT_HTTPS_URL=https://127.0.0.1:PORT/git   base URL; a repository is $GIT_HTTPS_URL/NAME.git
#   GIT_HTTPS_PORT, GIT_HTTPS_CA (PEM of the CA that signed the server certificate; the
#   certificate names 127.0.0.1 and localhost), GIT_HTTPS_USER, GIT_HTTPS_PASSWORD,
#   GIT_HTTPS_PASSWORD_FILE (the password alone, mode 0600), GIT_HTTPS_REPOS (the directory
#   served: `git init --bare "$GIT_HTTPS_REPOS/NAME.git"` creates a repository), GIT_HTTPS_PID.
# Every request needs the user and password (a wrong one is answered 401); pushing is enabled
# for an authenticated user. The user is `provisio` and the password random, unless
# GIT_HTTPS_USER / GIT_HTTPS_PASSWORD are set in the environment.
# Logs: DIR/lighttpd-error.log, DIR/access.log. Exit status: 0 ok, 1 failure (reason on stderr).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/tools/lib-servers.sh
. "$here/lib-servers.sh"

usage() { echo "usage: $0 start|stop|env DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
mkdir -p "$2"
dir=$(cd "$2" && pwd)
conf="$dir/lighttpd.conf"
pidfile="$dir/lighttpd.pid"

make_tls() {
  local tls=$dir/tls
  mkdir -p "$tls"
  # A CA, then a server certificate it signs (a self-signed leaf would not exercise CA files).
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=provisio test CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$tls/server.ext"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
    -CAcreateserial -days 2 -extfile "$tls/server.ext" -out "$tls/server.pem" 2>/dev/null
  chmod 600 "$tls/ca.key" "$tls/server.key"
}

write_conf() {
  local port=$1 backend
  backend="$(git --exec-path)/git-http-backend"
  [ -x "$backend" ] || die "git http-backend not found at $backend"
  cat >"$conf" <<EOF
# Written by git-https-server.sh; see git-http-backend(1), "lighttpd".
server.modules = ( "mod_alias", "mod_auth", "mod_authn_file", "mod_cgi", "mod_setenv",
                   "mod_openssl", "mod_accesslog" )
server.bind = "127.0.0.1"
server.port = $port
server.document-root = "$dir/www"
server.errorlog = "$dir/lighttpd-error.log"
server.pid-file = "$pidfile"
server.upload-dirs = ( "$dir/tmp" )
# git http-backend is a CGI: it needs CONTENT_LENGTH, so chunked request bodies (libgit2
# pushes with Transfer-Encoding: chunked) are buffered whole first (streaming them gives 411).
server.stream-request-body = 0
# HTTP/1.1 only (libgit2's protocol): lighttpd cannot hand an HTTP/2 request body of unknown
# length to a CGI, so stock git's larger pushes over h2 would fail.
server.feature-flags = ( "server.h2proto" => "disable" )
accesslog.filename = "$dir/access.log"
ssl.engine = "enable"
ssl.pemfile = "$dir/tls/server.pem"
ssl.privkey = "$dir/tls/server.key"
alias.url = ( "/git" => "$backend" )
\$HTTP["url"] =~ "^/git" {
  cgi.assign = ( "" => "" )
  # safe.directory: repositories created by another user than the server's are served too.
  setenv.add-environment = ( "GIT_PROJECT_ROOT" => "$dir/repos", "GIT_HTTP_EXPORT_ALL" => "",
                             "GIT_CONFIG_COUNT" => "1", "GIT_CONFIG_KEY_0" => "safe.directory",
                             "GIT_CONFIG_VALUE_0" => "*" )
  auth.backend = "htpasswd"
  auth.backend.htpasswd.userfile = "$dir/htpasswd"
  auth.require = ( "" => ( "method" => "basic", "realm" => "git", "require" => "valid-user" ) )
}
EOF
}

start() {
  command -v lighttpd >/dev/null || die "lighttpd is missing (apt-get install lighttpd lighttpd-mod-openssl)"
  command -v htpasswd >/dev/null || die "htpasswd is missing (apt-get install apache2-utils)"
  stop_pidfile "$pidfile" "$conf"
  mkdir -p "$dir/repos" "$dir/www" "$dir/tmp"
  make_tls
  local user=${GIT_HTTPS_USER:-provisio} password=${GIT_HTTPS_PASSWORD:-$(openssl rand -hex 16)}
  (umask 077 && printf '%s' "$password" >"$dir/password")
  htpasswd -cbB "$dir/htpasswd" "$user" "$password" 2>/dev/null
  local port attempt
  for attempt in $(seq 10); do
    port=$(free_port) || die "no free port found"
    write_conf "$port"
    lighttpd -tt -f "$conf" >/dev/null 2>"$dir/lighttpd-check.log" ||
      die "lighttpd rejects its configuration: $(cat "$dir/lighttpd-check.log")"
    # lighttpd daemonizes once it listens (its exit status says whether it could bind).
    if lighttpd -f "$conf" </dev/null >>"$dir/lighttpd-start.log" 2>&1 && wait_port "$port" 10; then
      emit "$dir" "GIT_HTTPS_URL=https://127.0.0.1:$port/git" "GIT_HTTPS_PORT=$port" \
        "GIT_HTTPS_CA=$dir/tls/ca.pem" "GIT_HTTPS_USER=$user" "GIT_HTTPS_PASSWORD=$password" \
        "GIT_HTTPS_PASSWORD_FILE=$dir/password" "GIT_HTTPS_REPOS=$dir/repos" \
        "GIT_HTTPS_PID=$(cat "$pidfile")"
      return 0
    fi
    stop_pidfile "$pidfile" "$conf"
    echo "git-https-server: port $port failed (attempt $attempt), trying another" >&2
  done
  die "lighttpd did not start; see $dir/lighttpd-error.log and $dir/lighttpd-start.log"
}

case $cmd in
  start) start ;;
  stop) stop_pidfile "$pidfile" "$conf" ;;
  env)
    if [ -f "$pidfile" ] && pid_matches "$(cat "$pidfile")" "$conf"; then cat "$dir/env"; else die "not running in $dir"; fi ;;
  *) usage ;;
esac
