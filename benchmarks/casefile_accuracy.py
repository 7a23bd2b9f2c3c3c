"""Does the case file read the story right? (issue #25 part 0)

Runs batplots.story.casefile.extract, with the shipped batman66 lore, on every opening of
batplots/data/casefile_set.json and prints per-field precision and recall
(batplots.measure.casefile_eval): the tuning part and the held-out part side by side,
for the case file of --before REV (read from git, default the commit before the fixes)
and for the working tree's.

    .venv/bin/python benchmarks/casefile_accuracy.py [--before 542ed98] [--json OUT] [--misses]

--misses prints what each opening of the tuning part got wrong (never the held-out
part's: it is scored, not read, so that the rules are not tuned on it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from batplots.measure import casefile_eval  # noqa: E402
from batplots.model.weights import ADAPTERS_DIR  # noqa: E402
from batplots.story import casefile  # noqa: E402
from batplots.story.lore import load_lore  # noqa: E402

BEFORE = "542ed98"  # the last commit before issue #25 part 0's fixes


def old_extract(rev: str):
    """casefile.extract as it was at rev (the module's source from git, run against
    today's helpers)."""
    source = subprocess.run(["git", "show", f"{rev}:batplots/story/casefile.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType(f"casefile_{rev}")
    module.__file__ = f"{rev}:batplots/story/casefile.py"
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module.extract


def _cell(v) -> str:
    return "  -  " if v is None else f"{v:5.2f}"


def table(results: dict[str, dict]) -> str:
    cols = list(results)
    head = "field      " + "".join(f"| {c:^19} " for c in cols)
    sub = "           " + "".join(f"| {'P':>5} {'R':>5} {'F1':>5}  " for _ in cols)
    lines = [head, sub]
    for field in casefile.FIELDS:
        row = f"{field:10s} "
        for c in cols:
            f = results[c]["fields"][field]
            row += f"| {_cell(f['precision'])} {_cell(f['recall'])} {_cell(f['f1'])}  "
        lines.append(row)
    row = "lead       "
    for c in cols:
        lead = results[c]["lead"]
        row += f"| {'villain first ' + str(lead['right']) + '/' + str(lead['of']):19} "
    lines.append(row)
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", default=BEFORE, help="git revision of the case file to compare with ('' for none)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--misses", action="store_true", help="print the tuning part's wrong entries")
    ap.add_argument("--set", type=Path, default=casefile_eval.SET_PATH)
    args = ap.parse_args(argv)

    lore = load_lore(ADAPTERS_DIR / "batman66")
    tuning, heldout = casefile_eval.parts(casefile_eval.load_set(args.set))
    runs = {}
    if args.before:
        runs["before"] = old_extract(args.before)
    runs["after"] = casefile.extract
    results = {}
    for label, extract in runs.items():
        for part, items in (("tuning", tuning), ("held-out", heldout)):
            results[f"{label} {part}"] = casefile_eval.score(items, lore, extract=extract)
    print(f"{len(tuning)} tuning openings, {len(heldout)} held-out; P precision, R recall, F1"
          + (f"; before: the case file at {args.before}" if args.before else ""))
    print(table(results))
    if args.misses:
        for miss in casefile_eval.score(tuning, lore, detail=True)["misses"]:
            print(f"{miss['id']}: {miss['text']}")
            for field, w in miss["wrong"].items():
                print(f"    {field}: found {w['found']}, expected {w['expected']}")
    if args.json:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
        args.json.write_text(json.dumps({
            "what": "batplots.story.casefile.extract with the shipped batman66 lore, scored by "
                    "batplots.measure.casefile_eval on batplots/data/casefile_set.json",
            "date": time.strftime("%Y-%m-%d", time.gmtime()), "before": args.before or None,
            "after": f"working tree on {head}", "set": str(args.set.relative_to(ROOT)) if args.set.is_relative_to(ROOT)
            else str(args.set), "tuning": len(tuning), "heldout": len(heldout), "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
