#!/usr/bin/env python3
"""Replays device-contract cases on QEMU mps2-an385 and compares with the simulated device.

The cases come from the station crate's example:

    cargo run --example firmware_fixture -- /tmp/imprint-firmware-cases
    python3 firmware/tools/qemu_cases.py /tmp/imprint-firmware-cases [CASE ...]

For each case directory, this starts `qemu-system-arm -M mps2-an385 -S` with nothing loaded,
and executes `steps.txt` through QEMU's GDB stub as a station would: code memory is first filled
with 0xFF (a fresh part's erased flash; QEMU's RAM-backed code memory starts as zeros), the chip
unique ID is written at 0x3FF000, each `program` erases (fills with 0xFF) the sectors it covers
and writes the file, `request` writes the mailbox, `reset` does `monitor system_reset`, runs the
CPU until the application's IMPRINT-REPORT line appears on UART0, stops it and reads the
mailbox, and `snapshot` reads memory. Every result is compared byte for byte with the `*.sim.*`
file the simulated device produced for the same step. Prints one line per case, then
'N passed, N failed'.

This is a hand-testing tool for the firmware (the station's own GDB backend and conformance
suite are the real thing); it speaks the GDB remote protocol itself so it needs nothing but
Python and qemu-system-arm.
"""
import os
import socket
import subprocess
import sys
import tempfile
import time

SECTOR_SIZE = 0x1000
ERASED_SPAN = (0x0000_0000, 0x001F_0000)  # bootloader, application, candidate, config
MAILBOX_ADDRESS = 0x2000_0000
MAILBOX_SIZE = 256
WRITE_CHUNK = 2000  # QEMU's stub takes at most 2032 data bytes per M packet
BOOT_TIMEOUT_S = 10.0


class Gdb:
    """A minimal GDB remote serial protocol client (acks on; QEMU offers no no-ack mode)."""

    def __init__(self, port):
        deadline = time.time() + 10
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                # One small packet and one ack at a time: without this, Nagle's algorithm and
                # delayed acks cost ~40 ms per packet.
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        self.buffer = b""

    def _read_byte(self):
        while not self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("gdb stub closed the connection")
            self.buffer += chunk
        byte, self.buffer = self.buffer[:1], self.buffer[1:]
        return byte

    def _read_packet(self):
        while self._read_byte() != b"$":
            pass
        payload = b""
        while True:
            byte = self._read_byte()
            if byte == b"#":
                break
            payload += byte
        checksum = self._read_byte() + self._read_byte()
        if int(checksum, 16) != sum(payload) % 256:
            self.sock.sendall(b"-")
            return self._read_packet()
        self.sock.sendall(b"+")
        return payload.decode("latin-1")

    def send(self, payload):
        data = payload.encode("latin-1")
        frame = b"$" + data + b"#" + b"%02x" % (sum(data) % 256)
        while True:
            self.sock.sendall(frame)
            ack = self._read_byte()
            if ack == b"+":
                return
            if ack != b"-":
                raise ConnectionError(f"expected an ack, got {ack!r}")

    def command(self, payload):
        self.send(payload)
        while True:
            reply = self._read_packet()
            if reply.startswith("O") and reply != "OK":
                continue  # console output of a monitor command
            return reply

    def write(self, address, data):
        for offset in range(0, len(data), WRITE_CHUNK):
            chunk = data[offset:offset + WRITE_CHUNK]
            reply = self.command(f"M{address + offset:x},{len(chunk):x}:{chunk.hex()}")
            if reply != "OK":
                raise RuntimeError(f"write at {address + offset:#x} failed: {reply}")

    def read(self, address, length):
        data = b""
        while len(data) < length:
            size = min(WRITE_CHUNK, length - len(data))
            reply = self.command(f"m{address + len(data):x},{size:x}")
            if reply.startswith("E"):
                raise RuntimeError(f"read at {address + len(data):#x} failed: {reply}")
            data += bytes.fromhex(reply)
        return data

    def monitor(self, text):
        return self.command("qRcmd," + text.encode().hex())

    def resume(self):
        self.send("c")

    def interrupt(self):
        self.sock.sendall(b"\x03")
        return self._read_packet()


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_case(case_dir):
    """Runs one case; returns a list of mismatch descriptions (empty when all matched)."""
    port = free_port()
    uart_path = os.path.join(case_dir, "uart.qemu.txt")
    open(uart_path, "wb").close()
    qemu = subprocess.Popen(
        ["qemu-system-arm", "-M", "mps2-an385", "-display", "none", "-monitor", "none",
         "-serial", f"file:{uart_path}", "-S", "-gdb", f"tcp:127.0.0.1:{port}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    problems = []
    try:
        gdb = Gdb(port)
        gdb.command("qSupported:multiprocess-;swbreak+;hwbreak+")
        gdb.command("?")
        gdb.write(ERASED_SPAN[0], b"\xff" * (ERASED_SPAN[1] - ERASED_SPAN[0]))
        with open(os.path.join(case_dir, "steps.txt")) as steps:
            for line in steps:
                words = line.split()
                if not words or words[0].startswith("#"):
                    continue
                verb = words[0]
                if verb == "uid":
                    with open(os.path.join(case_dir, words[2]), "rb") as handle:
                        gdb.write(int(words[1], 16), handle.read())
                elif verb == "program":
                    address = int(words[1], 16)
                    with open(os.path.join(case_dir, words[2]), "rb") as handle:
                        data = handle.read()
                    start = address - address % SECTOR_SIZE
                    end = -(-(address + len(data)) // SECTOR_SIZE) * SECTOR_SIZE
                    gdb.write(start, b"\xff" * (end - start))
                    gdb.write(address, data)
                elif verb == "request":
                    nonce = int(words[1], 16)
                    gdb.write(MAILBOX_ADDRESS, b"IMPQ" + nonce.to_bytes(4, "little") + bytes(MAILBOX_SIZE - 8))
                elif verb == "reset":
                    name = words[1]
                    uart_before = os.path.getsize(uart_path)
                    gdb.monitor("system_reset")
                    gdb.resume()
                    deadline = time.time() + BOOT_TIMEOUT_S
                    console = b""
                    while time.time() < deadline:
                        with open(uart_path, "rb") as handle:
                            handle.seek(uart_before)
                            console = handle.read()
                        if b"IMPRINT-REPORT" in console and console.rstrip(b"\r").endswith(b"\n"):
                            break
                        time.sleep(0.02)
                    gdb.interrupt()
                    mailbox = gdb.read(MAILBOX_ADDRESS, MAILBOX_SIZE)
                    with open(os.path.join(case_dir, f"{name}.mailbox.qemu.bin"), "wb") as handle:
                        handle.write(mailbox)
                    reports = "".join(
                        line.strip() + "\n" for line in console.decode("utf-8", "replace").splitlines()
                        if line.startswith("IMPRINT-REPORT "))
                    with open(os.path.join(case_dir, f"{name}.console.qemu.txt"), "w") as handle:
                        handle.write(reports)
                    problems += compare(case_dir, f"{name}.mailbox", ".bin")
                    problems += compare(case_dir, f"{name}.console", ".txt")
                elif verb == "snapshot":
                    data = gdb.read(int(words[1], 16), int(words[2], 16))
                    with open(os.path.join(case_dir, f"{words[3]}.qemu.bin"), "wb") as handle:
                        handle.write(data)
                    problems += compare(case_dir, words[3], ".bin")
                else:
                    raise RuntimeError(f"unknown step {line.strip()!r}")
    finally:
        qemu.kill()
        qemu.wait()
    return problems


def compare(case_dir, stem, extension):
    with open(os.path.join(case_dir, f"{stem}.sim{extension}"), "rb") as handle:
        expected = handle.read()
    with open(os.path.join(case_dir, f"{stem}.qemu{extension}"), "rb") as handle:
        found = handle.read()
    if expected == found:
        return []
    if extension == ".txt":
        return [f"{stem}: sim {expected.decode().strip()!r} / qemu {found.decode().strip()!r}"]
    first = next(index for index in range(min(len(expected), len(found)) + 1)
                 if index >= min(len(expected), len(found)) or expected[index] != found[index])
    return [f"{stem}: first difference at byte {first}"]


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    root = sys.argv[1]
    names = sys.argv[2:] or sorted(
        name for name in os.listdir(root) if os.path.isfile(os.path.join(root, name, "steps.txt")))
    passed = failed = 0
    for name in names:
        started = time.time()
        problems = run_case(os.path.join(root, name))
        elapsed = time.time() - started
        report_path = os.path.join(root, name, "boot-1.console.qemu.txt")
        with open(report_path) as handle:
            first_line = handle.readline().strip()
        update = next((word for word in first_line.split() if word.startswith("update=")), "update=none")
        if problems:
            failed += 1
            print(f"FAIL {name:<32} {update} ({elapsed:.1f} s)")
            for problem in problems:
                print(f"     {problem}")
        else:
            passed += 1
            print(f"ok   {name:<32} {update} ({elapsed:.1f} s)")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
