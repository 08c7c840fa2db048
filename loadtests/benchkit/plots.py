"""`--plot`: PNG charts of a run in the output folder (matplotlib, imported only here):

- `paced-latency.png`: time to first token and end-to-end duration, direct vs through the
  gateway (cumulative distributions).
- `emit-throughput.png`: events per second against concurrency, raw ASGI vs gateway.
- `non-streamed-latency.png`: create-to-completed time of non-streamed runs.
- `targets.png`: each target's measured value as a share of its limit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchkit.stats import Record


def available() -> bool:
    try:
        import matplotlib  # noqa: F401  # only whether it is installed
    except ImportError:
        return False
    return True


def write_all(out: Path, records: list[Record], samples: dict[str, Any]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if "paced" in samples:
        written.append(_paced(out / "paced-latency.png", samples["paced"]))
    if "emit_sweep" in samples:
        written.append(_sweep(out / "emit-throughput.png", samples["emit_sweep"]))
    if "herd" in samples:
        written.append(_herd(out / "herd-ttft.png", samples["herd"]))
    if "non_streamed_ms" in samples:
        written.append(_histogram(out / "non-streamed-latency.png", samples["non_streamed_ms"]))
    if any(r.targets for r in records):
        written.append(_targets(out / "targets.png", records))
    return written


def _cdf(axis: Any, values: Sequence[float], label: str) -> None:
    ordered = sorted(v for v in values if not math.isnan(v))
    if ordered:
        axis.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=label)


def _paced(path: Path, paced: dict[str, list[float]]) -> Path:
    import matplotlib.pyplot as plt

    figure, (ttft, duration) = plt.subplots(1, 2, figsize=(11, 4))
    _cdf(ttft, paced["A_ttft_ms"], "A: direct from the upstream")
    _cdf(ttft, paced["B_ttft_ms"], "B: run streamed through the gateway")
    ttft.set(xlabel="time to first token (ms)", ylabel="share of streams", xscale="log")
    ttft.set_title("Paced streams: time to first token")
    _cdf(duration, paced["A_s"], "A: direct")
    _cdf(duration, paced["B_s"], "B: gateway")
    duration.set(xlabel="end-to-end duration (s)", ylabel="share of streams")
    duration.set_title("Paced streams: end to end")
    for axis in (ttft, duration):
        axis.grid(alpha=0.3)
        axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _herd(path: Path, herd: dict[str, dict[str, list[float]]]) -> Path:
    """Time to first token of each herd size, one panel a size: A, B and S."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    labels = {
        "A": "A: direct from the upstream",
        "B": "B: gateway, SQLite (one process)",
        "S": "S: gateway, PostgreSQL + Redis (two processes)",
    }
    figure, axes = plt.subplots(1, len(herd), figsize=(5.5 * len(herd), 4), squeeze=False)
    for axis, (size, sides) in zip(axes[0], herd.items(), strict=True):
        for side, values in sides.items():
            _cdf(axis, values, labels.get(side, side))
        axis.set(xlabel="time to first token (ms)", ylabel="share of streams", xscale="log")
        axis.xaxis.set_minor_formatter(NullFormatter())  # a decade's labels only
        axis.set_title(f"Herd of {size} create-thread-and-run streams")
        axis.grid(alpha=0.3)
        axis.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _sweep(path: Path, sweep: dict[str, list[float]]) -> Path:
    import matplotlib.pyplot as plt

    levels = sweep["concurrency"]
    figure, (rates, ratios) = plt.subplots(1, 2, figsize=(11, 4))
    rates.plot(levels, sweep["A"], "o-", label="A: raw ASGI app, same bytes")
    rates.plot(levels, sweep["B"], "o-", label="B: gateway, local model unpaced")
    rates.set(xscale="log", yscale="log", xlabel="concurrent streams", ylabel="SSE events/s")
    rates.set_title("Emit path: throughput against concurrency")
    ratios.plot(levels, [b / a for a, b in zip(sweep["A"], sweep["B"], strict=True)], "o-")
    ratios.axhline(0.8, color="black", linestyle="--", linewidth=1, label="target 0.8")
    ratios.set(xscale="log", xlabel="concurrent streams", ylabel="B / A")
    ratios.set_ylim(bottom=0)
    ratios.set_title("Emit path: gateway / raw ASGI")
    for axis in (rates, ratios):
        axis.grid(alpha=0.3, which="both")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _histogram(path: Path, latencies_ms: list[float]) -> Path:
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    axis.hist(latencies_ms, bins=50)
    axis.set(xlabel="create to completed (ms), polling", ylabel="runs")
    axis.set_title("Non-streamed runs: create + poll to completion")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _headroom(value: float, op: str, limit: float) -> float:
    if op == ">=":
        return value / limit
    # An added latency can be zero or negative (better than the baseline): best on the chart.
    return limit / value if value > 0 else 2.0


def _targets(path: Path, records: list[Record]) -> Path:
    """Each target as measured/limit, oriented so that right of 1 is always better."""
    import matplotlib.pyplot as plt

    names, scores, colours = [], [], []
    for record in records:
        for target in record.targets:
            score = _headroom(target.value, target.op, target.limit)
            names.append(f"{record.title}: {target.name}")
            scores.append(min(score, 2.0))
            colours.append("tab:green" if target.passed else "tab:red")
    figure, axis = plt.subplots(figsize=(9, 0.45 * len(names) + 1.2))
    axis.barh(names, scores, color=colours)
    axis.axvline(1.0, color="black", linewidth=1)
    axis.invert_yaxis()
    axis.set(xlabel="headroom against the target (>= 1 meets it; capped at 2)")
    axis.set_title("Targets of issue 6")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
