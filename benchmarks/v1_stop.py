"""How soon a streamed /v1 completion stops after its client walks away (issue 23: within
one second, every trial), on the real model served by the real app.

    .venv/bin/python benchmarks/v1_stop.py [--trials 8] [--base fast]

Each trial opens a streamed completion of MAX_TOKENS tokens on 127.0.0.1, reads its first
pieces, closes the connection, and times how long the server still holds the generation
(the bridge's count of admitted jobs back to 0). The report lists every trial's seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MAX_TOKENS = 400
PIECES_BEFORE_CLOSE = 3
POLL_S = 0.005
WAIT_BOUND_S = 30.0
TARGET_S = 1.0
PROMPT = "The Joker floods the Gotham City Museum with laughing gas. Batman and Robin"


def trial(url: str, bridge) -> float:
    import httpx

    body = {"prompt": PROMPT, "max_tokens": MAX_TOKENS, "stream": True, "temperature": 0.8}
    with httpx.Client(timeout=60) as client:
        with client.stream("POST", f"{url}/v1/completions", json=body) as response:
            response.raise_for_status()
            seen = 0
            for line in response.iter_lines():
                if line.startswith("data:"):
                    seen += 1
                    if seen >= PIECES_BEFORE_CLOSE:
                        break
            closed = time.monotonic()
    # Leaving both blocks closed the socket; now watch the server let go.
    deadline = closed + WAIT_BOUND_S
    while bridge.pending() and time.monotonic() < deadline:
        time.sleep(POLL_S)
    return time.monotonic() - closed


def main(argv: list[str] | None = None) -> int:
    from batplots.model.engine import EngineSpec
    from batplots.story.writer import open_writer
    from batplots.web import WebConfig, create_app
    from tests.webserver import LiveServer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--base", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    writer = open_writer(EngineSpec(base=args.base))
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(WebConfig(db_path=Path(tmp) / "stories.sqlite3", writer=writer))
        with LiveServer(app) as server:
            bridge = app.state.model.bridge
            trial(server.url, bridge)  # warm-up: the first decode pays for the prompt's cells
            seconds = [trial(server.url, bridge) for _ in range(args.trials)]
    within = sum(s <= TARGET_S for s in seconds)
    print(f"{writer.engine.describe()['base']}: stopped {', '.join(f'{s:.3f}' for s in seconds)} s after the "
          f"client left; median {statistics.median(seconds):.3f} s, max {max(seconds):.3f} s; "
          f"{within} of {len(seconds)} within {TARGET_S:.0f} s")
    if args.out:
        args.out.write_text(json.dumps({"base": writer.engine.describe()["base"], "seconds": seconds,
                                        "within_target": within, "trials": len(seconds)}, indent=1))
    writer.engine.close()
    return 0 if within == len(seconds) else 1


if __name__ == "__main__":
    sys.exit(main())
