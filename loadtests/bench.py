"""The side-by-side benchmark of issue 6: each case measures the gateway (B) against its
baseline (A) in interleaved rounds (A, B, A, B ...) and prints one JSON record (medians, p99,
spread, the ratio, the target, pass or fail), then a table of every target.

It starts what it needs as subprocesses on free loopback ports, each case its own: the fake
upstream (`fake_upstream_server.py`), gateways with temporary databases routed to it, and the
raw-ASGI baseline (`raw_asgi_app.py`); all of them are stopped at the end of the case, also on
error. Traffic goes to 127.0.0.1 only.

    .venv/bin/python loadtests/bench.py [--quick] [--plot] [--profile] [--json out.json]
                                        [--cases paced_streams,burst,...] [--reps N]

`--plot` needs matplotlib and `--profile` py-spy (`.venv/bin/pip install matplotlib py-spy`);
both write into loadtests/out/ and add rounds. The whole run takes 4 to 5 minutes on 2 cores
(more while the gateway is slow: a case's gateway rounds last as long as its streams take),
`--quick` about 1.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop
from benchkit import plots, report
from benchkit.cases_capacity import idle_streams, non_streamed
from benchkit.cases_emit import emit_path, persistence
from benchkit.cases_fanout import fan_out
from benchkit.cases_herd import herd
from benchkit.cases_scaleout import scale_out
from benchkit.cases_upstream import burst, paced_streams
from benchkit.plan import Context, Plan
from benchkit.stats import Record

OUT = Path(__file__).resolve().parent / "out"
# A case that takes longer than this is stopped and reported as failed.
CASE_SECONDS = 300.0
CASES: dict[str, Callable[[Context], Awaitable[Record]]] = {
    "paced_streams": paced_streams,
    "herd": herd,
    "burst": burst,
    "emit_path": emit_path,
    "fan_out": fan_out,
    "persistence": persistence,
    "idle_streams": idle_streams,
    "non_streamed": non_streamed,
    "scale_out": scale_out,
}
# Idle streams holds 1,000 client sockets here and 1,000 in the server (which inherits this).
OPEN_FILES = 8192


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench.py", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--quick", action="store_true", help="smaller cases, fewer rounds")
    parser.add_argument("--plot", action="store_true", help="write PNG charts to loadtests/out/")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy flame graphs to loadtests/out/"
    )
    parser.add_argument("--json", type=Path, help="write all records to this file")
    parser.add_argument(
        "--reps", type=int, help="rounds per side for every case (default: per case, 2 to 5)"
    )
    parser.add_argument(
        "--cases",
        default=",".join(CASES),
        help=f"comma-separated, from: {', '.join(CASES)} (default: all)",
    )
    parser.add_argument("--out", type=Path, default=OUT, help="where charts and profiles go")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.cases.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in CASES]
    if unknown:
        parser.error(f"unknown case(s): {', '.join(unknown)}")
    args.cases = chosen
    if args.plot and not plots.available():
        parser.error("--plot needs matplotlib: .venv/bin/pip install matplotlib")
    return args


def raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES if hard == resource.RLIM_INFINITY else min(OPEN_FILES, hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


async def run(args: argparse.Namespace) -> tuple[list[Record], dict[str, str]]:
    # SIGTERM cancels the run like Ctrl-C does, so that every case stops its servers.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    plan = Plan.quick() if args.quick else Plan()
    if args.reps:
        plan = plan.with_reps(args.reps)
    records: list[Record] = []
    failures: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as workdir:
        ctx = Context(plan, Path(workdir), args.out, plot=args.plot, profile=args.profile)
        for name in args.cases:
            ctx.say(f"{name}: starting")
            started = time.perf_counter()
            try:
                async with asyncio.timeout(CASE_SECONDS):
                    record = await CASES[name](ctx)
            except Exception as error:
                traceback.print_exc(file=sys.stderr)
                failures[name] = f"{type(error).__name__}: {error}"
                ctx.say(f"{name}: failed after {time.perf_counter() - started:.0f} s")
                continue
            record.seconds = time.perf_counter() - started
            records.append(record)
            report.emit(record)
            ctx.say(f"{name}: done in {record.seconds:.0f} s")
        if args.plot:
            for path in plots.write_all(args.out, records, ctx.samples):
                ctx.say(f"chart: {path}")
    return records, failures


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_open_files_limit()
    try:
        records, failures = uvloop.run(run(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench: interrupted; every server it started is stopped", file=sys.stderr)
        return 130
    report.print_table(records, failures)
    if args.json:
        report.write_json(args.json, records, failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
