#!/usr/bin/env bash
# Builds provisio's container image without Docker and without any container registry: a root
# file system assembled from Debian packages, packed as an OCI image layout with Debian's
# `umoci`, then its entrypoint is run (runc when it works here, otherwise the same config
# through unshare + chroot, read-only root and a tmpfs /tmp and /work, as the Pod runs it):
# `provisio --version`, and `provisio generate` on the bundled example registry. The Dockerfile
# builds the same image where a Docker engine and registry are available.
#
#   scripts/build-image.sh [--binary PATH] [--method dpkg|debootstrap] [--out DIR] [--tag TAG]
#                          [--runner auto|runc|chroot] [--no-run]
#
#   --binary  the provisio binary to ship (default target/release/provisio)
#   --method  dpkg (default): `apt-get download` of the few packages needed and `dpkg-deb -x`;
#             debootstrap: `debootstrap --variant=minbase` plus apt-get install in a chroot
#   --out     output directory (default target/image): DIR/oci is the OCI image layout,
#             DIR/provisio-TAG.oci.tar the same as one archive (`skopeo copy
#             oci-archive:… docker://…` or `crane push` publishes it)
#   --tag     image tag (default: the binary's version)
#   --runner  how the entrypoint is run: runc, or chroot (unshare + chroot with the image's
#             user, environment, read-only root and tmpfs /tmp and /work); auto (default)
#             tries runc first
#
# Needs root (chroot, dpkg-deb ownership) and Debian's umoci, plus runc or unshare to run it;
# debootstrap only for --method debootstrap. Packages come from the machine's apt sources.
# Prints the build time, the image size and the run checks; exit 0 when all passed.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=target/release/provisio method=dpkg out=target/image tag="" run=1 want_runner=auto
while (($#)); do
  case $1 in
    --binary) binary=$2; shift 2 ;;
    --method) method=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --runner) want_runner=$2; shift 2 ;;
    --no-run) run=0; shift ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
log() { printf '==> %s\n' "$*" >&2; }
die() { echo "error: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (chroot and file ownership in the image)"
[ -x "$binary" ] || die "no provisio binary at $binary (cargo build --locked --release, or --binary PATH)"
command -v umoci >/dev/null || die "umoci is missing (apt-get install umoci)"
binary=$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")
version=$("$binary" --version | awk '{print $2}')
tag=${tag:-$version}
uid=10001
start=$(date +%s%N)
# Seconds since the start, one decimal.
elapsed() { local ms=$((($(date +%s%N) - start) / 1000000)); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "$out/.build.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
rootfs=$work/rootfs
mkdir -p "$rootfs"

# --- 1. the root file system from Debian packages -------------------------------------------
if [ "$method" = dpkg ]; then
  # Exactly what runs, nothing else: see scripts/image-rootfs.sh (shared with the Dockerfile).
  bash scripts/image-rootfs.sh "$rootfs" "$binary"
elif [ "$method" = debootstrap ]; then
  command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
  mirror=$(sed -n 's/^URIs: *\(.*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
  mirror=${mirror:-http://deb.debian.org/debian}
  log "debootstrap --variant=minbase bookworm ($mirror)"
  debootstrap --variant=minbase --include=ca-certificates,mariadb-client bookworm "$rootfs" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/{doc,man,info,locale}
else
  die "--method is dpkg or debootstrap"
fi

# --- 2. the binary and the example (the second layer) --------------------------------------
if [ "$method" = debootstrap ]; then
  chroot "$rootfs" groupadd --gid "$uid" provisio
  chroot "$rootfs" useradd --uid "$uid" --gid "$uid" --home-dir /work --no-create-home --shell /usr/sbin/nologin provisio
  mkdir -p "$rootfs/work" && chown "$uid:$uid" "$rootfs/work"
fi
base_size=$(du -sk "$rootfs" | cut -f1)

app=$work/app
mkdir -p "$app/usr/local/bin" "$app/usr/share/provisio"
install -m 755 "$binary" "$app/usr/local/bin/provisio"
# Debug information (line tables, ~80% of a release binary) stays out of the image; the
# symbol table stays, so a backtrace still names the functions.
if command -v strip >/dev/null; then strip --strip-debug "$app/usr/local/bin/provisio"; fi
# The bundled example: `provisio generate --registry /usr/share/provisio/registry --out DIR`.
cp -r registry "$app/usr/share/provisio/registry"
chmod -R a+rX,go-w "$app/usr/share/provisio"

# --- 3. the OCI image: two layers (Debian packages, provisio) and the config ----------------
oci=$out/oci
rm -rf "$oci"
umoci init --layout "$oci"
umoci new --image "$oci:$tag"
umoci insert --image "$oci:$tag" --history.created_by "debian packages ($method)" "$rootfs" /
umoci insert --image "$oci:$tag" --history.created_by "provisio $version" "$app" /
umoci config --image "$oci:$tag" \
  --config.user "$uid:$uid" \
  --config.workingdir /work \
  --config.entrypoint /usr/local/bin/provisio \
  --config.cmd --help \
  --config.env PATH=/usr/local/bin:/usr/bin:/bin \
  --config.env HOME=/tmp \
  --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --config.label "org.opencontainers.image.title=provisio" \
  --config.label "org.opencontainers.image.version=$version" \
  --config.label "org.opencontainers.image.source=https://gitlab.collectverything.com/platform/provisio" \
  --config.label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  --history.created_by "provisio image config"
umoci gc --layout "$oci"
tar -C "$oci" -cf "$out/provisio-$tag.oci.tar" .
built=$(elapsed)

# Sizes: each layer as stored (gzip) and unpacked.
read -r base_gz app_gz < <(python3 - "$oci" <<'EOF'
import json, sys
oci = sys.argv[1]
index = json.load(open(f"{oci}/index.json"))
manifest = json.load(open(f"{oci}/blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]))
print(*(layer["size"] for layer in manifest["layers"]))
EOF
)
iec() { numfmt --to=iec-i --suffix=B "$1"; }
app_size=$(du -sk "$app" | cut -f1)
printf 'image: %s:%s (OCI layout; archive %s)\n' "$oci" "$tag" "$out/provisio-$tag.oci.tar"
printf 'build time: %s s (method %s)\n' "$built" "$method"
printf 'size: %s compressed (%s unpacked): Debian layer %s (%s), provisio + example layer %s (%s)\n' \
  "$(iec $((base_gz + app_gz)))" "$(iec $(((base_size + app_size) * 1024)))" \
  "$(iec "$base_gz")" "$(iec $((base_size * 1024)))" "$(iec "$app_gz")" "$(iec $((app_size * 1024)))"

[ "$run" = 1 ] || exit 0

# --- 4. run the entrypoint ------------------------------------------------------------------
bundle=$work/bundle
umoci unpack --image "$oci:$tag" "$bundle" >/dev/null
# As the Pod runs it: read-only root, /tmp and /work writable (the emptyDirs).
# (/work belongs to the image's user, as an emptyDir does to the Pod's fsGroup.)
python3 - "$bundle/config.json" "$uid" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
uid = sys.argv[2]
c["process"]["terminal"] = False
c["root"]["readonly"] = True
c["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                    "options": ["nosuid", "nodev", "mode=1777"]})
c["mounts"].append({"destination": "/work", "type": "tmpfs", "source": "tmpfs",
                    "options": ["nosuid", "nodev", "mode=0755", f"uid={uid}", f"gid={uid}"]})
json.dump(c, open(sys.argv[1], "w"), indent=1)
EOF
process() { python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["process"]; print(eval(sys.argv[2]))' "$bundle/config.json" "$1"; }
entrypoint=$(process 'p["args"][0]')
user=$(process 'str(p["user"]["uid"]) + ":" + str(p["user"]["gid"])')
mapfile -t env < <(process '"\n".join(p["env"])')

runner=""
# run_as_image PROGRAM ARGS...: PROGRAM from the image, as the image's user, read-only root.
run_as_image() {
  if [ "$runner" = runc ]; then
    python3 - "$bundle/config.json" "$@" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["process"]["args"] = sys.argv[2:]
json.dump(c, open(sys.argv[1], "w"), indent=1)
EOF
    runc --root "$work/runc" run --bundle "$bundle" "provisio-check-$$-$RANDOM" </dev/null
  else
    # The same user and environment from the image config, in private mount and pid
    # namespaces: the root bind-mounted read-only, tmpfs on /tmp and /work. (chroot starts
    # in /, not in the config's working directory /work: the checks pass absolute paths.)
    unshare --mount --pid --fork --propagation private sh -c '
      root=$1 uid=$2; shift 2
      mount --bind "$root" "$root" && mount -o remount,bind,ro "$root" &&
        mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs "$root/tmp" &&
        mount -t tmpfs -o "nosuid,nodev,mode=0755,uid=$uid,gid=$uid" tmpfs "$root/work" && exec "$@"' \
      sh "$bundle/rootfs" "$uid" env -i "${env[@]}" "$(command -v chroot)" --userspec="$user" "$bundle/rootfs" "$@"
  fi
}
# run_image ARGS...: the image's entrypoint with ARGS.
run_image() { run_as_image "$entrypoint" "$@"; }

if [ "$want_runner" = runc ] || { [ "$want_runner" = auto ] && command -v runc >/dev/null &&
  run_probe=$(runner=runc; run_as_image "$entrypoint" --version 2>&1); }; then
  runner=runc
elif [ "$want_runner" = chroot ]; then
  runner=chroot
else
  runner=chroot
  log "runc cannot run a container here ($(printf '%s' "${run_probe:-runc missing}" | tail -1)); using unshare + chroot"
fi

failed=0
check() {
  local what=$1 out; shift
  if out=$("$@" 2>&1); then echo "ok: $what"; else echo "FAILED: $what"; printf '%s\n' "$out" | sed 's/^/    /'; failed=1; fi
}
version_is() { [ "$(run_image --version)" = "provisio $version" ]; }
generate_example() {
  # The bundled example registry rendered into the writable /work (a fresh tmpfs per run).
  run_image generate --registry /usr/share/provisio/registry --out /work/out
}
read_only_root() {
  # Writing next to the registry, on the image's root, must fail, and say why.
  local out
  if out=$(run_image generate --registry /usr/share/provisio/registry --out /usr/share/provisio/out 2>&1); then
    echo "generate wrote to the root file system"; return 1
  fi
  grep -q 'Read-only file system' <<<"$out" || { echo "$out"; return 1; }
}
libraries_resolve() {
  local f missing=0
  for f in usr/local/bin/provisio usr/bin/mariadb-dump; do
    # The image's own loader lists the libraries it would load, with the image as root.
    if chroot "$bundle/rootfs" /lib64/ld-linux-x86-64.so.2 --list "/$f" | grep -q 'not found'; then
      chroot "$bundle/rootfs" /lib64/ld-linux-x86-64.so.2 --list "/$f"; missing=1
    fi
  done
  return "$missing"
}
check "[$runner] entrypoint runs as $user: provisio --version is provisio $version" version_is
check "[$runner] provisio generate on the bundled example registry into /work" generate_example
check "[$runner] the root file system is read-only (generate into /usr/share fails)" read_only_root
check "[$runner] mariadb-dump runs" run_as_image /usr/bin/mariadb-dump --version
if [ "$method" = dpkg ]; then
  check "no shell and no package manager in the image" \
    sh -c "! ls '$bundle/rootfs/bin/sh' '$bundle/rootfs/usr/bin/sh' '$bundle/rootfs/usr/bin/dpkg' '$bundle/rootfs/usr/bin/apt' 2>/dev/null | grep -q ."
fi
check "every shared library of provisio and mariadb-dump resolves inside the image" libraries_resolve
printf 'build + checks: %s s\n' "$(elapsed)"
exit "$failed"
