"""SpanTree: the spans of one attempt (or any set of spans) as a forest, for algorithm authors.

Real traces are imperfect: parents arrive late or never, batches are delivered twice, and buggy exporters
can even produce cycles. :meth:`SpanTree.from_spans` always returns a forest:

- **Duplicates**: the first span with a given ``span_id`` wins; later ones are dropped.
- **Orphans**: a span whose parent is missing, in another trace, itself, or on a parent cycle (the cycle is
  cut at its earliest-starting span). Each orphan is *repaired*: attached under the span of the same attempt
  (same ``attempt_id``; same ``trace_id`` when the orphan has no attempt id) whose time range contains it most
  tightly (shortest duration, then latest start), never under one of its own descendants. An orphan that no
  span contains stays a root. Every orphan is listed in :attr:`SpanTree.orphans`, repaired or not.
- **Order**: roots and children are ordered by start time (input order among equal starts).
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from otel_lightning import semconv
from otel_lightning.resources import JSON
from otel_lightning.spans.llm import LLMCall, is_llm_span, llm_call_from_span
from otel_lightning.spans.llm_messages import MessageCache
from otel_lightning.spans.records import LogRecord, SpanRecord, StatusCode

logger = logging.getLogger(__name__)

_RENDER_MAX_DEPTH = 48
"""SpanTree.render() stops indenting below this depth and prints the depth instead."""

# Attributes shown by SpanTree.render(), label first; the first present key of each group is shown.
_RENDER_KEYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model", (semconv.GEN_AI_RESPONSE_MODEL, semconv.GEN_AI_REQUEST_MODEL, semconv.OI_MODEL_NAME)),
    (
        "in",
        (
            semconv.GEN_AI_USAGE_INPUT_TOKENS,
            semconv.GEN_AI_USAGE_PROMPT_TOKENS,
            semconv.OI_TOKEN_COUNT_PROMPT,
        ),
    ),
    (
        "out",
        (
            semconv.GEN_AI_USAGE_OUTPUT_TOKENS,
            semconv.GEN_AI_USAGE_COMPLETION_TOKENS,
            semconv.OI_TOKEN_COUNT_COMPLETION,
        ),
    ),
    ("tool", (semconv.GEN_AI_TOOL_NAME,)),
    ("reward", (semconv.REWARD_VALUE, semconv.ROLLOUT_FINAL_REWARD)),
    ("reward_name", (semconv.REWARD_NAME,)),
)


class SpanNode:
    """One span in a :class:`SpanTree`, with links to its parent and its children (ordered by start)."""

    __slots__ = ("children", "parent", "span")

    def __init__(self, span: SpanRecord) -> None:
        self.span = span
        self.parent: SpanNode | None = None
        self.children: list[SpanNode] = []

    @property
    def span_id(self) -> str:
        return self.span.span_id

    @property
    def name(self) -> str:
        return self.span.name

    def __repr__(self) -> str:
        return f"SpanNode({self.span.name!r}, span_id={self.span.span_id!r}, children={len(self.children)})"


class SpanTree:
    """A forest of spans with lookups, walks and LLM-call extraction. Build it with :meth:`from_spans`."""

    __slots__ = ("_llm_calls", "_logs_by_span", "_nodes", "logs", "orphans", "roots")

    def __init__(
        self,
        roots: list[SpanNode],
        orphans: list[SpanNode],
        nodes: dict[str, SpanNode],
        logs: tuple[LogRecord, ...] = (),
    ) -> None:
        self.roots = roots
        """Top-level spans, ordered by start (one per trace normally; more when parents are missing)."""
        self.orphans = orphans
        """Spans whose recorded parent was unusable; repaired ones have a ``parent`` again."""
        self.logs = logs
        """The log records given to :meth:`from_spans`."""
        self._nodes = nodes
        self._logs_by_span: dict[str, list[LogRecord]] = {}
        for log in logs:
            if log.span_id:
                self._logs_by_span.setdefault(log.span_id, []).append(log)
        self._llm_calls: list[LLMCall] | None = None

    @classmethod
    def from_spans(cls, spans: Iterable[SpanRecord], logs: Iterable[LogRecord] = ()) -> SpanTree:
        """Build the forest; never raises on duplicates, missing parents or cycles (see the module doc)."""
        nodes: dict[str, SpanNode] = {}
        for span in spans:
            if span.span_id in nodes:
                logger.debug("duplicate span id %s dropped", span.span_id)
                continue
            nodes[span.span_id] = SpanNode(span)

        orphans: list[SpanNode] = []
        for node in nodes.values():
            parent_id = node.span.parent_span_id
            if not parent_id:
                continue
            parent = nodes.get(parent_id)
            if parent is None or parent is node or parent.span.trace_id != node.span.trace_id:
                orphans.append(node)
            else:
                node.parent = parent
        orphans.extend(_break_cycles(nodes.values()))
        if orphans:
            orphans.sort(key=lambda n: n.span.start_ns)
            containers = _Containers(nodes.values())
            for orphan in orphans:
                orphan.parent = containers.find(orphan)

        ordered = sorted(nodes.values(), key=lambda n: n.span.start_ns)
        roots = []
        for node in ordered:
            if node.parent is None:
                roots.append(node)
            else:
                node.parent.children.append(node)
        return cls(roots, orphans, nodes, tuple(logs))

    # --- lookups ------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[SpanNode]:
        return self.walk()

    def __contains__(self, span_id: object) -> bool:
        return span_id in self._nodes

    def get(self, span_id: str) -> SpanNode | None:
        return self._nodes.get(span_id)

    def children(self, span_id: str) -> list[SpanNode]:
        """Children of a span, by start time ([] for an unknown id)."""
        node = self._nodes.get(span_id)
        return list(node.children) if node is not None else []

    def ancestors(self, span_id: str) -> list[SpanNode]:
        """Parent, grandparent, ... of a span, nearest first ([] for a root or an unknown id)."""
        node = self._nodes.get(span_id)
        found: list[SpanNode] = []
        while node is not None and node.parent is not None:
            node = node.parent
            found.append(node)
        return found

    def logs_for(self, span_id: str) -> list[LogRecord]:
        """Log records that name this span."""
        return list(self._logs_by_span.get(span_id, ()))

    def walk(self) -> Iterator[SpanNode]:
        """Every node, depth-first pre-order, roots and children by start time."""
        stack = list(reversed(self.roots))
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def find(self, predicate: Callable[[SpanNode], bool]) -> list[SpanNode]:
        """Nodes for which ``predicate(node)`` is true, in walk order."""
        return [node for node in self.walk() if predicate(node)]

    def find_first(self, predicate: Callable[[SpanNode], bool]) -> SpanNode | None:
        return next((node for node in self.walk() if predicate(node)), None)

    def llm_calls(self) -> list[LLMCall]:
        """Every LLM call in the tree, normalised (joining the logs of each span), ordered by start time."""
        if self._llm_calls is None:
            calls = []
            cache = MessageCache()
            for node in sorted(self._nodes.values(), key=lambda n: n.span.start_ns):
                if is_llm_span(node.span):
                    logs = self._logs_by_span.get(node.span.span_id, ())
                    call = llm_call_from_span(node.span, logs, cache=cache)
                    if call is not None:
                        calls.append(call)
            self._llm_calls = calls
        return list(self._llm_calls)

    # --- output -------------------------------------------------------------------------------------------

    def render(self, max_attr_chars: int = 60) -> str:
        """A readable indented text tree: name, duration in ms, and key attributes (model, tokens, reward)."""
        lines: list[str] = []
        orphan_ids = {id(node) for node in self.orphans}
        stack: list[tuple[SpanNode, str, str, int]] = [(root, "", "", 0) for root in reversed(self.roots)]
        while stack:
            node, lead, child_lead, depth = stack.pop()
            marker = f"[depth {depth}] " if depth > _RENDER_MAX_DEPTH else ""
            lines.append(lead + marker + _describe(node, max_attr_chars, id(node) in orphan_ids))
            last = len(node.children) - 1
            for i in range(last, -1, -1):
                if depth >= _RENDER_MAX_DEPTH:  # keep lines readable in pathological chains
                    stack.append((node.children[i], child_lead, child_lead, depth + 1))
                    continue
                joint, below = ("└─ ", "   ") if i == last else ("├─ ", "│  ")
                stack.append((node.children[i], child_lead + joint, child_lead + below, depth + 1))
        return "\n".join(lines)

    def to_json(self) -> list[dict[str, JSON]]:
        """The forest as nested ``{"span": SpanRecord.to_json(), "children": [...]}`` dicts, one per root."""
        built: dict[int, dict[str, Any]] = {}
        roots: list[dict[str, JSON]] = []
        for node in self.walk():
            entry: dict[str, Any] = {"span": node.span.to_json(), "children": []}
            built[id(node)] = entry
            if node.parent is None:
                roots.append(entry)
            else:
                built[id(node.parent)]["children"].append(entry)
        return roots


def _break_cycles(nodes: Iterable[SpanNode]) -> list[SpanNode]:
    """Cut every parent cycle at its earliest-starting span; returns the cut spans (now without parent)."""
    done: set[int] = set()
    cut: list[SpanNode] = []
    for start in nodes:
        path: list[SpanNode] = []
        on_path: set[int] = set()
        node: SpanNode | None = start
        while node is not None and id(node) not in done:
            if id(node) in on_path:
                cycle = path[path.index(node) :]
                victim = min(cycle, key=lambda n: (n.span.start_ns, n.span.span_id))
                logger.debug("parent cycle through %d spans cut at %s", len(cycle), victim.span.span_id)
                victim.parent = None
                cut.append(victim)
                break
            on_path.add(id(node))
            path.append(node)
            node = node.parent
        done.update(on_path)
    return cut


class _Containers:
    """Finds the tightest time-container of an orphan among the spans of its attempt (or trace).

    Candidates are sorted by start; scanning back from the orphan's start, blocks whose latest end is before
    the orphan's end are skipped whole, and the scan stops once a candidate's start is so early that it
    cannot be tighter than the best found.
    """

    BLOCK = 32
    # Bounds the work on pathological input; past it, remaining orphans stay roots.
    BUDGET = 2_000_000

    def __init__(self, nodes: Iterable[SpanNode]) -> None:
        by_attempt: dict[str, list[SpanNode]] = {}
        by_trace: dict[str, list[SpanNode]] = {}
        for node in sorted(nodes, key=lambda n: n.span.start_ns):
            if node.span.attempt_id is not None:
                by_attempt.setdefault(node.span.attempt_id, []).append(node)
            by_trace.setdefault(node.span.trace_id, []).append(node)
        self.by_attempt = {key: _Group(group, self.BLOCK) for key, group in by_attempt.items()}
        self.by_trace = {key: _Group(group, self.BLOCK) for key, group in by_trace.items()}
        self.budget = self.BUDGET

    def find(self, orphan: SpanNode) -> SpanNode | None:
        span = orphan.span
        if span.attempt_id is not None:
            group = self.by_attempt.get(span.attempt_id)
        else:
            group = self.by_trace.get(span.trace_id)
        if group is None:
            return None
        best: SpanNode | None = None
        best_width = 0
        i = bisect_right(group.starts, span.start_ns) - 1
        while i >= 0:
            self.budget -= 1
            if self.budget < 0:
                logger.debug("orphan repair budget spent; span %s stays a root", span.span_id)
                return best
            if best is not None and span.end_ns - group.starts[i] > best_width:
                break  # every earlier candidate is at least this wide
            block = i // self.BLOCK
            if group.block_max_end[block] < span.end_ns:
                i = block * self.BLOCK - 1
                continue
            candidate = group.nodes[i]
            i -= 1
            other = candidate.span
            if candidate is orphan or other.end_ns < span.end_ns:
                continue
            width = other.end_ns - other.start_ns
            if (best is None or width < best_width) and not _is_descendant(candidate, orphan):
                best, best_width = candidate, width
        return best


class _Group:
    __slots__ = ("block_max_end", "nodes", "starts")

    def __init__(self, nodes: list[SpanNode], block: int) -> None:
        self.nodes = nodes
        self.starts = [n.span.start_ns for n in nodes]
        ends = [n.span.end_ns for n in nodes]
        self.block_max_end = [max(ends[b : b + block]) for b in range(0, len(ends), block)]


def _is_descendant(node: SpanNode, ancestor: SpanNode) -> bool:
    current: SpanNode | None = node
    while current is not None:
        if current is ancestor:
            return True
        current = current.parent
    return False


def _describe(node: SpanNode, max_chars: int, orphan: bool) -> str:
    span = node.span
    parts = [f"{span.name} ({span.duration_ns / 1e6:.1f} ms)"]
    attrs = span.attributes
    for label, keys in _RENDER_KEYS:
        for key in keys:
            if key in attrs:
                parts.append(f"{label}={_clip(str(attrs[key]), max_chars)}")
                break
    if span.status_code is StatusCode.ERROR:
        parts.append(f"ERROR {_clip(span.status_message, max_chars)}".rstrip())
    if orphan:
        parts.append("[orphan, repaired]" if node.parent is not None else "[orphan]")
    return " ".join(parts)


def _clip(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max(max_chars - 1, 0)] + "…"
