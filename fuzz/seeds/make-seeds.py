#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora into fuzz/seeds/<target>/ from the repository's own
test fixtures and from the byte layouts in docs/device-contract.md (written here in Python, not
by Imprint, so a seed is an outside reading of the contract).

Run from anywhere: python3 fuzz/seeds/make-seeds.py (the output is committed; rerun after a
fixture changes). Seeds are small on purpose: libFuzzer's default maximum input length follows
the largest seed.
"""
import hashlib
import pathlib
import shutil
import struct

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEEDS = ROOT / "fuzz" / "seeds"
DATA = ROOT / "tests" / "data"
# The chip ID fuzz/src/lib.rs binds its stores to (FUZZ_CHIP_UID).
FUZZ_CHIP_UID = b"fuzz-chip-0001"


def target_dir(name):
    directory = SEEDS / name
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    return directory


def copy_files(name, paths):
    directory = target_dir(name)
    for path in paths:
        shutil.copyfile(path, directory / path.name)
    return directory


def write(directory, name, data):
    if isinstance(data, str):
        data = data.encode()
    (directory / name).write_bytes(data)


# --- manifests and images: the outside tools' fixtures as they are --------------------------
copy_files("manifest_decode", sorted(DATA.glob("manifest/*.manifest")) + [DATA / "manifest/dev.cert.der"])
copy_files("image_intel_hex", sorted(DATA.glob("image/*.hex")))
copy_files("image_elf", [DATA / "image/fw.elf", DATA / "image/fw_overlap.elf", DATA / "image/host_x86_64.elf"])


# --- config store (docs/device-contract.md section 2) ----------------------------------------
def store(items, chip_uid=FUZZ_CHIP_UID):
    body = b""
    for key, kind, value in items:
        body += struct.pack("<HHI", len(key), kind, len(value)) + key + value
        body += b"\0" * (-(16 + len(body)) % 4)
    total = 16 + len(body) + 32
    head = b"IMPS" + struct.pack("<HHII", 1, len(items), total, 0)
    unsigned = head + body
    return unsigned + hashlib.sha256(unsigned + chip_uid).digest()


certificate = (DATA / "manifest/dev.cert.der").read_bytes()
fingerprint = hashlib.sha256(certificate).digest()
vendor_id = bytes.fromhex("3e6e5c2a9c8b4f0fa1d2b3c4d5e6f708")
class_id = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
full_items = [
    (b"mbed.VendorId", 1, vendor_id),
    (b"mbed.ClassId", 1, class_id),
    (b"imprint.DeviceId", 1, b"\x5a" * 16),
    (b"mbed.SerialNumber", 2, b"FUZZ-000001"),
    (b"imprint.FactoryAppVersion", 2, b"1.0.0"),
    (b"mbed.UpdateAuthCert", 1, fingerprint),
    (fingerprint, 1, certificate),
]
directory = target_dir("store_decode")
write(directory, "provisioned.bin", store(full_items) + b"\xff" * 8)
write(directory, "two-items.bin", store(full_items[:2]))
write(directory, "empty.bin", store([]))
write(directory, "other-chip.bin", store(full_items[:3], chip_uid=b"another-chip"))
write(directory, "erased.bin", b"\xff" * 64)


# --- device contract: mailbox, boot state, console (sections 4 and 5) ------------------------
def report(update=0x01, store_status=0, version=(1, 0, 1), serial=b"DS1-000001", nonce=0x1A2B3C4D):
    body = b"IMPR" + struct.pack("<HHIII", 1, 0, nonce, update, store_status)
    body += struct.pack("<III", *version) + vendor_id + class_id + b"\x5a" * 16 + fingerprint
    body += struct.pack("<I", len(serial)) + serial.ljust(64, b"\0") + b"\0" * 44
    assert len(body) == 224
    return body


request = b"IMPQ" + struct.pack("<I", 0x1A2B3C4D) + b"\0" * 24
directory = target_dir("contract_report")
write(directory, "mailbox-report.bin", request + report())
write(directory, "mailbox-refused.bin", request + report(update=0x14, store_status=1, version=(0, 0, 0), serial=b""))
write(directory, "mailbox-request-only.bin", request + b"\0" * 224)
write(directory, "boot-state.bin", b"IMPB" + struct.pack("<IIII", 1, 0, 1, 3000) + b"\x11" * 32 + b"\xff" * 4)
console = (
    "IMPRINT-REPORT nonce=1a2b3c4d update=0x01 store=0 version=1.0.1 vendor=" + vendor_id.hex()
    + " class=" + class_id.hex() + " device=" + "5a" * 16 + " cert=" + fingerprint.hex() + " serial=DS1-000001"
)
write(directory, "console.txt", "boot: application 1.0.1\n" + console + "\n")
write(directory, "console-unknown.txt", "IMPRINT-REPORT nonce=00000000 update=0x00 store=1 version=0.0.0 serial=\n")

directory = target_dir("contract_candidate")
manifest = (DATA / "manifest/raw-signed.manifest").read_bytes()
payload = (DATA / "manifest/payload.bin").read_bytes()[:256]
header = b"IMPC" + struct.pack("<HHIIII", 1, 0, len(manifest), 0, len(payload), 0)
write(directory, "raw-foreign-signer.bin", b"\x00" + header + manifest + payload)
write(directory, "raw-erased.bin", b"\x00" + b"\xff" * 64)
# Structured mode (odd first byte): arbitrary-crate bytes; any bytes are a valid description.
write(directory, "structured.bin", b"\x01" + bytes(range(256)))


# --- profiles: the repository's profiles and the bad-input catalogue, paths made sandbox-local -
def sandboxed(text):
    return text.replace("../firmware-blobs/", "firmware-blobs/")


demo = sandboxed((ROOT / "profiles/demo.toml").read_text())
directory = target_dir("profile_parse")
write(directory, "demo.toml", demo)
for profile in sorted((ROOT / "profiles").glob("*.toml")):
    if profile.name != "demo.toml":
        write(directory, profile.name, sandboxed(profile.read_text()))
if tomllib is not None:
    catalogue = tomllib.loads((DATA / "bad-input/profiles.toml").read_text())
    for index, case in enumerate(catalogue.get("case", [])):
        text = demo
        for old, new in case.get("replace", []):
            text = text.replace(sandboxed(old), sandboxed(new))
        write(directory, f"bad-{index:02}.toml", text)


# --- GDB remote protocol ----------------------------------------------------------------------
def frame(payload):
    return b"$" + payload + b"#" + b"%02x" % (sum(payload) % 256)


target_xml = (
    b'l<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd"><target><architecture>arm'
    b'</architecture><xi:include href="arm-m-profile.xml"/></target>'
)
core_xml = (
    b'l<?xml version="1.0"?><feature name="org.gnu.gdb.arm.m-profile"><reg name="r0" bitsize="32"/>'
    b'<reg name="sp" bitsize="32" type="data_ptr" regnum="13"/><reg name="pc" bitsize="32" type="code_ptr"/>'
    b'<reg name="xpsr" bitsize="32" regnum="25"/></feature>'
)
memory_map = (
    b'l<?xml version="1.0"?><memory-map><memory type="flash" start="0x8000000" length="0x100000">'
    b'<property name="blocksize">0x800</property></memory><memory type="ram" start="0x20000000" '
    b'length="0x20000"/></memory-map>'
)
replies = [
    b"PacketSize=1000;qXfer:features:read+;qXfer:memory-map:read+;QStartNoAckMode+;multiprocess+",
    b"OK",
    b"T05thread:p01.01;",
    target_xml,
    core_xml,
    memory_map,
    b"OK",
    b"00" * 256,
    b"OK",
    b"00000000" * 26,
    b"78563412",
    b"OK",
    b"OK",
    b"OK",
]
directory = target_dir("gdb_client")
write(directory, "session-framed.bin", b"\x01" + b"\0".join(replies))
write(directory, "session-raw.bin", b"\x00" + b"".join(b"+" + frame(reply) for reply in replies))
qemu_replies = [b"PacketSize=1000;qXfer:features:read+", b"S05", target_xml, core_xml, b"", b"00" * 256]
write(directory, "qemu-framed.bin", b"\x01\x01" + b"\0".join(qemu_replies))

directory = target_dir("gdb_packet")
write(directory, "acks-and-packets.bin", b"\x00+" + frame(b"OK") + b"-+" + frame(b"S05"))
write(directory, "run-length.bin", b"\x00+" + frame(b"0* ") + frame(b"ff*\"00"))
write(directory, "bad-checksum.bin", b"\x00+$OK#00+$E01#a6")
write(directory, "escaped.bin", b"\x01" + b"l}\x03}\x04}]" + b"\0" + b"T05thread:01;")
write(directory, "hex.bin", b"\x01" + b"0123456789abcdef" + b"\0E01\0")

directory = target_dir("gdb_xml")
write(directory, "description.xml", target_xml[1:] + b"\0" + core_xml[1:])
write(directory, "memory-map.xml", memory_map[1:])
# Boundary values a server may send: the last u32 register number (and one past it).
write(
    directory,
    "regnum-limits.xml",
    b'<target><reg name="a" bitsize="32" regnum="4294967294"/><reg name="b" bitsize="32"/>'
    b'<reg name="c" bitsize="64" regnum="0x1ffffffff"/></target>',
)
