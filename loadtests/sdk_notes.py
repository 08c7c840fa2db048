"""Run the test snippet of the reference SDK notes, unchanged, against a fresh gateway.

    python loadtests/sdk_notes.py                          # ../shared/spec/sdk-notes.md
    python loadtests/sdk_notes.py --notes PATH/sdk-notes.md

The notes live outside the repository, so pytest does not run this (a clone's test run needs
nothing from outside it); the suite checks the same behaviour in its own words (test_sdk.py,
test_streaming.py). The snippet is read at run time, never copied: the first Python block of
its section 10, with its base URL pointed at the gateway. Exit status 0 when it passes.
Traffic goes only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit.servers import ROOT, Fleet

DEFAULT_NOTES = ROOT.parent / "shared" / "spec" / "sdk-notes.md"
NOTES_URL = "http://127.0.0.1:8000/v1"


def snippet(notes: Path) -> str:
    section = notes.read_text().split("## 10.", 1)
    if len(section) != 2:
        raise SystemExit(f"{notes}: no section 10")
    match = re.search(r"```python\n(.*?)```", section[1], flags=re.S)
    if match is None or NOTES_URL not in match.group(1):
        raise SystemExit(f"{notes}: section 10 has no Python block aimed at {NOTES_URL}")
    return match.group(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=Path, default=DEFAULT_NOTES)
    parser.add_argument("--delay-ms", type=float, default=20.0, help="built-in model's pace")
    args = parser.parse_args()
    if not args.notes.is_file():
        raise SystemExit(f"SDK notes not found at {args.notes}; pass --notes")
    code = snippet(args.notes)
    with tempfile.TemporaryDirectory(prefix="sdk-notes-") as workdir, Fleet(Path(workdir)) as fleet:
        server = fleet.gateway("gateway", delay_ms=args.delay_ms)
        namespace: dict[str, object] = {}
        exec(
            compile(code.replace(NOTES_URL, f"{server.url}/v1"), str(args.notes), "exec"), namespace
        )
    final = namespace["final"]
    print(f"{args.notes.name}, section 10, ran unchanged: the last run {final.status}")  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main())
