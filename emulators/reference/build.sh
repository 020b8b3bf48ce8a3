#!/bin/bash
# Build the imagelake reference emulator image (emulators/reference-recon@<version>.yaml).
#
#   bash emulators/reference/build.sh --version 1.0|2.0 --out IMAGE_STORE [--force]
#                                     [--kernel-version 6.1.0-NN-amd64]
#
# Output: IMAGE_STORE/reference-recon/<version>/{rootfs.qcow2,vmlinuz,initrd.img,digests.json,
# build-info.json}; digests.json is {"<role>": {"file": ..., "sha256": ...}} as ImageStore reads it. Everything comes from Debian packages on this machine (linux-image-amd64,
# busybox-static, e2fsprogs, qemu-utils, gcc, cpio) plus recon.c compiled here: nothing binary is
# committed. Idempotent: when digests.json exists and every file still matches it, nothing is
# done. An existing version is never replaced by different bytes unless --force is given.
#
#   rootfs.qcow2  ext4 "vendor PC": busybox, /sbin/init, /opt/vendor/{recon,run-job,VERSION}
#   vmlinuz       the Debian kernel, as installed in /boot
#   initrd.img    busybox + the modules for virtio_pci, virtio_blk, ext4, vfat; its /init mounts
#                 /dev/vda and switches to the root filesystem's /sbin/init
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version="" out="" force=0 kver=""
usage() { sed -n '3,5p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --version) version=${2:-}; shift 2 ;;
        --out) out=${2:-}; shift 2 ;;
        --force) force=1; shift ;;
        --kernel-version) kver=${2:-}; shift 2 ;;
        -h|--help) usage ;;
        *) echo "build.sh: unknown argument $1" >&2; usage ;;
    esac
done
case "$version" in
    1.0) revision=1 ;;
    2.0) revision=2 ;;
    *) echo "build.sh: --version must be 1.0 or 2.0 (got '${version}')" >&2; exit 2 ;;
esac
[ -n "$out" ] || { echo "build.sh: --out IMAGE_STORE is required" >&2; exit 2; }

die() { echo "build.sh: $*" >&2; exit 1; }
need() {  # need TOOL DEBIAN-PACKAGE
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] ||
        die "'$1' is missing: install the Debian package $2 (apt-get install $2)"
}
PATH=$PATH:/usr/sbin:/sbin
need gcc gcc
need mke2fs e2fsprogs
need debugfs e2fsprogs
need qemu-img qemu-utils
need sha256sum coreutils
need modprobe kmod
need gzip gzip
[ -x /bin/busybox ] || die "/bin/busybox is missing: install the Debian package busybox-static"
file_type=$(od -An -c -N4 /bin/busybox | tr -d ' ')
[ "$file_type" = "177ELF" ] || die "/bin/busybox is not an ELF program"
if command -v cpio >/dev/null 2>&1; then cpio_cmd=(cpio --quiet -o -H newc -R 0:0 --reproducible)
else cpio_cmd=(/bin/busybox cpio -o -H newc); fi

dest="$out/reference-recon/$version"
files=(disk:rootfs.qcow2 initrd:initrd.img kernel:vmlinuz)  # sorted by role

# -- idempotence: verify what is there -------------------------------------------------------
verify() {  # verify DIR: every role's file matches digests.json
    local dir=$1 entry role name want got
    [ -f "$dir/digests.json" ] || return 1
    for entry in "${files[@]}"; do
        role=${entry%%:*} name=${entry#*:}
        # {"role": {"file": ..., "sha256": ...}} (ImageStore's layout), or {"role": "sha256"}
        want=$(tr -d ' \n\t' < "$dir/digests.json" |
            grep -o "\"$role\":\({[^}]*}\|\"[0-9a-f]*\"\)" | grep -o '[0-9a-f]\{64\}' | head -1)
        [ -n "$want" ] && [ -f "$dir/$name" ] || return 1
        got=$(sha256sum "$dir/$name" | cut -d' ' -f1)
        [ "$got" = "$want" ] || return 1
    done
}
sources=$(cd "$here" && cat build.sh recon.c guest/initramfs-init guest/rootfs-init guest/run-job |
    sha256sum | cut -d' ' -f1)
if [ -e "$dest" ] && [ "$force" != 1 ]; then
    if verify "$dest"; then
        echo "reference-recon $version: up to date in $dest (digests verified)"
        if ! grep -q "\"sources\": \"$sources\"" "$dest/build-info.json" 2>/dev/null; then
            echo "build.sh: note: the sources changed since $dest was built; a version's image" \
                "is never replaced silently (--force rebuilds it, or make a new version)" >&2
        fi
        exit 0
    fi
    die "$dest exists and does not match its digests.json (or has none);
refusing to replace an emulator version with different bytes. Inspect it, or pass --force."
fi

# -- kernel ------------------------------------------------------------------------------------
if [ -z "$kver" ]; then
    for k in $(ls -1 /boot/vmlinuz-*-amd64 2>/dev/null | sed 's|/boot/vmlinuz-||' | sort -V -r); do
        if [ -d "/lib/modules/$k" ]; then kver=$k; break; fi
    done
fi
[ -n "$kver" ] && [ -e "/boot/vmlinuz-$kver" ] && [ -d "/lib/modules/$kver" ] ||
    die "no Debian kernel with modules found (/boot/vmlinuz-*-amd64 and /lib/modules/<version>): install linux-image-amd64"
[ -r "/boot/vmlinuz-$kver" ] || die "/boot/vmlinuz-$kver is not readable: Debian makes it readable by root only; build as root"

mkdir -p "$out/reference-recon"
work=$(mktemp -d "$out/reference-recon/.build-$version.XXXXXX")
trap 'rm -rf "$work"' EXIT
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
export E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH

# -- the vendor program ------------------------------------------------------------------------
gcc -static -O2 -s -std=gnu11 -Wall -ffile-prefix-map="$here"=. \
    -DREFSCAN_SOFTWARE_REVISION="$revision" -DSOFTWARE_VERSION="\"$version\"" \
    -o "$work/recon" "$here/recon.c" -lm

# -- root filesystem: busybox, /sbin/init, /opt/vendor -----------------------------------------
root="$work/rootfs"
mkdir -p "$root"/{bin,sbin,dev,proc,sys,job,tmp,opt/vendor}
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
install -m 0755 "$here/guest/rootfs-init" "$root/sbin/init"
install -m 0755 "$here/guest/run-job" "$root/opt/vendor/run-job"
install -m 0755 "$work/recon" "$root/opt/vendor/recon"
printf '%s\n' "$version" > "$root/opt/vendor/SOFTWARE_VERSION"
printf 'reference-recon %s (reads refscan revision %s; imagelake reference emulator)\n' \
    "$version" "$revision" > "$root/opt/vendor/VERSION"
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mke2fs -q -F -t ext4 -L REFRECON -U 6b1e7d52-8a55-4f00-9c1e-00000000000$revision \
    -E root_owner=0:0,hash_seed=6b1e7d52-8a55-4f00-9c1e-000000000000 \
    -d "$root" "$work/rootfs.img" 32M >/dev/null
# mke2fs -d copies each file's change time (ctime), which touch cannot set: pin it, so that
# building the same sources again gives the same bytes
{
    echo "sif / ctime @$SOURCE_DATE_EPOCH"
    echo "sif /lost+found ctime @$SOURCE_DATE_EPOCH"
    (cd "$root" && find . -mindepth 1 | LC_ALL=C sort | sed "s|^\.\(.*\)|sif \1 ctime @$SOURCE_DATE_EPOCH|")
} > "$work/pin-times.debugfs"
debugfs -w -f "$work/pin-times.debugfs" "$work/rootfs.img" >/dev/null 2>&1 ||
    die "debugfs could not pin the file times of the root filesystem"
qemu-img convert -q -O qcow2 "$work/rootfs.img" "$work/rootfs.qcow2"

# -- initramfs: busybox + modules in dependency order ------------------------------------------
init="$work/initramfs"
mkdir -p "$init"/{bin,dev,proc,sys,newroot,lib/modules}
cp /bin/busybox "$init/bin/busybox"
for applet in sh mount umount insmod sleep mkdir switch_root poweroff sync echo cat; do
    ln -s busybox "$init/bin/$applet"
done
install -m 0755 "$here/guest/initramfs-init" "$init/init"
: > "$init/lib/modules/load-order"
for mod in virtio_pci virtio_blk ext4 vfat nls_cp437 nls_ascii nls_utf8; do
    modprobe -S "$kver" --show-depends "$mod" 2>/dev/null | while read -r cmd path _; do
        [ "$cmd" = insmod ] || continue  # "builtin X" needs nothing
        name=$(basename "$path")
        name=${name%.xz} name=${name%.zst}
        grep -qx "$name" "$init/lib/modules/load-order" && continue
        case "$path" in
            *.xz) xz -dc "$path" > "$init/lib/modules/$name" ;;
            *.zst) zstd -qdc "$path" > "$init/lib/modules/$name" ;;
            *) cp "$path" "$init/lib/modules/$name" ;;
        esac
        echo "$name" >> "$init/lib/modules/load-order"
    done
done
grep -q '^ext4.ko$' "$init/lib/modules/load-order" ||
    die "modprobe found no ext4 module for kernel $kver (is /lib/modules/$kver complete?)"
find "$init" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# /dev/console as a newc entry written here, so building needs no mknod (no root)
cpio_entry() {  # cpio_entry NAME MODE(octal) RDEVMAJOR RDEVMINOR
    local name=$1 namesize=$((${#1} + 1))
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\0' \
        1 $((8#$2)) 0 0 1 "$SOURCE_DATE_EPOCH" 0 0 0 "$3" "$4" "$namesize" 0 "$name"
    local pad=$(( (4 - (110 + namesize) % 4) % 4 ))
    head -c "$pad" /dev/zero
}
{
    cpio_entry dev/console 020600 5 1
    cpio_entry TRAILER!!! 0 0 0
    (cd "$init" && find . -mindepth 1 | LC_ALL=C sort | "${cpio_cmd[@]}")
} | gzip -n -9 > "$work/initrd.img"
cp "/boot/vmlinuz-$kver" "$work/vmlinuz"

# -- digests, then move into place -------------------------------------------------------------
stage="$work/out"
mkdir -p "$stage"
mv "$work/rootfs.qcow2" "$work/vmlinuz" "$work/initrd.img" "$stage/"
{
    echo "{"
    sep=","
    n=0
    for entry in "${files[@]}"; do
        n=$((n + 1)); [ $n -eq ${#files[@]} ] && sep=""
        role=${entry%%:*} name=${entry#*:}
        printf '  "%s": {"file": "%s", "sha256": "%s"}%s\n' "$role" "$name" \
            "$(sha256sum "$stage/$name" | cut -d' ' -f1)" "$sep"
    done
    echo "}"
} > "$stage/digests.json"
cat > "$stage/build-info.json" <<EOF
{
  "id": "reference-recon",
  "version": "$version",
  "refscan_revision": $revision,
  "kernel": "$kver",
  "modules": "$(tr '\n' ' ' < "$init/lib/modules/load-order" | sed 's/ $//')",
  "busybox": "$(/bin/busybox | head -1 | sed 's/"//g')",
  "gcc": "$(gcc -dumpfullversion)",
  "source_date_epoch": $SOURCE_DATE_EPOCH,
  "sources": "$sources"
}
EOF
if [ -e "$dest" ]; then rm -rf "$dest"; fi
mv "$stage" "$dest"
echo "reference-recon $version: built in $dest (kernel $kver)"
cat "$dest/digests.json"
