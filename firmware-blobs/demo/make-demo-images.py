#!/usr/bin/env python3
"""Makes the demo profile's images for the simulated device (deterministic, byte for byte).

The simulated device does not execute code, so these images are data shaped like firmware: an
ARM Cortex-M vector table (initial stack pointer, reset vector) followed by deterministic
filler. The reference firmware for QEMU (firmware/) is real code; these are not.

    python3 firmware-blobs/demo/make-demo-images.py
    objcopy -I binary -O ihex --change-addresses 0x8000 application.bin application.hex

The second command (GNU objcopy) is run by this script; application.bin is removed afterwards.
"""
import hashlib
import os
import struct
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def filler(label: bytes, size: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(label + counter.to_bytes(4, "little")).digest()
        counter += 1
    return bytes(out[:size])


def image(label: str, base: int, size: int) -> bytes:
    stack_top = 0x20040000
    reset_vector = base + 0x101  # Thumb bit set
    header = struct.pack("<II", stack_top, reset_vector) + label.encode().ljust(56, b"\0")
    return header + filler(label.encode(), size - len(header))


def write(name: str, data: bytes) -> None:
    with open(os.path.join(HERE, name), "wb") as handle:
        handle.write(data)


write("bootloader.bin", image("IMPRINT DEMO BOOTLOADER 1.0.0", 0x0, 12 * 1024))
write("application.bin", image("IMPRINT DEMO APPLICATION 1.0.0", 0x8000, 48 * 1024))
subprocess.run(
    ["objcopy", "-I", "binary", "-O", "ihex", "--change-addresses", "0x8000", "application.bin", "application.hex"],
    cwd=HERE,
    check=True,
)
os.remove(os.path.join(HERE, "application.bin"))
write("application-1.0.1.bin", image("IMPRINT DEMO APPLICATION 1.0.1", 0x8000, 48 * 1024 + 512))
