"""What the benchmark prints on stdout: one JSON record per case as it finishes, then a table;
`--json` writes all the records to a file. (Progress goes to stderr.)"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from benchkit.stats import Record

HEADER = ("Case", "Measure", "A (baseline)", "B (gateway)", "Value", "Target", "Pass")


def emit(record: Record) -> None:
    print(json.dumps(record.as_dict(), separators=(",", ":")), flush=True)


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }


def write_json(path: Path, records: list[Record], failures: dict[str, str]) -> None:
    document = {
        "machine": machine(),
        "records": [r.as_dict() for r in records],
        "failed_cases": failures,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def _value(value: float, unit: str) -> str:
    if unit.strip() == "/s" or abs(value) >= 1000:
        return f"{value:,.0f}{unit}"
    return f"{value:.3g}{unit}" if unit else f"{value:.3f}"


def rows(records: list[Record]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for record in records:
        for target in record.targets:
            out.append(
                (
                    record.title,
                    target.name,
                    target.a or "-",
                    target.b or "-",
                    _value(target.value, target.unit),
                    f"{target.op} {target.limit:,g}{target.unit}",
                    "pass" if target.passed else "FAIL",
                )
            )
        for name, shown in record.reported.items():
            out.append((record.title, name, "", "", shown, "(report)", ""))
    return out


def table(records: list[Record], failures: dict[str, str]) -> str:
    """The targets, then each case's time and CPU shares."""
    lines = _grid([HEADER, *rows(records)])
    lines += ["", "Per case: seconds, and CPU share of one core (median over rounds) per side:"]
    for record in records:
        shares = "; ".join(
            f"{side}: " + ", ".join(f"{name} {share:.0%}" for name, share in cpu.items())
            for side, cpu in record.cpu.items()
        )
        flag = "  <- the client may be the bottleneck" if record.client_saturated else ""
        lines.append(f"  {record.title:<18} {record.seconds:6.1f} s   {shares}{flag}")
    for case, problem in failures.items():
        lines.append(f"  {case}: FAILED TO RUN: {problem}")
    return "\n".join(lines)


def _grid(table: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for number, row in enumerate(table):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if number == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return lines


def print_table(records: list[Record], failures: dict[str, str]) -> None:
    print()
    print(table(records, failures), flush=True)
