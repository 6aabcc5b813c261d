"""Every span name, attribute key and baggage key otel-lightning writes or reads.

Our own keys live under ``otel_lightning.``; GenAI keys follow the OpenTelemetry GenAI semantic conventions
(status: Development), with the older and the OpenInference layouts beside them because real agents still
emit those. Each group names the module that writes it and the module that reads it.
"""

from __future__ import annotations

# --- Rollout identity ------------------------------------------------------------------------------------
# Written by instrumentation/context.py (RolloutSpanProcessor stamps them on every span started inside a
# rollout, and puts them in W3C baggage for other processes). Read by spans/otlp.py at ingest into
# SpanRecord.rollout_id / attempt_id / experiment.

ROLLOUT_ID = "otel_lightning.rollout.id"
"""Id of the rollout the span belongs to."""
ATTEMPT_ID = "otel_lightning.attempt.id"
"""Id of the attempt (one try at the rollout) the span belongs to."""
EXPERIMENT = "otel_lightning.experiment"
"""Experiment name of the rollout."""
RESOURCE_VERSION = "otel_lightning.resource.version"
"""Resource version the attempt runs with (on the rollout span)."""

BAGGAGE_KEYS = (ROLLOUT_ID, ATTEMPT_ID, EXPERIMENT)
"""Baggage entries that carry rollout identity across process boundaries."""

# --- Rollout root span -----------------------------------------------------------------------------------
# Written by client/worker.py (one root span per attempt). Read by spans/trajectory.py.

ROLLOUT_SPAN = "otel_lightning.rollout"
"""Name of the root span a worker opens for each attempt."""
ROLLOUT_INPUT = "otel_lightning.rollout.input"
"""The task input as JSON (truncated to 64 KiB) on the root span."""
ROLLOUT_FINAL_REWARD = "otel_lightning.rollout.reward"
"""The reward the agent function returned, on the root span."""

# --- Rewards ---------------------------------------------------------------------------------------------
# Written by instrumentation/emit.py (emit_reward: a short span). Read by spans/trajectory.py, which also
# understands the standard gen_ai.evaluation.result event below.

REWARD_SPAN = "otel_lightning.reward"
"""Name of the span emit_reward() records."""
REWARD_VALUE = "otel_lightning.reward.value"
"""The reward, a float."""
REWARD_NAME = "otel_lightning.reward.name"
"""The reward's name when several are recorded (default: ``reward``)."""

EVALUATION_EVENT = "gen_ai.evaluation.result"
"""Standard GenAI evaluation event (span event or log record)."""
EVALUATION_NAME = "gen_ai.evaluation.name"
EVALUATION_SCORE_VALUE = "gen_ai.evaluation.score.value"
EVALUATION_SCORE_LABEL = "gen_ai.evaluation.score.label"
EVALUATION_EXPLANATION = "gen_ai.evaluation.explanation"

# --- Token ids and logprobs ------------------------------------------------------------------------------
# Written by instrumentation/openai_extras.py onto the instrumentation's own LLM span. Read by spans/llm.py.

PROMPT_TOKEN_IDS = "otel_lightning.llm.prompt_token_ids"
"""Prompt token ids, a list of ints."""
COMPLETION_TOKEN_IDS = "otel_lightning.llm.completion_token_ids"
"""Completion token ids of the first choice, a list of ints."""
COMPLETION_LOGPROBS = "otel_lightning.llm.completion_logprobs"
"""Log-probabilities of the completion tokens of the first choice, a list of floats."""

# --- GenAI semantic conventions (written by the openai instrumentations; read by spans/llm.py) ------------

GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
"""Values of gen_ai.operation.name that mark a span as an LLM call."""
GEN_AI_SYSTEM = "gen_ai.system"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P = "gen_ai.request.top_p"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_SEED = "gen_ai.request.seed"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_PROMPT_TOKENS = "gen_ai.usage.prompt_tokens"
"""Older name of gen_ai.usage.input_tokens."""
GEN_AI_USAGE_COMPLETION_TOKENS = "gen_ai.usage.completion_tokens"
"""Older name of gen_ai.usage.output_tokens."""
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
"""JSON list of ``{"role", "parts": [...]}`` messages sent to the model."""
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
"""JSON list of ``{"role", "parts": [...], "finish_reason"}`` messages the model returned."""
GEN_AI_SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
GEN_AI_TOOL_DEFINITIONS = "gen_ai.tool.definitions"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
GEN_AI_INFERENCE_DETAILS_EVENT = "gen_ai.client.inference.operation.details"
"""Log record the official openai-v2 instrumentation emits with the messages in ``event_only`` mode."""

# Older OpenLLMetry layout: flattened gen_ai.prompt.N.role / .content, gen_ai.completion.N.role / .content.
LEGACY_PROMPT_PREFIX = "gen_ai.prompt."
LEGACY_COMPLETION_PREFIX = "gen_ai.completion."

# --- OpenInference (Arize Phoenix); read by spans/llm.py --------------------------------------------------

OPENINFERENCE_SPAN_KIND = "openinference.span.kind"
OPENINFERENCE_LLM_KIND = "LLM"
OI_INPUT_MESSAGES_PREFIX = "llm.input_messages."
OI_OUTPUT_MESSAGES_PREFIX = "llm.output_messages."
OI_MODEL_NAME = "llm.model_name"
OI_INVOCATION_PARAMETERS = "llm.invocation_parameters"
OI_TOKEN_COUNT_PROMPT = "llm.token_count.prompt"
OI_TOKEN_COUNT_COMPLETION = "llm.token_count.completion"

EVENT_NAME = "event.name"
"""Older carrier of a log record's event name (the proto field ``event_name`` is preferred)."""

# --- Service identity (standard resource attribute) ------------------------------------------------------

SERVICE_NAME = "service.name"
