"""Semantic cache quality: hit rate and false-hit rate on a paraphrase set, by threshold.

Embeds both questions of every pair in bench/data/paraphrases.yaml with a real
embedding model served by Switchyard's own router (default the built-in
``smollm2-135m-embed``, llama.cpp, no download), one text per call as the cache embeds
them, and scores each pair with the cache's own code (``proxy.cache.semantic``: the
stored, normalised vectors and their dot product). For each threshold it prints the hit
rate (``same`` pairs at or above it: the cache answered a rewording) and the false-hit
rate (``different`` pairs at or above it: the cache would have answered another
question with a wrong answer). Nothing is asserted.

    .venv/bin/python bench/semantic_cache.py
    .venv/bin/python bench/semantic_cache.py --thresholds 0.8,0.9,0.95 --model my-embedder
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.base import Resources  # noqa: E402
from extensions.services import make_embedder  # noqa: E402
from proxy.cache import semantic  # noqa: E402
from proxy.http_client import build_http_client  # noqa: E402
from proxy.lifespan import build_router  # noqa: E402
from proxy.metrics import Metrics  # noqa: E402
from proxy.settings import load_settings  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "paraphrases.yaml"
CONTEXT = b"\0" * semantic.CONTEXT_BYTES


async def similarities(model: str, config: str | None) -> dict[str, list[float]]:
    pairs = yaml.safe_load(DATA.read_text(encoding="utf-8"))
    settings = load_settings(config)
    settings.models = [m for m in settings.models if m.name == model]
    if not settings.models:
        raise SystemExit(f"no model named {model!r} in the configuration")
    async with AsyncExitStack() as stack:
        http = build_http_client(settings.http)
        stack.push_async_callback(http.aclose)
        router = await build_router(
            settings, Resources(settings=settings, http=http), Metrics(), stack
        )
        embed = make_embedder(router, model)
        scores: dict[str, list[float]] = {}
        for kind in ("same", "different"):
            scores[kind] = []
            for first, second in pairs[kind]:
                blobs = []
                for text in (first, second):
                    (vector,) = await embed([text])
                    blob = semantic.stored_vector(CONTEXT, vector)
                    assert blob is not None
                    blobs.append(blob)
                match = semantic.best_match(blobs[0], [("other", blobs[1])])
                assert match is not None
                scores[kind].append(match[1])
        return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-embed")
    parser.add_argument("--config", default=None, help="a config file (default: built-ins)")
    parser.add_argument("--thresholds", default="0.80,0.85,0.90,0.92,0.95,0.97,0.98,0.99")
    args = parser.parse_args(argv)
    thresholds = [float(t) for t in args.thresholds.split(",") if t.strip()]
    scores = asyncio.run(similarities(args.model, args.config))
    same, different = scores["same"], scores["different"]
    print(f"{args.model}: {len(same)} same pairs, {len(different)} different pairs")
    print(
        f"similarity  same: min {min(same):.4f} median {sorted(same)[len(same) // 2]:.4f}   "
        f"different: median {sorted(different)[len(different) // 2]:.4f} "
        f"max {max(different):.4f}"
    )
    print(f"{'threshold':>9} {'hit rate':>9} {'false hits':>11}")
    for threshold in thresholds:
        hits = sum(s >= threshold for s in same) / len(same)
        false = sum(s >= threshold for s in different) / len(different)
        print(f"{threshold:>9.2f} {hits:>9.1%} {false:>11.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
