#!/usr/bin/env bash
# shellcheck disable=SC2034  # the PKGS_* variables are read indirectly, as ${!var}
# Install the Debian packages imagelake needs.
#
#   bash scripts/setup-system.sh           install what is missing (as root), or say what is missing
#   bash scripts/setup-system.sh --check   only report; exit 1 when something is missing
#   bash scripts/setup-system.sh --list    print the package names, one a line
#
# As root: one `apt-get update`, then one `apt-get install` of the missing packages, and nothing at
# all when every package is already installed (a dpkg query, well under a second). Not root: print
# what is missing and the command that installs it, then exit 0, so `make test` goes on and the
# tests that need a missing tool say so (skip locally, fail under CI=true).
#
# To add packages for a feature, add a PKGS_<FEATURE> variable below and name it in FEATURES.
# IMAGELAKE_APT_EXTRA (space-separated) adds packages for one run without editing this file.
set -euo pipefail

# Root's tools (runuser; ldconfig and start-stop-daemon for dpkg) live in sbin, which a minimal
# PATH may lack.
case ":$PATH:" in *:/usr/sbin:*) ;; *) export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" ;; esac

PKGS_BUILD="git make"                          # the Makefile and a checkout
PKGS_DICOM_PEERS="dcmtk dicom3tools dcm2niix"  # storescu/dcmdump, dciodvfy, dcm2niix: real peers in tests
PKGS_COMPRESSION="pigz"
PKGS_DATABASE="postgresql"                     # scripts/pg-test-server.sh runs a throwaway cluster
PKGS_BENCH="hyperfine"                         # whole-command timing in benchmarks/
PKGS_RAW="ismrmrd-tools"                       # real ISMRMRD files and the reference C++ recon
PKGS_PRIVACY="orthanc pixelmed-apps"           # two independent Basic Profile anonymizers (tests)
# Emulator VMs (scripts/libvirtd.sh, imagelake.emulators): QEMU + libvirt; libvirt-dev and pkg-config
# so pip can build libvirt-python (the `emulators` extra, in `test`) when the venv is made, which
# is why `make` runs this script before it makes the venv (gcc compiles it; with Debian's own
# python, python3-dev below brings the headers); the Debian kernel, busybox-static,
# mtools and e2fsprogs build the test guests and job disks (mke2fs -d, debugfs, mcopy).
PKGS_EMULATORS="qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients libvirt-dev pkg-config gcc linux-image-amd64 busybox-static mtools e2fsprogs kmod cpio libc6-dev"
PKGS_BROWSER="chromium chromium-driver fonts-dejavu-core"  # JupyterLab tests in a real browser
PKGS_PYTHON=""                                 # filled in below when the python in use is Debian's

FEATURES="BUILD DICOM_PEERS COMPRESSION DATABASE BENCH RAW PRIVACY EMULATORS BROWSER PYTHON"

mode=install
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  --list) mode=list ;;
  -h|--help) sed -n '3,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "setup-system.sh: unknown option '$1' (valid: --check, --list, --help)" >&2; exit 2 ;;
esac

say() { printf 'setup-system: %s\n' "$*" >&2; }

# Debian's own python3 needs python3-venv for `python3 -m venv`; a python built elsewhere (pyenv,
# python.org, conda) brings venv and ensurepip itself, and python3-venv would not help it.
python_bin="${PYTHON:-python3}"
if ! command -v "$python_bin" >/dev/null 2>&1; then
  PKGS_PYTHON="python3 python3-venv python3-dev"
elif [ "$("$python_bin" -c 'import sys; print(sys.base_prefix)' 2>/dev/null)" = "/usr" ]; then
  PKGS_PYTHON="python3-venv python3-dev"  # -dev: headers for libvirt-python, which pip compiles
fi

wanted=()
for feature in $FEATURES; do
  var="PKGS_${feature}"
  for pkg in ${!var}; do wanted+=("$pkg"); done
done
for pkg in ${IMAGELAKE_APT_EXTRA:-}; do wanted+=("$pkg"); done

if [ "$mode" = list ]; then
  printf '%s\n' "${wanted[@]}"
  exit 0
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
  say "this is not a Debian-like system (no dpkg-query); install the equivalents of:"
  say "  ${wanted[*]}"
  [ "$mode" = check ] && exit 1
  exit 0
fi

# One dpkg-query for all packages; a package dpkg has never heard of prints nothing for itself.
installed=$(dpkg-query -W -f='${binary:Package} ${db:Status-Status}\n' "${wanted[@]}" 2>/dev/null \
  | awk '$2 == "installed" { sub(/:.*/, "", $1); print $1 }' || true)
missing=()
for pkg in "${wanted[@]}"; do
  if ! grep -qxF -- "$pkg" <<<"$installed"; then missing+=("$pkg"); fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  say "all ${#wanted[@]} Debian packages present"
  exit 0
fi

install_cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"

if [ "$mode" = check ]; then
  say "missing Debian packages: ${missing[*]}"
  exit 1
fi

if [ "$(id -u)" -ne 0 ]; then
  say "missing Debian packages: ${missing[*]}"
  say "install them as root with:  sudo bash scripts/setup-system.sh"
  say "                      or:  sudo sh -c '$install_cmd'"
  say "going on without them: tests that need them skip (and fail under CI=true)"
  exit 0
fi

say "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -q --no-install-recommends "${missing[@]}"
say "done"
