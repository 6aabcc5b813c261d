"""The ``otel-lightning`` command: ``serve`` a server, run a ``worker``.

Only the CLI configures logging handlers and runs uvicorn in the foreground.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from otel_lightning.config import DEFAULT_PORT
from otel_lightning.exceptions import OtelLightningError

logger = logging.getLogger("otel_lightning.cli")


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from otel_lightning.collector.app import create_app
    from otel_lightning.config import ServerSettings
    from otel_lightning.store.open import open_store

    settings = ServerSettings.resolve(
        db=args.db, host=args.host, port=args.port, lease_s=args.lease_s, api_token=args.api_token
    )
    store = open_store(settings.db)
    app = create_app(store, settings, close_store=True)
    logger.info(
        "otel-lightning serving %s on http://%s:%d (OTLP at /v1/traces)",
        settings.db,
        settings.host,
        settings.port,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    return 0


def load_agent(spec: str) -> Any:
    """Import ``package.module:function``."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"agent must be given as MODULE:FUNCTION, not {spec!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")  # so that a module in the working directory is found, as `python -m` would
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise SystemExit(f"module {module_name!r} has no attribute {attr!r}") from None


def _worker(args: argparse.Namespace) -> int:
    from otel_lightning.client.worker import Worker

    agent = load_agent(args.agent)
    instrumentation = None
    if args.capture_token_ids:
        from otel_lightning.instrumentation.setup import instrument

        instrumentation = instrument(args.server, api_token=args.api_token, capture_token_ids=True)
    worker = Worker(
        agent,
        args.server,
        concurrency=args.concurrency,
        experiments=args.experiment or (),
        worker_id=args.worker_id,
        api_token=args.api_token,
        claim_wait_s=args.claim_wait_s,
        instrumentation=instrumentation,
    )

    def _stop(signum: int, frame: Any) -> None:
        logger.info("signal %d: finishing running rollouts", signum)
        worker.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    stats = worker.run(max_rollouts=args.max_rollouts, idle_timeout_s=args.idle_timeout_s)
    logger.info(
        "worker done: %d succeeded, %d failed, %d abandoned", stats.succeeded, stats.failed, stats.abandoned
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from otel_lightning.client.export import export_rollouts
    from otel_lightning.client.lightning import connect
    from otel_lightning.types import RolloutStatus

    statuses = tuple(RolloutStatus(s) for s in (args.status or ["succeeded"]))
    with connect(args.server, experiment=args.experiment, api_token=args.api_token) as lightning:
        count = export_rollouts(
            lightning,
            args.out,
            args.format,
            resource_version=args.resource_version,
            statuses=statuses,
            min_reward=args.min_reward,
        )
    print(f"{count} records written to {args.out}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from otel_lightning.demo.main import main as demo_main

    return demo_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otel-lightning", description=__doc__)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server (OTLP receiver, task queue, resource store)")
    serve.add_argument(
        "--db", default=None, help="SQLite file or postgresql:// URL (default: otel-lightning.db)"
    )
    serve.add_argument("--host", default=None, help="interface (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help=f"port (default: {DEFAULT_PORT})")
    serve.add_argument("--lease-s", type=float, default=None, help="attempt lease in seconds (default: 30)")
    serve.add_argument("--api-token", default=None, help="require this bearer token on the API")
    serve.set_defaults(func=_serve)

    worker = sub.add_parser("worker", help="run an agent function over the server's rollouts")
    worker.add_argument("agent", help="the agent function, as MODULE:FUNCTION")
    worker.add_argument("--server", default=None, help="server URL (default: $OTEL_LIGHTNING_SERVER)")
    worker.add_argument("--concurrency", type=int, default=1)
    worker.add_argument("--experiment", action="append", help="claim only this experiment (repeatable)")
    worker.add_argument("--worker-id", default=None)
    worker.add_argument("--max-rollouts", type=int, default=None, help="stop after this many attempts")
    worker.add_argument(
        "--idle-timeout-s", type=float, default=None, help="stop after this long without work"
    )
    worker.add_argument("--claim-wait-s", type=float, default=10.0, help="long-poll wait of one claim")
    worker.add_argument("--api-token", default=None)
    worker.add_argument(
        "--capture-token-ids",
        action="store_true",
        help="record prompt/completion token ids and logprobs the model server returns",
    )
    worker.set_defaults(func=_worker)

    export = sub.add_parser("export", help="write trajectories as training data (JSONL or Parquet)")
    export.add_argument("--server", default=None, help="server URL (default: $OTEL_LIGHTNING_SERVER)")
    export.add_argument("--format", required=True, choices=["sft", "triplets", "parquet"])
    export.add_argument("--out", required=True, help="output file")
    export.add_argument("--experiment", default="default")
    export.add_argument("--resource-version", type=int, default=None)
    export.add_argument(
        "--status",
        action="append",
        choices=["succeeded", "failed", "cancelled"],
        help="rollout statuses to include (repeatable; default: succeeded)",
    )
    export.add_argument("--min-reward", type=float, default=None)
    export.add_argument("--api-token", default=None)
    export.set_defaults(func=_export)

    from otel_lightning.llm.serve import add_serve_arguments, main_serve  # light: does not import llama_cpp

    llm = sub.add_parser("llm", help="local LLM servers (needs the llm extra)")
    llm_sub = llm.add_subparsers(dest="llm_command", required=True)
    llm_serve = llm_sub.add_parser(
        "serve", help="serve a GGUF model (default: the packaged SmolLM2) on N OpenAI-compatible endpoints"
    )
    add_serve_arguments(llm_serve)
    llm_serve.set_defaults(func=main_serve)

    demo = sub.add_parser("demo", help="the main job: optimize a bundled agent on the local SmolLM2, offline")
    demo.add_argument("--out", default="demo-output", help="folder for the database, logs and summary")
    demo.add_argument(
        "--llm-processes", type=int, default=2, help="llama.cpp server processes (one per core)"
    )
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except OtelLightningError as exc:
        logger.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
