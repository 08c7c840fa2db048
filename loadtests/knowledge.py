"""file_search on SciFact: retrieval quality, ingestion speed, search latency and what a
file_search call adds to a run's time to first token, measured on one gateway.

    .venv/bin/python loadtests/knowledge.py --scifact ../shared/data/scifact
        [--embeddings none|local] [--json out.json] [--skip-100k] [--quick]

It starts a gateway as a subprocess on a free loopback port (a fresh SQLite database in a
temporary folder, the built-in model unpaced, a routing file with only `embeddings = ...`) and
measures, in this order, printing one JSON record per measurement and then a table:

1. ingest_scifact: the 5,183 SciFact abstracts uploaded as `<_id>.txt` (title, blank line,
   text; 8 at a time), added to a new store in file batches of 2,000; chunks per second from
   the first batch to the last file settled (chunks counted here with the gateway's chunker,
   800 tokens overlapping by 400), and the stalls of the gateway's event loop meanwhile: a
   probe GETs /healthz every 20 ms and keeps each latency.
2. quality: the 300 test queries searched (max_num_results 50), chunks collapsed to their
   documents (a document ranks where its best chunk does), nDCG@10 and recall@10 (BEIR).
3. search_scifact: the search round trip, sequential, over the 300 queries once more.
4. file_search_ttft: 30 streamed create-thread-and-run requests to an assistant with
   file_search over the store and 30 to one without tools, alternated, one at a time; time
   to the first `thread.message.delta`.
5. ingest_pdf: one 200-page PDF of text, written here, ingested alone; chunks/s and stalls.
6. search_100k (unless --skip-100k): a second store of 100,000 chunks (SciFact's chunk texts
   over and over, 50 to a file) written straight into the gateway's SQLite file with the
   gateway's own store code; the search round trip over the 300 queries (target: p99 < 50 ms),
   and the SciFact store's again, now that the index is 20 times larger.

Traffic goes to 127.0.0.1 only; the gateway is stopped and the folder removed at the end, also
on error or Ctrl-C. The whole run took 2.5 minutes on the 2-core machine (keyword-only; most
of it the searches at 100k chunks, then the SciFact ingestion); --quick (1,000 of the
documents, every relevant one among them, so its quality figures are not SciFact's; a 20-page
PDF; 10,000 chunks; 10 runs a side) about 35 seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import uvloop
from benchkit import clients, report
from benchkit.knowledge_client import Lab, Probe, bounded, ms_summary, say
from benchkit.knowledge_data import (
    SciFact,
    documents,
    ndcg_at,
    pdf,
    pdf_pages,
    recall_at,
    self_check,
)
from benchkit.knowledge_direct import build_store
from benchkit.servers import PYTHON, Fleet, Server
from benchkit.stats import CpuMeter, Record, Target

from gateway.knowledge.chunk import chunk
from gateway.knowledge.prepare import prepare
from gateway.store import open_store

CHUNK_TOKENS, OVERLAP_TOKENS = 800, 400
UPLOAD_CONCURRENCY = 8
BATCH_FILES = 2000  # the most a file batch takes
SETTLE_SECONDS = 30 * 60.0
SEARCH_RESULTS = 50
SEARCH_TARGET_MS = 50.0
CHUNKS_PER_FILE = 50  # in the 100k store: 2,000 files, within OpenAI's 10,000 per store
WARM_UP_SEARCHES = 10


@dataclass(frozen=True)
class Plan:
    docs: int | None  # None: the whole corpus
    pdf_pages: int
    big_chunks: int
    ttft_pairs: int

    @classmethod
    def full(cls) -> Plan:
        return cls(None, 200, 100_000, 30)

    @classmethod
    def quick(cls) -> Plan:
        return cls(1000, 20, 10_000, 10)


@dataclass
class Scene:
    """What later measurements reuse: the gateway, its database, the SciFact store."""

    server: Server
    database: Path
    lab: Lab
    data: SciFact
    plan: Plan
    store: str = ""
    doc_of: dict[str, str] | None = None  # file id -> SciFact _id
    chunk_texts: list[tuple[str, int]] | None = None  # every SciFact chunk, in corpus order
    dimensions: int = 0  # of the stored vectors; 0 when keyword-only


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="knowledge.py", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--scifact", type=Path, required=True, help="the SciFact data folder")
    parser.add_argument("--embeddings", choices=("none", "local"), default="none")
    parser.add_argument("--json", type=Path, help="write all records to this file")
    parser.add_argument("--skip-100k", action="store_true", help="no 100,000-chunk store")
    parser.add_argument("--quick", action="store_true", help="a smaller run, to try the script")
    return parser.parse_args(argv)


def start_gateway(fleet: Fleet, folder: Path, embeddings: str) -> tuple[Server, Path]:
    config = folder / "gateway.toml"
    config.write_text(f'embeddings = "{embeddings}"\n')
    database = folder / "gateway.db"
    argv = [PYTHON, "-m", "gateway", "serve", "--host", "127.0.0.1", "--database", str(database)]
    argv += ["--log-level", "warning", "--local-model-delay-ms", "0", "--config", str(config)]
    return fleet.start("gateway", argv, "/readyz"), database


async def stored_chunks(database: Path, store: str) -> tuple[int, int]:
    """(chunks, vector dimensions) of a store, read from the database file."""
    db = open_store(str(database))
    await db.open()
    try:
        count, _ = await db.chunk_stamp(store)
        rows = await db.embeddings_after(store, 0)
    finally:
        await db.close()
    vector = next((embedding for _, _, embedding in rows if embedding), None)
    return count, 0 if vector is None else len(vector) // 4


# --- 1. SciFact ingestion -------------------------------------------------------------------


async def ingest_scifact(scene: Scene) -> Record:
    lab, docs = scene.lab, scene.data.docs
    say(f"chunking {len(docs)} documents here, to count chunks")
    scene.chunk_texts = [
        c for text in docs.values() for c in chunk(text, CHUNK_TOKENS, OVERLAP_TOKENS)
    ]
    say(f"uploading {len(docs)} files, {UPLOAD_CONCURRENCY} at a time")
    started = time.perf_counter()

    async def upload(item: tuple[str, str]) -> str:
        return await lab.upload(f"{item[0]}.txt", item[1].encode())

    file_ids = await bounded(docs.items(), UPLOAD_CONCURRENCY, upload)
    upload_s = time.perf_counter() - started
    scene.doc_of = dict(zip(file_ids, docs, strict=True))
    scene.store = await lab.new_store("scifact")
    say(f"uploaded in {upload_s:.0f} s; ingesting")
    async with Probe(lab.base) as probe:
        meter = CpuMeter({"gateway": scene.server})
        started = time.perf_counter()
        for start in range(0, len(file_ids), BATCH_FILES):
            await lab.add_batch(scene.store, file_ids[start : start + BATCH_FILES])
        vs = await lab.settle(scene.store, len(file_ids), "scifact", SETTLE_SECONDS)
        wall = time.perf_counter() - started
        cpu = meter.shares()
    counts = vs["file_counts"]
    in_db, scene.dimensions = await stored_chunks(scene.database, scene.store)
    local = len(scene.chunk_texts)
    record = Record(
        "ingest_scifact",
        "Ingestion, SciFact",
        {"files": len(file_ids), "chunking": [CHUNK_TOKENS, OVERLAP_TOKENS], "batch": BATCH_FILES},
    )
    stall = probe.summary()
    record.metrics = {
        "upload_seconds": round(upload_s, 2),
        "uploads_per_s": round(len(file_ids) / upload_s, 1),
        "ingest_seconds": round(wall, 2),
        "chunks_local": local,
        "chunks_in_database": in_db,
        "chunks_per_s": round(local / wall, 1),
        "files_per_s": round(len(file_ids) / wall, 1),
        "file_counts": counts,
        "vector_dimensions": scene.dimensions,
        "healthz_probe_ms": stall,
    }
    record.cpu = {"ingesting": cpu}
    record.reported = {
        "chunks/s (files/s)": f"{local / wall:,.1f} ({len(file_ids) / wall:,.1f})",
        "ingest wall time": f"{wall:.1f} s ({local:,} chunks)",
        "files failed": str(counts["failed"]),
        "event-loop stall: probe max / p99 (client late, max)": _stall(stall),
        "stored vectors": f"{scene.dimensions} dims"
        if scene.dimensions
        else "none (keywords only)",
    }
    if in_db != local:
        record.notes.append(f"the database holds {in_db} chunks; counted here: {local}")
    if counts["failed"]:
        record.notes.append(f"failed files: {json.dumps(await lab.failed_files(scene.store))}")
    return record


def _stall(probe: dict[str, float]) -> str:
    """The probe's figures; a client that woke up late was stalled itself (a busy machine)."""
    return f"{probe['max']:.1f} / {probe['p99']:.1f} ms ({probe['client_late_max']:.1f} ms)"


# --- 2. quality and 3. latency on SciFact ---------------------------------------------------


async def quality(scene: Scene) -> Record:
    assert scene.doc_of is not None
    ndcg: list[float] = []
    recall: list[float] = []
    latencies: list[float] = []
    for query_id, text in scene.data.queries.items():
        elapsed, hits = await scene.lab.search(scene.store, text, SEARCH_RESULTS)
        latencies.append(elapsed)
        ranked = documents([scene.doc_of.get(h["file_id"], h["filename"]) for h in hits])
        relevant = scene.data.qrels[query_id]
        ndcg.append(ndcg_at(ranked, relevant))
        recall.append(recall_at(ranked, relevant))
    n = len(ndcg)
    record = Record(
        "quality",
        "Quality, SciFact test",
        {"queries": n, "max_num_results": SEARCH_RESULTS, "docs": len(scene.data.docs)},
    )
    record.metrics = {
        "ndcg_at_10": round(sum(ndcg) / n, 4),
        "recall_at_10": round(sum(recall) / n, 4),
        "queries_without_hits_in_top_10": sum(r == 0 for r in recall),
        "first_pass_search_ms": ms_summary(latencies),
    }
    record.reported = {
        "nDCG@10": f"{sum(ndcg) / n:.4f}",
        "recall@10": f"{sum(recall) / n:.4f}",
    }
    return record


async def search_latency(
    scene: Scene, store: str, case: str, title: str, *, target: bool = False
) -> Record:
    """The search round trip over every test query, one at a time, after a short warm-up."""
    queries = list(scene.data.queries.values())
    for text in queries[:WARM_UP_SEARCHES]:
        await scene.lab.search(store, text, SEARCH_RESULTS)
    meter = CpuMeter({"gateway": scene.server})
    latencies = [(await scene.lab.search(store, q, SEARCH_RESULTS))[0] for q in queries]
    shown = ms_summary(latencies)
    record = Record(case, title, {"queries": len(queries), "max_num_results": SEARCH_RESULTS})
    record.metrics = {"search_ms": shown}
    record.cpu = {"searching": meter.shares()}
    record.reported = {"search p50 / p99": f"{shown['p50']:.1f} / {shown['p99']:.1f} ms"}
    if target:
        record.targets = [
            Target(
                "search p99", shown["p99"], "<=", SEARCH_TARGET_MS, " ms", b=f"{shown['p99']} ms"
            )
        ]
    return record


# --- 4. time to first token with file_search ------------------------------------------------


async def file_search_ttft(scene: Scene) -> Record:
    lab = scene.lab
    sides = {"file_search": await lab.assistant(scene.store), "no_tools": await lab.assistant(None)}
    queries = list(scene.data.queries.values())
    for assistant in sides.values():  # warm-up, not measured
        await lab.streamed_run(assistant, queries[-1])
    ttft: dict[str, list[float]] = {side: [] for side in sides}
    bad: list[str] = []
    for i in range(scene.plan.ttft_pairs):
        order = list(sides) if i % 2 == 0 else list(reversed(sides))
        for side in order:
            first, body = await lab.streamed_run(sides[side], queries[i % len(queries)])
            problem = _run_problem(side, first, body)
            if problem:
                bad.append(problem)
            else:
                assert first is not None
                ttft[side].append(first)
    with_tool, without = ms_summary(ttft["file_search"]), ms_summary(ttft["no_tools"])
    record = Record(
        "file_search_ttft",
        "Time to first token",
        {"runs_per_side": scene.plan.ttft_pairs, "model": "local (unpaced)", "order": "alternated"},
    )
    added = {q: round(with_tool[q] - without[q], 2) for q in ("p50", "p99")}
    record.metrics = {"file_search_ms": with_tool, "no_tools_ms": without, "added_ms": added}
    record.reported = {
        "TTFT p50 / p99, file_search": f"{with_tool['p50']:.1f} / {with_tool['p99']:.1f} ms",
        "TTFT p50 / p99, no tools": f"{without['p50']:.1f} / {without['p99']:.1f} ms",
        "added by file_search, p50 / p99": f"{added['p50']:.1f} / {added['p99']:.1f} ms",
    }
    record.notes += bad[:5] + ([f"{len(bad)} runs in all were bad"] if bad else [])
    return record


def _run_problem(side: str, first: float | None, body: bytes) -> str:
    """Why a streamed run does not count, or "" when it does."""
    if first is None:
        return f"{side}: no text delta"
    if b"event: thread.run.completed" not in body:
        return f"{side}: the run did not complete: {body[-300:]!r}"
    if side == "file_search" and b'"file_search"' not in body:
        return "file_search: no file_search call in the stream"
    return ""


# --- 5. one large PDF -----------------------------------------------------------------------


async def ingest_pdf(scene: Scene, folder: Path) -> Record:
    lab, pages = scene.lab, scene.plan.pdf_pages
    filename = f"report-{pages}-pages.pdf"
    path = folder / filename
    path.write_bytes(pdf(pdf_pages(list(scene.data.docs.values()), pages)))
    prepared = prepare(str(path), filename, CHUNK_TOKENS, OVERLAP_TOKENS)  # what ingestion does
    local = len(prepared.chunks)
    file_id = await lab.upload(filename, path.read_bytes())
    store = await lab.new_store("pdf")
    async with Probe(lab.base) as probe:
        meter = CpuMeter({"gateway": scene.server})
        started = time.perf_counter()
        await lab.add_batch(store, [file_id])
        vs = await lab.settle(store, 1, "pdf", SETTLE_SECONDS)
        wall = time.perf_counter() - started
        cpu = meter.shares()
    in_db, _ = await stored_chunks(scene.database, store)
    stall = probe.summary()
    record = Record(
        "ingest_pdf",
        "Ingestion, one PDF",
        {"pages": pages, "bytes": path.stat().st_size, "text_bytes": prepared.text_bytes},
    )
    record.metrics = {
        "ingest_seconds": round(wall, 3),
        "chunks_local": local,
        "chunks_in_database": in_db,
        "chunks_per_s": round(local / wall, 1),
        "file_counts": vs["file_counts"],
        "healthz_probe_ms": stall,
    }
    record.cpu = {"ingesting": cpu}
    record.reported = {
        "chunks/s": f"{local / wall:,.1f} ({local} chunks in {wall:.2f} s)",
        "event-loop stall: probe max / p99 (client late, max)": _stall(stall),
    }
    if vs["file_counts"]["failed"]:
        record.notes.append(f"failed: {json.dumps(await lab.failed_files(store))}")
    if prepared.error is not None:
        record.notes.append(f"parsed here: {prepared.error}")
    return record


# --- 6. search at 100,000 chunks ------------------------------------------------------------


async def search_100k(scene: Scene) -> Record:
    assert scene.chunk_texts is not None
    total = scene.plan.big_chunks
    say(f"writing a store of {total:,} chunks into the database")
    built = await build_store(
        str(scene.database),
        scene.chunk_texts,
        total_chunks=total,
        chunks_per_file=CHUNKS_PER_FILE,
        dimensions=scene.dimensions,
    )
    say(f"written in {built.seconds:.0f} s; searching")
    record = await search_latency(
        scene, built.vector_store_id, "search_100k", f"Search, {total // 1000}k chunks", target=True
    )
    again = await search_latency(scene, scene.store, "search_scifact_after", "")
    record.config |= {
        "chunks": built.chunks,
        "files": built.files,
        "vectors": f"random, {scene.dimensions} dims" if scene.dimensions else "none",
        "written_directly_seconds": round(built.seconds, 1),
    }
    record.metrics["scifact_store_search_ms_now"] = again.metrics["search_ms"]
    after = again.metrics["search_ms"]
    record.reported["SciFact store search p50 / p99, now"] = (
        f"{after['p50']:.1f} / {after['p99']:.1f} ms"
    )
    return record


# --- the run --------------------------------------------------------------------------------


Step = Callable[[], Awaitable[Record]]


async def measure(name: str, step: Step, records: list[Record], failures: dict[str, str]) -> bool:
    say(f"{name}: starting")
    started = time.perf_counter()
    try:
        record = await step()
    except Exception as error:
        traceback.print_exc(file=sys.stderr)
        failures[name] = f"{type(error).__name__}: {error}"
        say(f"{name}: failed after {time.perf_counter() - started:.0f} s")
        return False
    record.seconds = time.perf_counter() - started
    # The machine is shared: a busy one shows in every latency here.
    record.metrics["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    records.append(record)
    report.emit(record)
    say(f"{name}: done in {record.seconds:.0f} s")
    return True


async def run(args: argparse.Namespace) -> tuple[list[Record], dict[str, str], list[str]]:
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    plan = Plan.quick() if args.quick else Plan.full()
    data = SciFact.read(args.scifact)
    if plan.docs is not None:
        data = data.subset(plan.docs)
    records: list[Record] = []
    failures: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="gateway-knowledge-") as workdir:
        folder = Path(workdir)
        with Fleet(folder) as fleet:
            server, database = start_gateway(fleet, folder, args.embeddings)
            async with clients.session() as http:
                scene = Scene(server, database, Lab(http, server.url), data, plan)
                if await measure(
                    "ingest_scifact", lambda: ingest_scifact(scene), records, failures
                ):
                    await measure("quality", lambda: quality(scene), records, failures)
                    await measure(
                        "search_scifact",
                        lambda: search_latency(
                            scene, scene.store, "search_scifact", "Search, SciFact store"
                        ),
                        records,
                        failures,
                    )
                    await measure(
                        "file_search_ttft", lambda: file_search_ttft(scene), records, failures
                    )
                await measure("ingest_pdf", lambda: ingest_pdf(scene, folder), records, failures)
                if not args.skip_100k and scene.chunk_texts:
                    await measure("search_100k", lambda: search_100k(scene), records, failures)
                problems = scene.lab.problems
            if server.process.poll() is not None:
                problems.append(f"the gateway exited early, with {server.process.returncode}")
            problems += _log_problems(server)
    return records, failures, problems


def _log_problems(server: Server) -> list[str]:
    """The gateway log's warnings, errors and tracebacks (it logs at warning)."""
    try:
        lines = server.log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [f"gateway log: {line}" for line in lines if line.strip()][:50]


def table(records: list[Record], failures: dict[str, str]) -> str:
    rows = [("Measurement", "Figure", "Value", "Target")]
    for record in records:
        for target in record.targets:
            verdict = "pass" if target.passed else "FAIL"
            rows.append(
                (
                    record.title,
                    target.name,
                    f"{target.value:.1f}{target.unit}",
                    f"{target.op} {target.limit:g}{target.unit}: {verdict}",
                )
            )
        for name, shown in record.reported.items():
            rows.append((record.title, name, str(shown), ""))
    rows += [(case, "FAILED TO RUN", problem[:80], "") for case, problem in failures.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    self_check()
    started = time.perf_counter()
    try:
        records, failures, problems = uvloop.run(run(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("knowledge: interrupted; the gateway it started is stopped", file=sys.stderr)
        return 130
    seconds = time.perf_counter() - started
    print()
    print(table(records, failures), flush=True)
    for problem in problems:
        print(f"  {problem}")
    print(f"\nwhole run: {seconds:.0f} s; load average now {os.getloadavg()[0]:.2f}")
    if args.json:
        document = {
            "machine": report.machine(),
            "embeddings": args.embeddings,
            "quick": args.quick,
            "seconds": round(seconds, 1),
            "records": [r.as_dict() for r in records],
            "failed": failures,
            "problems": problems,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
