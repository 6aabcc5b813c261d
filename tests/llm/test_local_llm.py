"""The local-LLM extra against the real packaged SmolLM2 served by real llama.cpp processes.

Skipped without ``llama-cpp-python[server]`` (the ``llm`` extra). Replies are never compared with exact
text: greedy output can change once llama.cpp reuses its prompt cache.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")
openai = pytest.importorskip("openai")

from otel_lightning.llm import (  # noqa: E402 - after the skip
    LLMServerError,
    LocalLLMPool,
    LocalModel,
    endpoint_for,
    smollm2_path,
)

pytestmark = [pytest.mark.llm, pytest.mark.slow, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parent.parent.parent
PROMPT = [
    {
        "role": "system",
        "content": "Classify the sentiment of the review. Answer with one word: positive or negative.",
    },
    {"role": "user", "content": "Review: The battery died after two days and support never answered."},
]


def alive(pid: int) -> bool:
    """Whether a process with this pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    """The pids still alive after waiting up to ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def client_for(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalLLMPool]:
    model = LocalModel(smollm2_path())
    with LocalLLMPool(model, processes=2, log_dir=tmp_path_factory.mktemp("llm-logs")) as started:
        yield started


def test_smollm2_path_points_at_a_gguf_file() -> None:
    path = smollm2_path()
    assert path.is_file()
    assert path.suffix == ".gguf"
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"


def test_pool_has_one_endpoint_per_process(pool: LocalLLMPool) -> None:
    endpoints = pool.endpoints
    assert len(endpoints) == 2 == len(set(e.base_url for e in endpoints))
    assert all(e.base_url.startswith("http://127.0.0.1:") and e.base_url.endswith("/v1") for e in endpoints)
    assert all(e.model == "smollm2" for e in endpoints)
    assert [endpoint_for(pool, i) for i in range(4)] == [*endpoints, *endpoints]
    assert all(alive(pid) for pid in pool.pids)
    assert pool.exited() == []


def test_each_endpoint_answers_a_chat_completion(pool: LocalLLMPool) -> None:
    for endpoint in pool.endpoints:
        reply = client_for(endpoint.base_url).chat.completions.create(
            model=endpoint.model, messages=PROMPT, max_tokens=8
        )
        content = reply.choices[0].message.content
        assert isinstance(content, str) and content.strip()
        assert reply.usage is not None
        assert reply.usage.prompt_tokens > 10
        assert 0 < reply.usage.completion_tokens <= 8


def test_seeded_greedy_request(pool: LocalLLMPool) -> None:
    endpoint = endpoint_for(pool, 1)
    reply = client_for(endpoint.base_url).chat.completions.create(
        model=endpoint.model, messages=PROMPT, max_tokens=8, temperature=0.0, seed=1234
    )
    assert reply.choices[0].message.content
    assert reply.choices[0].finish_reason in {"stop", "length"}


def test_concurrent_streams_on_one_endpoint_both_finish(pool: LocalLLMPool) -> None:
    # The server interrupts a running stream when another request waits, unless told not to.
    endpoint = endpoint_for(pool, 0)
    finishes: list[str | None] = []
    texts: list[str] = []

    def stream() -> None:
        chunks = client_for(endpoint.base_url).chat.completions.create(
            model=endpoint.model, messages=PROMPT, max_tokens=24, temperature=0.7, seed=7, stream=True
        )
        parts, finish = [], None
        for chunk in chunks:
            if chunk.choices:
                parts.append(chunk.choices[0].delta.content or "")
                finish = chunk.choices[0].finish_reason or finish
        texts.append("".join(parts))
        finishes.append(finish)

    threads = [threading.Thread(target=stream) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(finishes) == 2 and all(f in {"stop", "length"} for f in finishes)
    assert all(text.strip() for text in texts)


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    pool = LocalLLMPool(LocalModel(smollm2_path()), processes=2, log_dir=tmp_path).start(timeout_s=60)
    pids = pool.pids
    assert len(pids) == 2 and all(alive(p) for p in pids)
    pool.stop()
    assert [p for p in pids if alive(p)] == []
    assert pool.pids == []
    with pytest.raises(LLMServerError):
        _ = pool.endpoints
    pool.stop()  # idempotent


def test_an_exception_inside_the_block_stops_the_pool(tmp_path: Path) -> None:
    pids: list[int] = []
    pool = LocalLLMPool(LocalModel(smollm2_path()), processes=1, log_dir=tmp_path)
    with pytest.raises(RuntimeError, match="agent failed"), pool:
        pids = pool.pids
        raise RuntimeError("agent failed")
    assert len(pids) == 1
    assert [p for p in pids if alive(p)] == []


def test_a_bad_model_fails_the_start_naming_the_log(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a model at all")
    pool = LocalLLMPool(LocalModel(bad), processes=1, log_dir=tmp_path / "logs", start_attempts=1)
    with pytest.raises(LLMServerError, match=r"llm-0\.log"):
        pool.start(timeout_s=60)
    assert pool.pids == []
    assert (tmp_path / "logs" / "llm-0.log").read_text().strip()


def test_servers_exit_when_their_parent_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import json, sys, time
        from pathlib import Path
        from otel_lightning.llm import LocalLLMPool, LocalModel, smollm2_path
        model = LocalModel(smollm2_path())
        pool = LocalLLMPool(model, processes=1, log_dir=Path({str(tmp_path)!r})).start(60)
        print(json.dumps(pool.pids), flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pids = json.loads(parent.stdout.readline())
        assert len(pids) == 1 and alive(pids[0])
        parent.kill()  # no chance to stop its pool
        parent.wait(10)
        assert wait_gone(pids, timeout_s=20) == []
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)


def test_main_serve_prints_endpoints_and_stops_on_sigterm(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import argparse, logging, sys
        from otel_lightning.llm import add_serve_arguments, main_serve
        logging.basicConfig(level="INFO")
        parser = argparse.ArgumentParser()
        add_serve_arguments(parser)
        sys.exit(main_serve(parser.parse_args(sys.argv[1:])))
        """
    )
    cmd = [sys.executable, "-c", script, "--processes", "2", "--log-dir", str(tmp_path)]
    stderr = (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        assert proc.stdout is not None
        lines = [json.loads(proc.stdout.readline()) for _ in range(2)]
        assert [line["kind"] for line in lines] == ["llm_endpoint", "llm_endpoint"]
        models = client_for(lines[0]["base_url"]).models.list()
        assert [m.id for m in models.data] == ["smollm2"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        with pytest.raises(openai.APIConnectionError):
            client_for(lines[1]["base_url"]).models.list()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        stderr.close()
