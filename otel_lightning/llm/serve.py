"""``otel-lightning llm serve``: run a pool of local LLM servers in the foreground until a signal.

The command prints one JSON line per endpoint (an ``llm_endpoint`` resource, ready to publish) on stdout
once every process answers, then serves until SIGINT or SIGTERM and stops the pool cleanly.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from otel_lightning.exceptions import OtelLightningError
from otel_lightning.llm.local import LocalLLMPool, LocalModel, smollm2_path

logger = logging.getLogger(__name__)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments that :func:`main_serve` reads to ``parser``."""
    parser.add_argument(
        "--processes", type=int, default=2, help="server processes, one per parallel worker (default: 2)"
    )
    parser.add_argument(
        "--model", type=Path, default=None, help="GGUF file (default: the packaged SmolLM2-135M-Instruct)"
    )
    parser.add_argument("--alias", default="smollm2", help="model name in requests (default: smollm2)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process (default: 1)")
    parser.add_argument("--n-ctx", type=int, default=2048, help="context window in tokens (default: 2048)")
    parser.add_argument(
        "--logits-all", action="store_true", help="keep all logits, needed for logprobs (slower)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1)")
    parser.add_argument("--log-dir", type=Path, default=None, help="server logs (default: a temporary dir)")
    parser.add_argument(
        "--start-timeout-s", type=float, default=120.0, help="wait this long for the servers (default: 120)"
    )


def main_serve(args: argparse.Namespace) -> int:
    """Start a pool, print its endpoints as JSON lines, serve until SIGINT/SIGTERM, then stop it.

    Returns:
        0 after a signal, 1 if a server process died, 2 if the pool could not start, 130 if a signal
        came before the pool was ready.
    """
    try:
        model = LocalModel(
            path=args.model if args.model is not None else smollm2_path(),
            alias=args.alias,
            n_ctx=args.n_ctx,
            n_threads=args.threads,
            logits_all=args.logits_all,
        )
        pool = LocalLLMPool(model, processes=args.processes, host=args.host, log_dir=args.log_dir)
    except (ImportError, OtelLightningError) as exc:
        logger.error("%s", exc)
        return 2
    stopping = threading.Event()
    serving = False

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info("signal %d: stopping the local LLM servers", signum)
        stopping.set()
        if not serving:
            raise KeyboardInterrupt  # abandons start(), which stops what it started

    previous = {signum: signal.signal(signum, _on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        pool.start(timeout_s=args.start_timeout_s)
        serving = True
        for endpoint in pool.endpoints:
            sys.stdout.write(json.dumps(endpoint.to_json()) + "\n")
        sys.stdout.flush()
        while not stopping.wait(1.0):
            dead = pool.exited()
            if dead:
                logs = [str(pool.log_paths[i]) for i in dead]
                logger.error("local LLM server(s) %s exited; see %s", dead, ", ".join(logs))
                return 1
        return 0
    except KeyboardInterrupt:
        return 0 if serving else 130
    except (ImportError, OtelLightningError) as exc:
        logger.error("%s", exc)
        return 2
    finally:
        pool.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
