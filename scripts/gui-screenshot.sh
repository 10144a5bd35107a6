#!/usr/bin/env bash
# Runs the real `imprint gui` window in a virtual X display (Xvfb, Mesa software rendering) on
# the demo profile, lets it provision units unattended, screenshots the whole screen with
# ImageMagick's `import -window root`, checks the picture is not trivial (size, colour count)
# and writes it to docs/screenshot.png (the README shows it). `scripts/test` calls this.
#
#   scripts/gui-screenshot.sh                 # 4 slots, 12 units, one injected fault
#   SLOTS=16 UNITS=160 SCREENSHOT=none FRAME_STATS=frames.json scripts/gui-screenshot.sh
#                                             # the frame-time measurement of docs/performance.md
#   SLOTS=64 UNITS=128 SIZE=1920x1080 SCREENSHOT=docs/gui-64-slots-1920x1080.png scripts/gui-screenshot.sh
#   LATCH=1 SCREENSHOT=docs/gui-latched-fail.png scripts/gui-screenshot.sh
#                                             # an attended line: slot 1's first unit fails and
#                                             # its card latches (shot taken, then the window closed)
#
# Environment: SLOTS, UNITS (units in all), SIZE (the screen and window, WIDTHxHEIGHT, default
# 1280x800), FAULT (0: inject no fault; the shot is taken once every slot passed a unit),
# LATCH (1: an attended line, no unit limit, so the failure latches), SIM_TIMING
# (`profile` or `zero`: as fast as the host allows), SCREENSHOT (output path, `none` for no picture),
# FRAME_STATS (where the window writes its frame timing JSON), IMPRINT_BIN (a prebuilt binary;
# default: `cargo build` and target/debug/imprint).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

if [ "${1:-}" != "--inside-xvfb" ]; then
  need_apt=()
  command -v xvfb-run >/dev/null || need_apt+=(xvfb)
  command -v import >/dev/null || need_apt+=(imagemagick)
  for package in libgl1-mesa-dri libegl1 mesa-vulkan-drivers libxkbcommon-x11-0; do
    dpkg -s "$package" >/dev/null 2>&1 || need_apt+=("$package")
  done
  if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing system packages: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  fi
  if [ -z "${IMPRINT_BIN:-}" ]; then
    cargo build --quiet
    IMPRINT_BIN="$(cd "${CARGO_TARGET_DIR:-target}/debug" && pwd)/imprint"
  fi
  export IMPRINT_BIN
  size="${SIZE:-1280x800}"
  [[ "$size" =~ ^[0-9]+x[0-9]+$ ]] || { echo "gui-screenshot: SIZE: expected WIDTHxHEIGHT, found $size" >&2; exit 2; }
  exec xvfb-run -a -s "-screen 0 ${size}x24" "$0" --inside-xvfb
fi

# Inside the virtual display from here on.
slots="${SLOTS:-4}"
units="${UNITS:-12}"
size="${SIZE:-1280x800}"
latch="${LATCH:-0}"
# The window opens at the screen's size.
export IMPRINT_GUI_SIZE="$size"
sim_timing="${SIM_TIMING:-profile}"
screenshot="${SCREENSHOT:-$repo/docs/screenshot.png}"
work="$(mktemp -d)"
trap 'kill "${gui_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
frame_stats="${FRAME_STATS:-$work/frames.json}"

# The fault hits slot 3's (or the last slot's) unit in the last full round at
# program-application, so the shot shows a FAIL with its reason next to slots still programming
# their units.
fault_slot=$(( slots > 3 ? 3 : slots - 1 ))
fault_unit=$(( units / slots > 1 ? units / slots : 1 ))
# Unattended, the line ends after its units (and does not latch); attended (LATCH=1), the first
# slot's first unit fails and latches, and the window is closed after the shot.
run_mode=(--exit-after-units "$units" --linger-ms 500)
if [ "$latch" = 1 ]; then
  fault_slot=0
  fault_unit=1
  run_mode=(--autostart)
fi
fault=(--sim-fault "$fault_slot.$fault_unit:probe-lost=program-application")
wanted='unit failed'
wanted_count=1
if [ "${FAULT:-1}" = 0 ]; then
  fault=()
  wanted='unit passed'
  wanted_count="$slots"
fi
"$IMPRINT_BIN" --log info gui \
  --profile "$repo/profiles/demo.toml" \
  --db "$work/ledger.db" --create-ledger \
  --sim "$slots" \
  --sim-timing "$sim_timing" \
  --station line-1-station-3 \
  --operator operator-17 \
  --sim-uid-seed 7 \
  "${fault[@]}" \
  "${run_mode[@]}" \
  --frame-stats "$frame_stats" \
  --fresh-settings \
  >"$work/stdout.txt" 2>"$work/stderr.txt" &
gui_pid=$!

finished_units() { grep -cE 'unit (passed|failed)' "$work/stderr.txt" || true; }
if [ "$screenshot" != none ]; then
  # Wait for the injected failure (the line is then mid-way through its last round), or with
  # FAULT=0 for each slot's first pass.
  seen() { [ "$(grep -c "$wanted" "$work/stderr.txt" || true)" -ge "$wanted_count" ]; }
  for _ in $(seq 1 600); do
    seen && break
    kill -0 "$gui_pid" 2>/dev/null || break
    sleep 0.2
  done
  if ! seen; then
    echo "gui-screenshot: the window never logged $wanted_count × '$wanted'; its log:" >&2
    cat "$work/stderr.txt" >&2
    exit 1
  fi
  # Let the window paint the failure, the history refresh and the ledger totals (attended: the
  # latched card long after the other slots moved on).
  if [ "$latch" = 1 ]; then sleep 6; else sleep 1.5; fi
  import -window root "$work/shot.png"
fi

if [ "$latch" = 1 ]; then
  # Nobody acknowledges: close the window (it stops the line, the units in flight finish).
  kill -TERM "$gui_pid" 2>/dev/null || true
  wait "$gui_pid" 2>/dev/null || true
  gui_pid=
fi

if [ -n "$gui_pid" ] && ! wait "$gui_pid"; then
  echo "gui-screenshot: imprint gui failed; its log:" >&2
  cat "$work/stderr.txt" >&2
  exit 1
fi
gui_pid=
[ "$latch" = 1 ] || grep -q "line finished, $units units" "$work/stdout.txt" || {
  echo "gui-screenshot: expected the line to finish $units units; stdout:" >&2
  cat "$work/stdout.txt" >&2
  exit 1
}
echo "gui-screenshot: $(finished_units) units finished in the window; frame timing:"
cat "$frame_stats" 2>/dev/null || echo "(none: the window was closed by a signal)"

if [ "$screenshot" != none ]; then
  read -r width height colours < <(identify -format '%w %h %k\n' "$work/shot.png")
  echo "gui-screenshot: ${width}x${height}, $colours colours"
  if [ "${width}x${height}" != "$size" ]; then
    echo "gui-screenshot: expected a $size screenshot, found ${width}x${height}" >&2
    exit 1
  fi
  # An empty or crashed window is one or two colours; the real one has text, icons and the
  # state colours anti-aliased into thousands.
  if [ "$colours" -lt 1000 ]; then
    echo "gui-screenshot: expected a rich picture (at least 1000 colours), found $colours" >&2
    exit 1
  fi
  cp "$work/shot.png" "$screenshot"
  echo "gui-screenshot: wrote $screenshot"
fi
