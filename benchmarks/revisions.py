"""Before/after benchmarks: another revision's code in a folder, and a side run on it.

A benchmark that compares a revision with the working tree extracts the revision's
package (`extract`) and runs itself once per side in a process of its own whose
`batplots` is that side's (`run_side`); the side prints its figures as JSON, last line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def extract(rev: str, dest: Path, paths: tuple[str, ...] = ("batplots",)) -> Path:
    """The files of paths at revision rev (git archive), unpacked into dest."""
    dest.mkdir(parents=True, exist_ok=True)
    tar_path = dest.with_suffix(".tar")
    tar_path.write_bytes(subprocess.run(["git", "archive", rev, *paths], cwd=ROOT, capture_output=True,
                                        check=True).stdout)
    with tarfile.open(tar_path) as tar:
        tar.extractall(dest)
    return dest


def run_side(script: str | Path, code: Path, args: list[str], timeout: int = 1800) -> dict:
    """script run with args in code (its `batplots` first on the path): the JSON it prints last."""
    proc = subprocess.run([sys.executable, str(script), *args], cwd=code, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(code)})
    if proc.returncode != 0:
        raise SystemExit(f"the side in {code} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
