"""A tool-using agent: the model asks for tools, the agent runs them, feeds the results back, and answers.

Each tool runs inside an ``execute_tool {name}`` span carrying the GenAI attributes (``gen_ai.tool.name``,
the call id, arguments and result), so the server's trajectory shows every step: the LLM call, the tool calls
it asked for, and what each tool returned. It runs through ``serve()`` and a ``Worker``:

    python -m examples.tool_agent                                     # offline: a scripted model
    python -m examples.tool_agent --base-url http://127.0.0.1:8080/v1 --model NAME   # a model with tools

``--base-url`` / ``--model`` default to ``$OPENAI_BASE_URL`` / ``$OPENAI_MODEL``. Without a base URL the
example serves a scripted model that calls ``get_weather``, then ``celsius_to_fahrenheit``, then answers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import openai
from opentelemetry import trace

from otel_lightning import LLMEndpoint, ResourceVersion, Worker, serve
from otel_lightning.testing import ScriptedLLM, ScriptedReply, ToolCall

MAX_STEPS = 5

# --- the tools ----------------------------------------------------------------------------------------------
WEATHER = {"Paris": (18.0, "sunny"), "Oslo": (4.0, "snowing"), "Lima": (22.5, "cloudy")}


def get_weather(city: str) -> str:
    celsius, sky = WEATHER.get(city, (15.0, "unknown"))
    return json.dumps({"city": city, "celsius": celsius, "sky": sky})


def celsius_to_fahrenheit(celsius: float) -> str:
    return json.dumps({"fahrenheit": round(celsius * 9 / 5 + 32, 1)})


TOOLS: dict[str, Callable[..., str]] = {
    "get_weather": get_weather,
    "celsius_to_fahrenheit": celsius_to_fahrenheit,
}
TOOL_SCHEMAS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather of a city: temperature in Celsius and the sky.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "celsius_to_fahrenheit",
            "description": "Convert a temperature from Celsius to Fahrenheit.",
            "parameters": {
                "type": "object",
                "properties": {"celsius": {"type": "number"}},
                "required": ["celsius"],
            },
        },
    },
]

tracer = trace.get_tracer("examples.tool_agent")


def run_tool(name: str, arguments: str, call_id: str) -> str:
    """Run one tool inside its GenAI ``execute_tool`` span; an error becomes the tool's answer."""
    with tracer.start_as_current_span(f"execute_tool {name}") as span:
        span.set_attribute("gen_ai.operation.name", "execute_tool")
        span.set_attribute("gen_ai.tool.name", name)
        span.set_attribute("gen_ai.tool.call.id", call_id)
        span.set_attribute("gen_ai.tool.call.arguments", arguments)
        try:
            result = TOOLS[name](**json.loads(arguments or "{}"))
        except Exception as exc:  # the model sees the error and may try again
            span.record_exception(exc)
            span.set_status(trace.StatusCode.ERROR, str(exc))
            result = json.dumps({"error": f"{type(exc).__name__}: {exc}"})
        span.set_attribute("gen_ai.tool.call.result", result)
        return result


# --- the agent ----------------------------------------------------------------------------------------------
def agent(task: dict[str, Any], resources: ResourceVersion) -> float:
    """Answer the task's question with the tools; 1.0 when the answer holds the expected text."""
    endpoint = resources["llm"]
    assert isinstance(endpoint, LLMEndpoint)
    client = openai.OpenAI(base_url=endpoint.base_url, api_key=os.environ.get("OPENAI_API_KEY", "unused"))
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Use the tools. Give temperatures in Fahrenheit."},
        {"role": "user", "content": task["question"]},
    ]
    for _ in range(MAX_STEPS):
        reply = client.chat.completions.create(
            model=endpoint.model,
            messages=messages,  # type: ignore[arg-type]
            tools=TOOL_SCHEMAS,  # type: ignore[arg-type]
            temperature=0,
        )
        message = reply.choices[0].message
        if not message.tool_calls:
            return 1.0 if task["expect"] in (message.content or "") else 0.0
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            if call.type != "function":
                continue
            result = run_tool(call.function.name, call.function.arguments, call.id)
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    return 0.0


# --- the scripted model used when no endpoint is given ------------------------------------------------------
def scripted_model(request: dict[str, Any]) -> str | ScriptedReply:
    """Weather first, then the conversion, then the answer: decided by the tool results seen so far."""
    messages = request["messages"]
    results = [json.loads(m["content"]) for m in messages if m.get("role") == "tool"]
    step = len(results)
    if step == 0:
        city = next((c for c in WEATHER if c in messages[-1]["content"]), "Paris")
        return ScriptedReply(
            tool_calls=(ToolCall(f"call-{step}", "get_weather", json.dumps({"city": city})),)
        )
    if step == 1:
        args = json.dumps({"celsius": results[0]["celsius"]})
        return ScriptedReply(tool_calls=(ToolCall(f"call-{step}", "celsius_to_fahrenheit", args),))
    weather, converted = results[0], results[1]
    return f"It is {converted['fahrenheit']} F and {weather['sky']} in {weather['city']}."


@contextlib.contextmanager
def llm_endpoint(base_url: str | None, model: str | None) -> Iterator[LLMEndpoint]:
    if base_url:
        yield LLMEndpoint(base_url, model or "default")
        return
    with ScriptedLLM(scripted_model) as llm:
        yield LLMEndpoint(llm.base_url, model or llm.model)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL"))
    parser.add_argument("--model", default=os.environ.get("OPENAI_MODEL"))
    args = parser.parse_args(argv)
    tasks = [
        {"question": "What is the weather in Paris, in Fahrenheit?", "expect": "64.4 F"},
        {"question": "What is the weather in Oslo, in Fahrenheit?", "expect": "39.2 F"},
    ]
    with llm_endpoint(args.base_url, args.model) as endpoint, serve() as lightning:
        lightning.publish({"llm": endpoint})
        worker = Worker(agent, lightning.url, concurrency=2, claim_wait_s=0.5)
        thread = threading.Thread(target=worker.run, name="example-worker", daemon=True)
        thread.start()
        try:
            finished = lightning.wait(lightning.enqueue(tasks), timeout_s=60, complete=True)
        finally:
            worker.stop()
            thread.join(10)
        for rollout in finished:
            trajectory = lightning.trajectory(rollout.rollout_id)
            print(f"rollout {rollout.rollout_id}: {rollout.status.value}, reward {rollout.reward}")
            for step in trajectory.steps:
                call = step.llm_call
                asked = ", ".join(f"{t.name}({t.arguments})" for t in call.tool_calls)
                print(
                    f"  step {step.index}: "
                    + (f"model asks {asked}" if asked else f"model answers {call.completion!r}")
                )
                for tool in step.tool_calls:
                    print(f"    execute_tool {tool.name} [{tool.call_id}] {tool.arguments} -> {tool.result}")
            print(lightning.span_tree(rollout.rollout_id).render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
