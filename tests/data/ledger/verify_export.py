#!/usr/bin/env python3
"""Independent verifier for Imprint ledger exports, written from docs/ledger.md alone.

Usage: python3 verify_export.py EXPORT_FILE [--head HEX ...]

Reads a CSV, JSON or JSON-lines export, recomputes every record_hash from the canonical
encoding described in docs/ledger.md, checks the per-station chain links and sequence numbers,
the trailer's chain heads and record count, and that every --head is a record of the chain.
Prints "ok ..." and exits 0 when intact; prints "TAMPERED ..." and exits 1 otherwise.
Standard library only, so an auditor can run it anywhere.
"""
import csv
import decimal
import hashlib
import json
import sys

ENCODING = "imprint-ledger-run-v1"
GENESIS = "0" * 64


def es_number(value: float) -> str:
    """ECMAScript Number.prototype.toString for a finite double (RFC 8785, 3.2.2.3)."""
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr() gives the shortest digits that round-trip.
    parts = decimal.Decimal(repr(abs(value))).as_tuple()
    all_digits = "".join(map(str, parts.digits))
    point = parts.exponent + len(all_digits)  # value = 0.DIGITS * 10**point
    digits = all_digits.lstrip("0")
    point -= len(all_digits) - len(all_digits.lstrip("0"))
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= point <= 21:
        text = digits + "0" * (point - k)
    elif 0 < point <= 21:
        text = digits[:point] + "." + digits[point:]
    elif -6 < point <= 0:
        text = "0." + "0" * (-point) + digits
    else:
        exponent = point - 1
        text = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if exponent > 0 else "-") + str(abs(exponent))
    return sign + text


def canonical(value) -> str:
    """RFC 8785 JSON, except that integers are written exactly."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return es_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(canonical(item) for item in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda key: key.encode("utf-16-be"))
        return "{" + ",".join(json.dumps(key, ensure_ascii=False) + ":" + canonical(value[key]) for key in keys) + "}"
    raise TypeError(f"not JSON: {value!r}")


def record_hash(run: dict) -> str:
    hashed = {
        "encoding": ENCODING,
        "station": run["station"],
        "station_sequence": run["station_sequence"],
        "operator": run["operator"],
        "probe": run["probe"],
        "profile": run["profile"],
        "profile_sha256": run["profile_sha256"],
        "images": [{"name": image["name"], "sha256": image["sha256"]} for image in run["images"]],
        "chip_uid": run.get("chip_uid"),
        "serial": run.get("serial"),
        "device_id": run.get("device_id"),
        "started_at": run["started_at"],
        "finished_at": run["finished_at"],
        "result": run["result"],
        "failing_step": run.get("failing_step"),
        "reason": run.get("reason"),
        "steps": [
            {
                "ordinal": step["ordinal"],
                "name": step["name"],
                "status": step["status"],
                "started_at": step["started_at"],
                "duration_ms": step["duration_ms"],
                "detail": step["detail"],
            }
            for step in run["steps"]
        ],
    }
    data = bytes.fromhex(run["prev_hash"]) + canonical(hashed).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def read_records(path):
    """Yields ("header" | "run" | "trailer", dict) in file order."""
    with open(path, encoding="utf-8", newline="") as file:
        first = file.read(1)
        while first.isspace():
            first = file.read(1)
        file.seek(0)
        if first == "[":
            elements = json.load(file)
            for index, element in enumerate(elements):
                kind = "header" if index == 0 else "trailer" if "chain_head" in element else "run"
                yield kind, element
        elif first == "{":
            for index, line in enumerate(file):
                if not line.strip():
                    continue
                element = json.loads(line)
                kind = "header" if index == 0 else "trailer" if "chain_head" in element else "run"
                yield kind, element
        else:
            for row in csv.DictReader(file):
                if row["record_type"] == "export":
                    yield "header", json.loads(row["export"])
                elif row["record_type"] == "trailer":
                    yield "trailer", json.loads(row["export"])
                else:
                    optional = lambda name: row[name] or None  # noqa: E731
                    yield "run", {
                        "station": row["station"],
                        "station_sequence": int(row["station_sequence"]),
                        "operator": row["operator"],
                        "probe": row["probe"],
                        "profile": row["profile"],
                        "profile_sha256": row["profile_sha256"],
                        "images": json.loads(row["images"]),
                        "chip_uid": optional("chip_uid"),
                        "serial": optional("serial"),
                        "device_id": optional("device_id"),
                        "started_at": row["started_at"],
                        "finished_at": row["finished_at"],
                        "result": row["result"],
                        "failing_step": optional("failing_step"),
                        "reason": optional("reason"),
                        "steps": json.loads(row["steps"]),
                        "prev_hash": row["prev_hash"],
                        "record_hash": row["record_hash"],
                    }


def verify(path, expected_heads):
    filtered = False
    last = {}  # station -> (sequence, record_hash)
    count = 0
    trailer = None
    found_heads = set()
    for kind, record in read_records(path):
        if kind == "header":
            filtered = any(value is not None for value in record["filter"].values())
            continue
        if trailer is not None:
            return "record after the trailer"
        if kind == "trailer":
            trailer = record
            continue
        station, sequence = record["station"], record["station_sequence"]
        where = f"station {station!r} sequence {sequence}"
        previous = last.get(station)
        if previous is None:
            if sequence > 1 and not filtered:
                return f"{where}: records 1..{sequence - 1} missing"
            if sequence == 1 and record["prev_hash"] != GENESIS:
                return f"{where}: first record does not start from the genesis hash"
        elif sequence <= previous[0]:
            return f"{where}: out of order after {previous[0]}"
        elif sequence > previous[0] + 1:
            if not filtered:
                return f"{where}: records {previous[0] + 1}..{sequence - 1} missing"
        elif record["prev_hash"] != previous[1]:
            return f"{where}: broken link"
        recomputed = record_hash(record)
        if recomputed != record["record_hash"]:
            return f"{where}: hash mismatch (recomputed {recomputed})"
        if record["record_hash"] in expected_heads:
            found_heads.add(record["record_hash"])
        last[station] = (sequence, record["record_hash"])
        count += 1
    if trailer is None:
        return "no trailer: truncated"
    for head in trailer["chain_head"]:
        present = last.get(head["station"])
        if present is None:
            if head["station_sequence"] > 0 and not filtered:
                return f"station {head['station']!r}: no records, head is {head['station_sequence']}"
        elif present[0] > head["station_sequence"]:
            return f"station {head['station']!r}: chain goes past its head"
        elif present[0] == head["station_sequence"]:
            if present[1] != head["record_hash"]:
                return f"station {head['station']!r}: head mismatch"
        elif not filtered:
            return f"station {head['station']!r}: truncated at {present[0]}, head is {head['station_sequence']}"
    if set(last) - {head["station"] for head in trailer["chain_head"]}:
        return "a station has no chain head"
    if trailer["record_count"] != count:
        return f"trailer counts {trailer['record_count']} runs, found {count}"
    for expected in expected_heads:
        if expected not in found_heads:
            return f"expected head {expected} is not in the chain"
    return None


def main(arguments):
    if not arguments:
        print(__doc__, file=sys.stderr)
        return 2
    path, expected_heads = arguments[0], set()
    rest = arguments[1:]
    while rest:
        if rest[0] != "--head" or len(rest) < 2:
            print("usage: verify_export.py EXPORT_FILE [--head HEX ...]", file=sys.stderr)
            return 2
        expected_heads.add(rest[1].lower())
        rest = rest[2:]
    try:
        problem = verify(path, expected_heads)
    except (ValueError, KeyError, TypeError) as error:  # unreadable record
        problem = f"unreadable record: {error!r}"
    if problem is None:
        print(f"ok {path}")
        return 0
    print(f"TAMPERED {path}: {problem}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
