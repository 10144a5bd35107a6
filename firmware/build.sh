#!/usr/bin/env bash
# Rebuilds the reference firmware blobs for QEMU mps2-an385, byte for byte, into
# firmware-blobs/mps2-an385/, and writes their SHA256SUMS.
#
#   firmware/build.sh            # build and write the blobs
#   firmware/build.sh --check    # build into a temp dir and compare with the committed blobs
#   firmware/build.sh --clippy   # lint the firmware with the same toolchain's clippy (-D warnings)
#
# Toolchain: Debian bookworm's rustc-web/cargo-web 1.96 (with rust-web-src for -Zbuild-std),
# unpacked with dpkg -x under a fixed path (/opt/imprint-firmware-toolchain), and GNU ld from
# binutils-arm-none-eabi. The exact package versions are pinned below; the toolchain is not
# installed system-wide, so it does not disturb the station's (rustup) toolchain.
# Reproducibility: fixed toolchain, committed Cargo.lock (--locked), fixed paths remapped with
# --remap-path-prefix, no timestamps or build IDs in the images.
set -euo pipefail

RUST_DEBIAN_VERSION="1.96.0+dfsg1-1~deb12u2"
LLVM_DEBIAN_VERSION="1:22.1.8-1~deb12u1"
TOOLCHAIN_DIR="/opt/imprint-firmware-toolchain/rust-${RUST_DEBIAN_VERSION//[:~+]/_}"
BUILD_DIR="/tmp/imprint-firmware-build"
FIRMWARE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$FIRMWARE_DIR")"
OUTPUT_DIR="$REPO_DIR/firmware-blobs/mps2-an385"
APPLICATION_VERSIONS=("1.0.0" "1.0.1")

mode="${1:-build}"
case "$mode" in
    build | --check | --clippy) ;;
    *) echo "usage: $0 [--check | --clippy]" >&2; exit 2 ;;
esac

need_apt_update=true
apt_install() {
    local missing=()
    for package in "$@"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    if ((${#missing[@]})); then
        if $need_apt_update; then apt-get update -qq; need_apt_update=false; fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
}

# System packages: the linker, cargo's libgit2, and the tools used below.
apt_install binutils-arm-none-eabi libgit2-1.5 coreutils

# The Rust toolchain, unpacked once at a fixed path.
if [[ ! -x "$TOOLCHAIN_DIR/usr/bin/cargo" || ! -x "$TOOLCHAIN_DIR/usr/bin/clippy-driver" ]]; then
    echo "build.sh: unpacking Debian Rust $RUST_DEBIAN_VERSION into $TOOLCHAIN_DIR"
    download_dir="$(mktemp -d)"
    (
        cd "$download_dir"
        if $need_apt_update; then apt-get update -qq; fi
        apt-get download -qq \
            "rustc-web=$RUST_DEBIAN_VERSION" "cargo-web=$RUST_DEBIAN_VERSION" \
            "rust-web-src=$RUST_DEBIAN_VERSION" "libstd-rust-web-1.96=$RUST_DEBIAN_VERSION" \
            "libstd-rust-web-dev=$RUST_DEBIAN_VERSION" "rust-web-clippy=$RUST_DEBIAN_VERSION" \
            "libllvm22=$LLVM_DEBIAN_VERSION" 2>&1 \
            | grep -v 'unsandboxed' || true
        staging="$TOOLCHAIN_DIR.partial"
        rm -rf "$staging"
        mkdir -p "$staging"
        for package in ./*.deb; do dpkg -x "$package" "$staging"; done
        rm -rf "$TOOLCHAIN_DIR"
        mv "$staging" "$TOOLCHAIN_DIR"
    )
    rm -rf "$download_dir"
fi

export PATH="$TOOLCHAIN_DIR/usr/bin:$PATH"
export LD_LIBRARY_PATH="$TOOLCHAIN_DIR/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RUSTC="$TOOLCHAIN_DIR/usr/bin/rustc"
export RUSTDOC="$TOOLCHAIN_DIR/usr/bin/rustdoc"
export RUSTC_BOOTSTRAP=1
export CARGO_HOME="${IMPRINT_FIRMWARE_CARGO_HOME:-/opt/imprint-firmware-toolchain/cargo-home}"
export SOURCE_DATE_EPOCH=0
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS RUSTC_WRAPPER CARGO_BUILD_RUSTFLAGS
"$RUSTC" --version
cargo --version

# The sources are copied to a fixed path so that every checkout builds the same bytes.
rm -rf "$BUILD_DIR"
mkdir -p "$BUILD_DIR/src"
cp -a "$FIRMWARE_DIR/Cargo.toml" "$FIRMWARE_DIR/Cargo.lock" "$FIRMWARE_DIR/build.rs" \
    "$FIRMWARE_DIR/.cargo" "$FIRMWARE_DIR/src" "$FIRMWARE_DIR/link" "$BUILD_DIR/src/"
remap=(
    "--remap-path-prefix=$BUILD_DIR/src=/firmware"
    "--remap-path-prefix=$CARGO_HOME/registry/src=/cargo"
    "--remap-path-prefix=$TOOLCHAIN_DIR/usr/src/rustc-1.96.0=/rustc"
    "--remap-path-prefix=$TOOLCHAIN_DIR/usr/lib/rustlib/src/rust=/rustc"
)
remap_config="target.thumbv7m-none-eabi.rustflags=["
for flag in "${remap[@]}"; do remap_config+="\"$flag\","; done
remap_config="${remap_config%,}]"

if [[ "$mode" == "--clippy" ]]; then
    (cd "$BUILD_DIR/src" && IMPRINT_APP_VERSION="1.0.0" cargo clippy --release --locked \
        --target-dir "$BUILD_DIR/target-clippy" --lib --bins -- -D warnings)
    echo "build.sh: clippy found nothing"
    exit 0
fi

out="$BUILD_DIR/out"
mkdir -p "$out"
# One target directory: changing IMPRINT_APP_VERSION rebuilds only this crate, not core/alloc
# and the dependencies (the bootloader does not use the variable; it gets a fixed value).
target_dir="$BUILD_DIR/target"
release_dir="$target_dir/thumbv7m-none-eabi/release"
build() {
    local version="$1"; shift
    (cd "$BUILD_DIR/src" && IMPRINT_APP_VERSION="$version" cargo build --release --locked \
        --config "$remap_config" --target-dir "$target_dir" "$@")
}
build "0.0.0" --bin bootloader
cp "$release_dir/bootloader" "$out/bootloader.elf"
for version in "${APPLICATION_VERSIONS[@]}"; do
    build "$version" --bin application
    cp "$release_dir/application" "$out/application-$version.elf"
done

# Strip symbols (the images carry no paths or timestamps then), and make the BIN forms.
for elf in "$out"/*.elf; do
    arm-none-eabi-strip --strip-all "$elf"
    arm-none-eabi-objcopy -O binary "$elf" "${elf%.elf}.bin"
done

write_sums() {
    (cd "$1" && sha256sum bootloader.elf bootloader.bin application-*.elf application-*.bin > SHA256SUMS)
}
write_sums "$out"

if [[ "$mode" == "--check" ]]; then
    if diff -u "$OUTPUT_DIR/SHA256SUMS" "$out/SHA256SUMS"; then
        echo "build.sh: the rebuilt blobs are identical to firmware-blobs/mps2-an385"
    else
        echo "build.sh: the rebuilt blobs differ from the committed ones" >&2
        exit 1
    fi
else
    mkdir -p "$OUTPUT_DIR"
    cp "$out"/*.elf "$out"/*.bin "$out/SHA256SUMS" "$OUTPUT_DIR/"
    echo "build.sh: wrote $OUTPUT_DIR"
    cat "$OUTPUT_DIR/SHA256SUMS"
fi
ls -l "$out"
