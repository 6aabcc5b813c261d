"""Test helpers shipped with otel-lightning: a scripted OpenAI-compatible server."""

from otel_lightning.testing.scripted_llm import ScriptedLLM, ScriptedReply, ToolCall

__all__ = ["ScriptedLLM", "ScriptedReply", "ToolCall"]
