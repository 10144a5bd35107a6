#!/usr/bin/env bash
# Builds the real FCC test device (docs/fcc.md): the unmodified upstream
# factory-configurator-client-example application and Imprint's fcc-verify and fcc-serve tools,
# all around the real Factory Configurator Client library, from the sources named by IMPRINT_FCC_SOURCE (a
# directory holding mbed-cloud-client/ and factory-configurator-client-example/).
#
#   scripts/fcc-device.sh [BUILD_DIR]
#
# BUILD_DIR defaults to $CARGO_TARGET_DIR/fcc-device (target/fcc-device without it). Idempotent:
# installs cmake, g++ and libmbedtls-dev with apt-get only when missing, and rebuilds only what
# changed. Several callers may run it at once (a lock serialises them). Prints the three binaries'
# paths on its last lines.
set -euo pipefail
repository="$(cd "$(dirname "$0")/.." && pwd)"

source_dir="${IMPRINT_FCC_SOURCE:-}"
if [ -z "$source_dir" ]; then
  echo "fcc-device: IMPRINT_FCC_SOURCE is not set; point it at a directory holding mbed-cloud-client/ and factory-configurator-client-example/ (docs/fcc.md)" >&2
  exit 2
fi
for required in mbed-cloud-client/factory-configurator-client mbed-cloud-client/mbed-client-pal \
  factory-configurator-client-example/source/factory_client_example.cpp; do
  if [ ! -e "$source_dir/$required" ]; then
    echo "fcc-device: IMPRINT_FCC_SOURCE=$source_dir lacks $required (expected an upstream mbed-cloud-client 4.13.x and factory-configurator-client-example 4.13.2 side by side, docs/fcc.md)" >&2
    exit 2
  fi
done
source_dir="$(cd "$source_dir" && pwd)"

build_dir="${1:-${CARGO_TARGET_DIR:-$repository/target}/fcc-device}"
mkdir -p "$build_dir"
build_dir="$(cd "$build_dir" && pwd)"

exec 9>"$build_dir/.lock"
flock 9

need_apt=()
command -v cmake >/dev/null || need_apt+=(cmake)
command -v g++ >/dev/null || need_apt+=(g++)
[ -f /usr/include/mbedtls/ssl.h ] || need_apt+=(libmbedtls-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "fcc-device: installing system packages: ${need_apt[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >&2
fi

# A build directory configured from another checkout (CI's clone shares CARGO_TARGET_DIR with the
# developer's tree) is configured afresh: cmake refuses to switch the project directory in place.
if [ -f "$build_dir/CMakeCache.txt" ] \
  && ! grep -qx "CMAKE_HOME_DIRECTORY:INTERNAL=$repository/tests/fcc-device" "$build_dir/CMakeCache.txt"; then
  rm -rf "$build_dir/CMakeCache.txt" "$build_dir/CMakeFiles"
fi
# Reconfigure when the source directory changed (another checkout) or nothing is configured yet.
configured_source="$(sed -n 's/^FCC_SOURCE:[A-Z]*=//p' "$build_dir/CMakeCache.txt" 2>/dev/null || true)"
if [ "$configured_source" != "$source_dir" ]; then
  cmake -S "$repository/tests/fcc-device" -B "$build_dir" -DFCC_SOURCE="$source_dir" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build_dir/configure.log" 2>&1 || {
    cat "$build_dir/configure.log" >&2
    exit 1
  }
fi
cmake --build "$build_dir" -j 2 >"$build_dir/build.log" 2>&1 || {
  tail -40 "$build_dir/build.log" >&2
  exit 1
}
echo "$build_dir/factory-configurator-client-example"
echo "$build_dir/fcc-verify"
echo "$build_dir/fcc-serve"
