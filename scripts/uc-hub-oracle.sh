#!/usr/bin/env bash
# Builds the update-client-hub host oracles (tests/uc-hub-oracle: `uc-header`, `uc-manifest`)
# from the device's own sources, and prints the directory that holds the two programs.
#
# IMPRINT_UCHUB_SOURCE names a directory that holds `mbed-cloud-client/update-client-hub` (the
# upstream mbed-cloud-client tree's parent: on this project's machines /work/shared/third_party,
# or the parent of an upstream checkout of PelionIoT/mbed-cloud-client named mbed-cloud-client).
# Two headers come from next to it: mbed-cloud-client/mbed-trace and
# mbed-cloud-client/factory-configurator-client/key-config-manager.
# The build goes to IMPRINT_UCHUB_BUILD (default: $CARGO_TARGET_DIR/uc-hub-oracle, else
# target/uc-hub-oracle). cmake, a C compiler and libmbedtls-dev are installed with apt-get when
# missing. Nothing of the upstream sources is copied into the project.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

if [ -z "${IMPRINT_UCHUB_SOURCE:-}" ]; then
  echo "uc-hub-oracle: IMPRINT_UCHUB_SOURCE is not set: give the directory that holds mbed-cloud-client/update-client-hub (for example /work/shared/third_party)" >&2
  exit 2
fi
if [ ! -f "$IMPRINT_UCHUB_SOURCE/mbed-cloud-client/update-client-hub/modules/metadata-header/source/arm_uc_metadata_header_v2.c" ]; then
  echo "uc-hub-oracle: IMPRINT_UCHUB_SOURCE=$IMPRINT_UCHUB_SOURCE holds no mbed-cloud-client/update-client-hub/modules/metadata-header/source/arm_uc_metadata_header_v2.c" >&2
  exit 2
fi
source_dir="$(cd "$IMPRINT_UCHUB_SOURCE" && pwd)"

need_apt=()
command -v cmake >/dev/null || need_apt+=(cmake)
command -v cc >/dev/null || need_apt+=(gcc)
command -v g++ >/dev/null || need_apt+=(g++)
[ -f /usr/include/mbedtls/md_internal.h ] || need_apt+=(libmbedtls-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "uc-hub-oracle: installing ${need_apt[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >&2
fi

target_dir="${CARGO_TARGET_DIR:-$repo/target}"
build_dir="${IMPRINT_UCHUB_BUILD:-$target_dir/uc-hub-oracle}"
# A build directory configured from another checkout (a shared CARGO_TARGET_DIR) or another
# source tree is started afresh: cmake refuses to switch either in place.
cache="$build_dir/CMakeCache.txt"
if [ -f "$cache" ] && { ! grep -qx "CMAKE_HOME_DIRECTORY:INTERNAL=$repo/tests/uc-hub-oracle" "$cache" \
    || ! grep -qx "UCHUB_SOURCE:UNINITIALIZED=$source_dir" "$cache"; }; then
  rm -rf "$build_dir"
fi
mkdir -p "$build_dir"
cmake -S "$repo/tests/uc-hub-oracle" -B "$build_dir" -DUCHUB_SOURCE="$source_dir" \
  -DCMAKE_BUILD_TYPE=Release >"$build_dir/configure.log" 2>&1 \
  || { cat "$build_dir/configure.log" >&2; exit 1; }
cmake --build "$build_dir" -j 2 >"$build_dir/build.log" 2>&1 \
  || { cat "$build_dir/build.log" >&2; exit 1; }
echo "$build_dir"
