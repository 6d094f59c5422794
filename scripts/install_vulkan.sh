#!/usr/bin/env bash
# Installs the software Vulkan driver SAPIEN (ManiSkill3) needs to render on a CPU.
#
# Debian 12's own lavapipe (Mesa 22.3) lacks VK_KHR_external_semaphore_fd, which SAPIEN requires, so
# Mesa >= 24.3 lavapipe is taken from bookworm-backports with a private apt state (the machine's apt
# sources are never changed) and unpacked into $CACHE. Only the Vulkan loader, libvulkan1, is a system
# package. Idempotent: a second run finds the ICD file and returns at once.
set -euo pipefail

CACHE="$(realpath -m "${1:?usage: install_vulkan.sh CACHE_DIR}")"
ICD="$CACHE/lvp_icd.json"
LIBDIR="$CACHE/root/usr/lib/$(uname -m)-linux-gnu"
if [[ -f "$ICD" && -f "$LIBDIR/libvulkan_lvp.so" ]]; then
  exit 0
fi

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

if ! ldconfig -p | grep 'libvulkan.so.1 ' >/dev/null; then
  echo "[vulkan] installing the system Vulkan loader (libvulkan1)"
  as_root apt-get install -y -q libvulkan1 >/dev/null 2>&1 || {
    as_root apt-get update -q >/dev/null
    as_root apt-get install -y -q libvulkan1 >/dev/null
  }
fi

echo "[vulkan] fetching Mesa lavapipe from bookworm-backports into $CACHE"
APT="$CACHE/apt"
rm -rf "$APT" "$CACHE/root" "$CACHE/debs"
mkdir -p "$APT/state/lists/partial" "$APT/cache/archives/partial" "$CACHE/debs"
cat > "$APT/sources.list" <<SRC
deb http://deb.debian.org/debian bookworm-backports main
deb http://deb.debian.org/debian bookworm main
SRC
OPTS=(-o "Dir::Etc::SourceList=$APT/sources.list" -o Dir::Etc::SourceParts=/dev/null
      -o "Dir::State=$APT/state" -o "Dir::Cache=$APT/cache" -o Debug::NoLocking=1
      -o APT::Sandbox::User=root)
apt-get "${OPTS[@]}" -q update >/dev/null
(cd "$CACHE/debs" && apt-get "${OPTS[@]}" -q download \
  mesa-vulkan-drivers/bookworm-backports libdrm2/bookworm-backports \
  libdrm-amdgpu1/bookworm-backports >/dev/null)
for deb in "$CACHE"/debs/*.deb; do dpkg -x "$deb" "$CACHE/root"; done

if LD_LIBRARY_PATH="$LIBDIR" ldd "$LIBDIR/libvulkan_lvp.so" | grep 'not found' >/dev/null; then
  echo "[vulkan] ERROR: lavapipe has unmet system libraries:" >&2
  LD_LIBRARY_PATH="$LIBDIR" ldd "$LIBDIR/libvulkan_lvp.so" | grep 'not found' >&2
  exit 1
fi
python3 - "$CACHE/root/usr/share/vulkan/icd.d/lvp_icd.json" "$LIBDIR/libvulkan_lvp.so" "$ICD" <<'PY'
import json, sys
src, lib, dst = sys.argv[1:]
icd = json.load(open(src))
icd["ICD"]["library_path"] = lib
json.dump(icd, open(dst + ".tmp", "w"), indent=2)
PY
mv "$ICD.tmp" "$ICD"
rm -rf "$APT" "$CACHE/debs"
echo "[vulkan] lavapipe ready: $ICD"
