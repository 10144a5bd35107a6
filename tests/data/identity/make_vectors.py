#!/usr/bin/env python3
"""Regenerates uuid5_vectors.json, the outside oracle for src/identity.rs.

Run with a Python that has manifest-tool 2.6.2 installed (pip install manifest-tool==2.6.2):

    python3 tests/data/identity/make_vectors.py > tests/data/identity/uuid5_vectors.json

Sections:
- vendor/class/device: Python's own uuid.uuid5 over fixed inputs;
- manifest_tool: vendor and class IDs computed by manifest-tool's own code
  (ManifestAsnCodecV3._encode_vendor_cfg / _encode_device_cfg, what `manifest-tool create`
  runs for `vendor: domain:` and `device: model-name:`), and whether it accepts each domain.
"""
import importlib.metadata
import json
import uuid

from manifesttool.mtool.asn1.v3 import ManifestAsnCodecV3

DOMAINS = ["arm.com", "example.com", "izumanetworks.com", "a.b", "factory.example.co.uk",
           "xn--bcher-kva.example", "bücher.example", "UPPER.Example.COM", "trailing.dot.",
           "123.456"]
MODELS = ["sensor-v1", "Gateway 2000", "", "ünïcödé model ✓", "x" * 300, "line\nbreak"]
CHIP_UIDS = ["00", "ff", "0123456789abcdef", "00112233445566778899aabb",
             "deadbeef" * 4, "a5" * 64]
NAMESPACES = [str(uuid.NAMESPACE_DNS), "00000000-0000-0000-0000-000000000000",
              "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe"]
DOMAIN_CHECKS = ["arm.com", "a.b", "nodot", ".com", "com.", "..", "a..b", "has space.com",
                 "tab\t.com", "x.y\x1fz", "\u00a0a.b", "ünï.cödé", "a.b.c", ""]


def main():
    vendor = [{"domain": domain, "vendor_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, domain))}
              for domain in DOMAINS]
    klass = [{"vendor_id": namespace, "model_name": model,
              "class_id": str(uuid.uuid5(uuid.UUID(namespace), model))}
             for namespace in NAMESPACES for model in MODELS]
    device = [{"class_id": namespace, "chip_uid_hex": uid,
               "device_id": str(uuid.uuid5(uuid.UUID(namespace), uid))}
              for namespace in NAMESPACES for uid in CHIP_UIDS]

    manifest_tool = []
    for domain in ["arm.com", "example.com", "bücher.example"]:
        for model in ["sensor-v1", "Gateway 2000", "ünïcödé model ✓"]:
            codec = ManifestAsnCodecV3()
            vendor_id = codec._encode_vendor_cfg({"vendor": {"domain": domain}})
            codec._encode_device_cfg({"device": {"model-name": model}}, vendor_id)
            manifest_tool.append({
                "domain": domain, "model_name": model,
                "vendor_id": str(uuid.UUID(bytes=bytes(codec.dom["vendor-id"]))),
                "class_id": str(uuid.UUID(bytes=bytes(codec.dom["class-id"]))),
            })
    domain_checks = []
    for domain in DOMAIN_CHECKS:
        try:
            ManifestAsnCodecV3()._encode_vendor_cfg({"vendor": {"domain": domain}})
            accepted = True
        except AssertionError:
            accepted = False
        domain_checks.append({"domain": domain, "accepted": accepted})

    print(json.dumps({
        "generator": "tests/data/identity/make_vectors.py, Python uuid.uuid5 and manifest-tool "
                     + importlib.metadata.version("manifest-tool"),
        "vendor": vendor, "class": klass, "device": device,
        "manifest_tool": manifest_tool, "manifest_tool_domain_checks": domain_checks,
    }, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
