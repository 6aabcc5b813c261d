"""SpanTree: structure, lookups, orphan repair, bad input, rendering."""

from __future__ import annotations

import json
import time

from conftest import load_fixture, make_span, sid

from otel_lightning.spans.records import StatusCode
from otel_lightning.spans.tree import SpanNode, SpanTree


def names(nodes: list[SpanNode]) -> list[str]:
    return [n.name for n in nodes]


def sample_tree() -> SpanTree:
    # root(0-100) -> a(10-40) -> a1(15-20), a2(12-14); root -> b(50-90); given out of order.
    spans = [
        make_span("b", "root", 50, 90),
        make_span("a1", "a", 15, 20),
        make_span("root", None, 0, 100),
        make_span("a2", "a", 12, 14),
        make_span("a", "root", 10, 40),
    ]
    return SpanTree.from_spans(spans)


def test_children_ancestors_and_walk_follow_start_order() -> None:
    tree = sample_tree()
    assert len(tree) == 5
    assert names(tree.roots) == ["root"]
    assert names(tree.children(sid("root"))) == ["a", "b"]
    assert names(tree.children(sid("a"))) == ["a2", "a1"]
    assert tree.children(sid("nope")) == []
    assert names(tree.ancestors(sid("a1"))) == ["a", "root"]
    assert tree.ancestors(sid("root")) == []
    assert names(list(tree.walk())) == ["root", "a", "a2", "a1", "b"]
    assert names(list(tree)) == names(list(tree.walk()))
    node = tree.get(sid("a2"))
    assert node is not None and node.parent is tree.get(sid("a"))
    assert sid("b") in tree and sid("zz") not in tree
    assert tree.orphans == []


def test_find_and_find_first() -> None:
    tree = sample_tree()
    assert names(tree.find(lambda n: n.span.name.startswith("a"))) == ["a", "a2", "a1"]
    first = tree.find_first(lambda n: n.span.end_ns >= 90)
    assert first is not None and first.name == "root"
    assert tree.find_first(lambda n: n.name == "missing") is None


def test_orphan_is_repaired_under_the_tightest_container_of_its_attempt() -> None:
    spans = [
        make_span("root", None, 0, 1000),
        make_span("wide", "root", 100, 900),
        make_span("tight", "wide", 200, 600),
        make_span("other_attempt", None, 250, 500, attempt="a2", trace="t2"),
        make_span("orphan", "lost", 300, 400),
        make_span("orphan_child", "orphan", 310, 390),
    ]
    tree = SpanTree.from_spans(spans)
    orphan = tree.get(sid("orphan"))
    assert orphan is not None and orphan.parent is tree.get(sid("tight"))
    assert names(tree.orphans) == ["orphan"]
    assert names(tree.ancestors(sid("orphan_child"))) == ["orphan", "tight", "wide", "root"]
    assert names(tree.roots) == ["root", "other_attempt"]


def test_orphan_without_container_stays_a_root() -> None:
    spans = [make_span("root", None, 0, 100), make_span("late", "lost", 150, 200)]
    tree = SpanTree.from_spans(spans)
    assert names(tree.roots) == ["root", "late"]
    assert names(tree.orphans) == ["late"]
    assert tree.orphans[0].parent is None


def test_orphan_is_never_attached_under_its_own_descendant() -> None:
    # Clock skew: the child time-contains its orphaned parent.
    spans = [make_span("orphan", "lost", 10, 20), make_span("child", "orphan", 0, 30)]
    tree = SpanTree.from_spans(spans)
    assert names(tree.roots) == ["orphan"]
    assert names(tree.children(sid("orphan"))) == ["child"]


def test_orphan_without_attempt_is_repaired_within_its_trace() -> None:
    spans = [
        make_span("root", None, 0, 100, attempt=None),
        make_span("elsewhere", None, 0, 100, attempt=None, trace="t2"),
        make_span("orphan", "lost", 10, 20, attempt=None, trace="t2"),
    ]
    tree = SpanTree.from_spans(spans)
    orphan = tree.get(sid("orphan"))
    assert orphan is not None and orphan.parent is tree.get(sid("elsewhere"))


def test_two_traces_of_one_attempt_give_two_roots() -> None:
    spans = [
        make_span("second", None, 500, 900, trace="t2"),
        make_span("second_child", "second", 600, 700, trace="t2"),
        make_span("first", None, 0, 400, trace="t1"),
        make_span("first_child", "first", 100, 200, trace="t1"),
    ]
    tree = SpanTree.from_spans(spans)
    assert names(tree.roots) == ["first", "second"]
    assert names(list(tree.walk())) == ["first", "first_child", "second", "second_child"]
    assert tree.orphans == []


def test_parent_in_another_trace_makes_an_orphan() -> None:
    spans = [make_span("p", None, 0, 100, trace="t1"), make_span("c", "p", 10, 20, trace="t2")]
    tree = SpanTree.from_spans(spans)
    assert names(tree.orphans) == ["c"]
    # Same attempt, so repair by time containment attaches it to p anyway.
    assert names(tree.children(sid("p"))) == ["c"]


def test_cycles_and_self_parents_terminate_and_keep_every_span() -> None:
    spans = [
        make_span("x", "y", 0, 100),
        make_span("y", "z", 10, 90),
        make_span("z", "x", 20, 80),
        make_span("self", "self", 30, 40),
        make_span("tail", "z", 25, 30),
    ]
    tree = SpanTree.from_spans(spans)
    walked = names(list(tree.walk()))
    assert sorted(walked) == sorted(["x", "y", "z", "self", "tail"])
    assert len(walked) == len(set(walked)) == len(tree)
    # The cycle is cut at its earliest span, which becomes a root; self-parent is repaired by containment.
    assert names(tree.roots) == ["x"]
    assert set(names(tree.orphans)) == {"x", "self"}
    assert names(tree.ancestors(sid("tail"))) == ["z", "x"]
    assert names(tree.ancestors(sid("y"))) == ["z", "x"]
    tree.render()
    json.dumps(tree.to_json())


def test_duplicate_span_ids_keep_the_first() -> None:
    spans = [
        make_span("root", None, 0, 100),
        make_span("a", "root", 10, 20, name="first copy"),
        make_span("a", "root", 10, 20, name="second copy"),
        make_span("root", None, 0, 100, name="root again"),
    ]
    tree = SpanTree.from_spans(spans)
    assert len(tree) == 2
    assert names(list(tree.walk())) == ["root", "first copy"]


def test_deep_chains_do_not_recurse() -> None:
    depth = 5000
    spans = [make_span(f"s{i}", f"s{i - 1}" if i else None, i, 2 * depth - i) for i in range(depth)]
    tree = SpanTree.from_spans(reversed(spans))
    assert len(list(tree.walk())) == depth
    assert len(tree.ancestors(sid(f"s{depth - 1}"))) == depth - 1
    lines = tree.render().splitlines()
    assert len(lines) == depth
    assert max(len(line) for line in lines) < 250
    assert lines[-1].lstrip().startswith(f"[depth {depth - 1}] s{depth - 1}")
    node = tree.to_json()[0]
    levels = 1
    while node["children"]:
        node = node["children"][0]
        levels += 1
    assert levels == depth


def test_many_orphans_are_repaired_quickly() -> None:
    # A lost parent with 5000 direct children: each is repaired under the attempt's long-lived span.
    spans = [make_span("keep", None, 0, 10**9)]
    spans += [make_span(f"o{i}", "lost", 10 + i, 20 + i) for i in range(5000)]
    started = time.perf_counter()
    tree = SpanTree.from_spans(spans)
    assert time.perf_counter() - started < 2.0
    assert len(tree.orphans) == 5000
    assert len(tree.children(sid("keep"))) == 5000


def test_render_shows_names_durations_and_key_attributes() -> None:
    spans = [
        make_span(
            "root",
            None,
            0,
            2_500_000,
            name="otel_lightning.rollout",
            attributes={"otel_lightning.rollout.reward": 0.75},
        ),
        make_span(
            "llm",
            "root",
            0,
            1_000_000,
            name="openai.chat",
            attributes={"gen_ai.request.model": "gpt-x" * 30, "gen_ai.usage.input_tokens": 12},
        ),
        make_span(
            "bad",
            "root",
            1_500_000,
            2_000_000,
            name="execute_tool f",
            status=StatusCode.ERROR,
            attributes={"gen_ai.tool.name": "f"},
        ),
        make_span("lost", "nowhere", 2_000_000, 2_100_000, name="stray"),
    ]
    text = SpanTree.from_spans(spans).render(max_attr_chars=20)
    lines = text.splitlines()
    assert lines[0] == "otel_lightning.rollout (2.5 ms) reward=0.75"
    assert lines[1] == "├─ openai.chat (1.0 ms) model=gpt-xgpt-xgpt-xgpt-… in=12"
    assert lines[2] == "├─ execute_tool f (0.5 ms) tool=f ERROR"
    assert lines[3] == "└─ stray (0.1 ms) [orphan, repaired]"
    assert all(len(line) < 120 for line in lines)


def test_to_json_nests_children_under_their_parents() -> None:
    data = sample_tree().to_json()
    assert len(data) == 1
    assert data[0]["span"]["name"] == "root"
    assert [c["span"]["name"] for c in data[0]["children"]] == ["a", "b"]
    assert [c["span"]["name"] for c in data[0]["children"][0]["children"]] == ["a2", "a1"]
    json.dumps(data)


def test_llm_calls_join_logs_and_come_in_start_order() -> None:
    spans, logs = load_fixture("openai_v2_event.json")
    tree = SpanTree.from_spans(reversed(spans), logs)
    calls = tree.llm_calls()
    assert len(calls) == 4
    assert [c.start_ns for c in calls] == sorted(c.start_ns for c in calls)
    assert all(c.input_messages for c in calls)
    assert len(tree.logs_for(calls[0].span_id)) == 1
    assert tree.llm_calls() == calls
