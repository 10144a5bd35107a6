#!/usr/bin/env bash
# Rebuilds hello.bin from hello.S with GNU binutils for ARM (Debian binutils-arm-none-eabi 2.40):
#   tests/data/qemu/build.sh
# The binary is committed; tests/qemu.rs loads it through the GDB stub.
set -euo pipefail
cd "$(dirname "$0")"
work="$(mktemp -d)"
arm-none-eabi-as -o "$work/hello.o" hello.S
arm-none-eabi-ld -e reset -Ttext=0x8 --section-start=.vectors=0 -o "$work/hello.elf" "$work/hello.o"
arm-none-eabi-objcopy -O binary "$work/hello.elf" hello.bin
arm-none-eabi-nm "$work/hello.elf" | sort
rm -rf "$work"
