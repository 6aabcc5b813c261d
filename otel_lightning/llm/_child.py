"""One llama.cpp server process of a :class:`~otel_lightning.llm.local.LocalLLMPool` (private).

Run as ``python -m otel_lightning.llm._child SERVER-ARGS...``: it runs ``python -m llama_cpp.server`` in this
process, after two guards that the plain server lacks:

- it exits when its parent dies, even by SIGKILL: stdin is a pipe whose write end only the parent holds, so
  end-of-file on stdin means no parent is left to stop this process;
- it ignores environment variables that would silently reconfigure the server (``llama_cpp.server`` reads
  ``HOST``, ``PORT``, ``API_KEY``, ``N_GPU_LAYERS``... from the environment, any of which would break the
  pool's readiness check or change its behaviour).
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
import time

PARENT_GONE_GRACE_S = 5.0
"""How long the server gets to shut down after its parent died, before the process exits hard."""


def _exit_when_parent_gone() -> None:
    try:
        while sys.stdin.buffer.read(4096):
            pass  # the parent never writes; drain anything anyway so that read() waits for EOF
    except (OSError, ValueError):
        pass
    os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's handler: a graceful shutdown first
    time.sleep(PARENT_GONE_GRACE_S)
    os._exit(1)


def _drop_settings_environment() -> None:
    from llama_cpp.server.settings import ConfigFileSettings, Settings

    # pydantic-settings matches environment variables case-insensitively, without a prefix.
    names = {name.lower() for name in (*Settings.model_fields, *ConfigFileSettings.model_fields)}
    names.add("config_file")
    for key in list(os.environ):
        if key.lower() in names:
            del os.environ[key]


def main() -> None:
    _drop_settings_environment()
    threading.Thread(target=_exit_when_parent_gone, name="parent-watch", daemon=True).start()
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
