#!/usr/bin/env bash
# The root file system of provisio's image, from Debian packages (one definition shared by the
# Dockerfile and scripts/build-image.sh):
#
#   scripts/image-rootfs.sh ROOTFS BINARY
#
# ROOTFS gets exactly what runs: the shared libraries BINARY links (found with ldd, mapped to
# their packages with dpkg -S on this machine) and libc6, libgcc-s1, zlib1g, libssl3 (git over
# https, and the crypto of ssh: libssh2 itself is linked statically); mariadb-dump (backups) with the client plugins of libmariadb3; the CA bundle; the
# os-release of base-files; package records in /var/lib/dpkg/status.d (the distroless layout,
# which image scanners read); the user provisio (10001:10001); /tmp (1777) and /work (the
# user's). No shell, no package manager, no perl. BINARY itself is not copied: it is the next
# layer. Packages come from the machine's apt sources (apt-get download; run apt-get update
# first on a fresh machine). Needs root (file ownership) and dpkg-deb.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 ROOTFS BINARY" >&2; exit 2; }
rootfs=$1 binary=$2
uid=10001
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$rootfs"

# Shared libraries of an ELF file → the Debian packages that ship them.
packages_of_libs() {
  ldd "$1" | awk '/=> \//{print $3}' | while read -r lib; do
    dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib" 2>/dev/null || true
  done | cut -d: -f1 | sort -u
}

mapfile -t pkgs < <({ packages_of_libs "$binary"; printf '%s\n' libc6 libgcc-s1 zlib1g libssl3 \
  libmariadb3 ca-certificates base-files; } | sort -u)
echo "image-rootfs: apt-get download ${pkgs[*]} mariadb-client" >&2
mkdir -p "$work/debs"
(cd "$work/debs" && apt-get download -q "${pkgs[@]}" mariadb-client >/dev/null 2>"$work/download.log") ||
  { cat "$work/download.log" >&2; echo "error: apt-get download failed" >&2; exit 1; }

mkdir -p "$rootfs/var/lib/dpkg/status.d"
for deb in "$work"/debs/*.deb; do
  name=$(dpkg-deb -f "$deb" Package)
  if [ "$name" = mariadb-client ]; then
    # Only the dump tool; the rest of the package is perl scripts and admin tools.
    dpkg-deb -x "$deb" "$work/mariadb-client"
    install -D -m 755 "$work/mariadb-client/usr/bin/mariadb-dump" "$rootfs/usr/bin/mariadb-dump"
    ln -sfn mariadb-dump "$rootfs/usr/bin/mysqldump"
  else
    dpkg-deb -x "$deb" "$rootfs"
  fi
  { dpkg-deb -f "$deb"; echo "Status: install ok installed"; } >"$rootfs/var/lib/dpkg/status.d/$name"
done

# What the maintainer scripts of ca-certificates and openssl would have made.
mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/usr/lib/ssl"
find "$rootfs/usr/share/ca-certificates/mozilla" -name '*.crt' | sort | xargs cat \
  >"$rootfs/etc/ssl/certs/ca-certificates.crt"
ln -sfn /etc/ssl/certs "$rootfs/usr/lib/ssl/certs"
ln -sfn /etc/ssl/certs/ca-certificates.crt "$rootfs/usr/lib/ssl/cert.pem"
# Documentation, manuals, locales and the certificates' sources are not needed to run.
rm -rf "$rootfs"/usr/share/{doc,man,info,lintian,locale} "$rootfs/usr/share/ca-certificates"

# The user (numeric, so that the kubelet can check runAsNonRoot), name lookups from files.
mkdir -p "$rootfs/etc" "$rootfs/tmp" "$rootfs/work"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nprovisio:x:%s:%s:provisio:/work:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' "$uid" "$uid" >"$rootfs/etc/passwd"
printf 'root:x:0:\nprovisio:x:%s:\nnogroup:x:65534:\n' "$uid" >"$rootfs/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
chmod 1777 "$rootfs/tmp"
chown "$uid:$uid" "$rootfs/work"
