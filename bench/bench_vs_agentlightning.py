"""Rollout throughput side by side with Microsoft agent-lightning 0.3.0, in one run on one machine.

The workload on both sides: N no-op rollouts (default 2000) at concurrency C (default 32), each a claim, S
spans (``--spans-per-rollout``, default 10: a rollout span and S-1 children) exported over OTLP/HTTP to the
server, and a completion; every rollout's spans are counted back through the system's own store.
Rollouts/s is succeeded rollouts over the window from the first claim to the last completion, read from each
store's own timestamps (attempt start, rollout/attempt end), so process start-up is outside the window on
both sides. ``--concurrency`` takes a list (``8,32,64``): both sides run at each level, each on a fresh
server, and the ratio is reported per level.

1. otel-lightning: ``otel-lightning serve`` (SQLite) and one Worker process with C asyncio slots
   (bench/bench_rollouts.py's ``throughput()`` in a child process).
2. agent-lightning: its store server ``agl store`` (in-memory backend: 0.3.0 has no SQLite backend; the other
   one is MongoDB) and its runner deployment ``Trainer(n_runners=C, tracer=OtelTracer(),
   strategy=ClientServerExecutionStrategy(role="runner"))``: C runner processes, one rollout each at a time,
   spans through its ``LightningStoreOTLPExporter`` to the store's ``/v1/traces``; driven by
   bench/_agl_side.py inside the peer's own virtual environment.

The peer's venv (default ``.venv-agl`` at the repository root, gitignored) is created with
``pip install agentlightning==0.3.0 opentelemetry-exporter-otlp-proto-http==1.44.0`` when missing (``--fresh``
recreates it and times the install). The 1.44.0 exporter pin matters: 0.3.0 rewrites the exporter's private
``_endpoint``, which 1.45+ no longer reads. The load average is sampled every second during each side.

Why the default concurrency is 32 and not issue #6's 256 (bench/bench_rollouts.py runs 8 / 64 / 256 on our
side alone): the peer runs one OS process per runner, each importing agentlightning (about 150 packages; some
8 s to import here), so 256 runners on a two-core machine spend minutes of CPU starting up and then measure
the scheduling of 256 processes, not the store. Pass ``--concurrency 8,32,64`` (or more levels on a bigger
machine) for a sweep.

    python bench/bench_vs_agentlightning.py [--rollouts 2000] [--concurrency 32|8,32,64]
                                            [--spans-per-rollout 10] [--fresh]

Prints a table and writes bench/results/vs_agentlightning.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._load import LoadSampler  # noqa: E402
from bench.bench_ingest import free_port, start_server  # noqa: E402
from bench.bench_rollouts import throughput  # noqa: E402

RESULTS = ROOT / "bench" / "results"
AGL_SIDE = ROOT / "bench" / "_agl_side.py"
QUIET = ["--log-level", "WARNING"]
AGL_REQUIREMENTS = ["agentlightning==0.3.0", "opentelemetry-exporter-otlp-proto-http==1.44.0"]


def peer_env() -> dict[str, str]:
    """The peer's environment: no OTel settings of ours, litellm's bundled cost map (no fetch at import)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACELOOP_", "OTEL_LIGHTNING_"))
    }
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", AGENTOPS_LOG_LEVEL="ERROR", PYTHONUNBUFFERED="1")
    return env


def peer_venv(venv: Path, fresh: bool) -> tuple[Path, dict[str, Any]]:
    """The peer's interpreter, installing it when missing (or when ``fresh``); what the install cost."""
    python = venv / "bin" / "python"
    check = [
        str(python),
        "-c",
        "import importlib.metadata as m; assert m.version('agentlightning') == '0.3.0'",
    ]
    info: dict[str, Any] = {"venv": str(venv), "requirements": AGL_REQUIREMENTS}
    if fresh and venv.exists():
        shutil.rmtree(venv)
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        info["installed_now"] = False
    else:
        print(f"creating {venv}: pip install {' '.join(AGL_REQUIREMENTS)} (a minute or two)", flush=True)
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, *AGL_REQUIREMENTS], check=True)
        info["installed_now"] = True
        info["install_seconds"] = round(time.monotonic() - started, 1)
    packages = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    )
    info["packages"] = len(json.loads(packages.stdout))
    du = subprocess.run(["du", "-sm", str(venv)], capture_output=True, text=True, check=True)
    info["size_mib"] = int(du.stdout.split()[0])
    started = time.monotonic()
    subprocess.run([str(python), "-c", "import agentlightning"], env=peer_env(), check=True)
    info["import_seconds"] = round(time.monotonic() - started, 1)
    return python, info


def wait_http(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s")


def run_ours(rollouts: int, concurrency: int, spans: int, work: Path) -> dict[str, Any]:
    db = work / f"ours-{concurrency}.db"
    port = free_port()
    server = start_server(db, port)
    # A fresh process per level: instrument() keeps the first server a process exported to, and each level
    # has its own server (a fresh store, as on the peer's side).
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            url = f"http://127.0.0.1:{port}"
            result = pool.submit(throughput, url, rollouts, concurrency, spans).result()
    finally:
        server.terminate()
        server.wait(30)
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0]
        first, last, succeeded = conn.execute(
            "SELECT MIN(started_ns), MAX(ended_ns), SUM(status = 'succeeded') FROM attempts"
        ).fetchone()
        per_rollout = conn.execute(
            "SELECT n, COUNT(*) FROM (SELECT COUNT(*) AS n FROM spans GROUP BY trace_id) GROUP BY n"
        ).fetchall()
    seconds = (last - first) / 1e9
    return {
        "rollouts": rollouts,
        "concurrency": concurrency,
        "spans_per_rollout": spans,
        "succeeded": succeeded,
        "seconds": round(seconds, 3),
        "rollouts_per_s": round(succeeded / seconds, 1),
        "worker_run_seconds": result["seconds"],
        "worker_run_rollouts_per_s": result["rollouts_per_s"],
        "spans_stored": stored,
        "spans_per_trace_histogram": {str(n): c for n, c in sorted(per_rollout)},
        "spans_expected": rollouts * spans,
    }


def run_peer(
    python: Path, rollouts: int, concurrency: int, spans: int, work: Path, reward: bool
) -> dict[str, Any]:
    port = free_port()
    server_log = (work / "agl-store.log").open("w")
    server = subprocess.Popen(
        [str(python), "-m", "agentlightning.cli.store", "--host", "127.0.0.1", "--port", str(port), *QUIET],
        stdout=server_log,
        stderr=subprocess.STDOUT,
        env=peer_env(),
    )
    out = work / "agl.json"
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/agl/health")
        cmd = [str(python), str(AGL_SIDE), "--role", "driver", "--port", str(port)]
        cmd += [
            "--rollouts",
            str(rollouts),
            "--concurrency",
            str(concurrency),
            "--spans-per-rollout",
            str(spans),
        ]
        cmd += ["--out", str(out), "--runner-log", str(work / "agl-runners.log")]
        subprocess.run(cmd + (["--reward"] if reward else []), env=peer_env(), check=True, timeout=1800)
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        server_log.close()
    result: dict[str, Any] = json.loads(out.read_text())
    errors = [
        line.strip()
        for name in ("agl-store.log", "agl-runners.log")
        for line in (work / name).read_text(errors="replace").splitlines()
        if "ERROR" in line or "Traceback" in line
    ]
    result["log_error_lines"] = len(errors)
    result["log_error_sample"] = errors[:5]
    return result


def run_level(python: Path, args: argparse.Namespace, concurrency: int, work: Path) -> dict[str, Any]:
    """Both sides at one concurrency level, each with its load-average summary, and the ratio."""
    n, spans = args.rollouts, args.spans_per_rollout
    print(f"otel-lightning: {n} rollouts at concurrency {concurrency}, {spans} spans each ...", flush=True)
    with LoadSampler() as ours_load:
        ours = run_ours(n, concurrency, spans, work)
    ours["load"] = ours_load.summary()
    print(f"agent-lightning: {n} rollouts at concurrency {concurrency}, {spans} spans each ...", flush=True)
    with LoadSampler() as peer_load:
        peer = run_peer(python, n, concurrency, spans, work, args.reward)
    peer["load"] = peer_load.summary()
    ratio = ours["rollouts_per_s"] / peer["rollouts_per_s"] if peer.get("rollouts_per_s") else None
    return {
        "concurrency": concurrency,
        "otel_lightning": ours,
        "agentlightning": peer,
        "ratio_ours_over_peer": None if ratio is None else round(ratio, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rollouts", type=int, default=2000, help="rollouts per side and level")
    parser.add_argument("--concurrency", default="32", help="one level, or several separated by commas")
    parser.add_argument("--spans-per-rollout", type=int, default=10, help="the rollout span included")
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv-agl")
    parser.add_argument("--fresh", action="store_true", help="recreate the peer's venv and time the install")
    parser.add_argument("--reward", action="store_true", help="the peer's agent returns 1.0 (one more span)")
    parser.add_argument("--out", type=Path, default=RESULTS / "vs_agentlightning.json")
    args = parser.parse_args()
    levels = [int(level) for level in str(args.concurrency).split(",")]
    if args.spans_per_rollout < 1:
        parser.error("--spans-per-rollout counts the rollout span: at least 1")
    python, install = peer_venv(args.venv, args.fresh)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-vs-agl-") as tmp:
        results = [run_level(python, args, level, Path(tmp)) for level in levels]
    report = {
        "workload": f"{args.rollouts} no-op rollouts per level, concurrency {args.concurrency}, "
        f"{args.spans_per_rollout} spans each over OTLP/HTTP",
        "window": "first claim to last completion, from each store's own timestamps",
        "cpus": os.cpu_count(),
        "load1_before": round(load_before, 2),
        "levels": results,
        "agentlightning_install": install,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(
        f"{'system':<22} {'rollouts':>8} {'conc':>5} {'seconds':>8} {'rollouts/s':>10} {'spans':>7}/"
        f"{'expected':<8} {'load1':>9} {'ours/peer':>9}"
    )
    for level in results:
        for name, r in (
            ("otel-lightning", level["otel_lightning"]),
            ("agentlightning 0.3.0", level["agentlightning"]),
        ):
            load = f"{r['load']['load1_min']:.1f}-{r['load']['load1_max']:.1f}"
            ratio = level["ratio_ours_over_peer"] if name == "otel-lightning" else ""
            print(
                f"{name:<22} {r['succeeded']:>8} {r['concurrency']:>5} {r['seconds']:>8} "
                f"{r['rollouts_per_s']:>10} {r['spans_stored']:>7}/{r['spans_expected']:<8} {load:>9} "
                f"{ratio!s:>9}"
            )
    print(
        f"load1 before {report['load1_before']}; peer venv: {install['packages']} packages, "
        f"{install['size_mib']} MiB, import {install['import_seconds']} s"
        + (f", install {install['install_seconds']} s" if install.get("installed_now") else "")
    )
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
