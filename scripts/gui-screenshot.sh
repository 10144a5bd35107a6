#!/usr/bin/env bash
# Runs the real `imprint gui` window in a virtual X display (Xvfb, Mesa software rendering) on
# the demo profile, lets it provision units unattended, screenshots the whole screen with
# ImageMagick's `import -window root`, checks the picture is not trivial (size, colour count)
# and writes it to docs/screenshot.png (the README shows it). `scripts/test` calls this.
#
#   scripts/gui-screenshot.sh                 # 4 slots, 12 units, one injected fault
#   SLOTS=16 UNITS=160 SCREENSHOT=none FRAME_STATS=frames.json scripts/gui-screenshot.sh
#                                             # the frame-time measurement of docs/performance.md
#
# Environment: SLOTS, UNITS (units in all), SIM_TIMING (`profile` or `zero`: as fast as the
# host allows), SCREENSHOT (output path, `none` for no picture),
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
  exec xvfb-run -a -s '-screen 0 1280x800x24' "$0" --inside-xvfb
fi

# Inside the virtual display from here on.
slots="${SLOTS:-4}"
units="${UNITS:-12}"
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
"$IMPRINT_BIN" --log info gui \
  --profile "$repo/profiles/demo.toml" \
  --db "$work/ledger.db" --create-ledger \
  --sim "$slots" \
  --sim-timing "$sim_timing" \
  --station line-1-station-3 \
  --operator operator-17 \
  --sim-uid-seed 7 \
  --sim-fault "$fault_slot.$fault_unit:probe-lost=program-application" \
  --exit-after-units "$units" \
  --linger-ms 500 \
  --frame-stats "$frame_stats" \
  --fresh-settings \
  >"$work/stdout.txt" 2>"$work/stderr.txt" &
gui_pid=$!

finished_units() { grep -cE 'unit (passed|failed)' "$work/stderr.txt" || true; }
if [ "$screenshot" != none ]; then
  # Wait for the injected failure (the line is then mid-way through its last round).
  for _ in $(seq 1 600); do
    grep -q 'unit failed' "$work/stderr.txt" && break
    kill -0 "$gui_pid" 2>/dev/null || break
    sleep 0.2
  done
  if ! grep -q 'unit failed' "$work/stderr.txt"; then
    echo "gui-screenshot: the window never showed the injected failure; its log:" >&2
    cat "$work/stderr.txt" >&2
    exit 1
  fi
  # Let the window paint the failure, the history refresh and the ledger totals.
  sleep 1.5
  import -window root "$work/shot.png"
fi

if ! wait "$gui_pid"; then
  echo "gui-screenshot: imprint gui failed; its log:" >&2
  cat "$work/stderr.txt" >&2
  exit 1
fi
gui_pid=
grep -q "line finished, $units units" "$work/stdout.txt" || {
  echo "gui-screenshot: expected the line to finish $units units; stdout:" >&2
  cat "$work/stdout.txt" >&2
  exit 1
}
echo "gui-screenshot: $(finished_units) units finished in the window; frame timing:"
cat "$frame_stats"

if [ "$screenshot" != none ]; then
  read -r width height colours < <(identify -format '%w %h %k\n' "$work/shot.png")
  echo "gui-screenshot: ${width}x${height}, $colours colours"
  if [ "$width" -ne 1280 ] || [ "$height" -ne 800 ]; then
    echo "gui-screenshot: expected a 1280x800 screenshot, found ${width}x${height}" >&2
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
