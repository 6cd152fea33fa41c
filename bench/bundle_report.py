"""The model bundle as a markdown table: size shipped vs fp32, precision, and the verification figures the
build recorded (measured against each model's reference). Reads assets/models/manifest.json only.

    .venv/bin/python bench/bundle_report.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.manifest import ModelBundle  # noqa: E402


def fp32_megabytes(entry) -> str:
    fp32 = entry.extra.get("fp32_bytes")
    if isinstance(fp32, dict):
        fp32 = sum(v for v in fp32.values() if isinstance(v, (int, float)))
    return f"{fp32 / 1e6:.1f}" if isinstance(fp32, (int, float)) and fp32 else "same"


def main() -> int:
    bundle = ModelBundle()
    print(f"Bundle version {bundle.bundle_version}.\n")
    print("| model | task | precision | MB shipped | MB fp32 | verification (measured vs threshold) |")
    print("|---|---|---|---:|---:|---|")
    total = 0
    for entry in bundle.models.values():
        total += entry.total_bytes
        checks = []
        for name, result in entry.verification.items():
            if isinstance(result, dict) and "measured" in result:
                checks.append(f"{name} {result['measured']:g} {result.get('direction', '>=')} {result['threshold']:g}")
        print(f"| {entry.id} | {entry.task} | {entry.precision} | {entry.total_bytes / 1e6:.1f} | {fp32_megabytes(entry)} | "
              f"{'; '.join(checks) or '-'} |")
    print(f"\nTotal: {total / 1e6:.1f} MB.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
