"""The book-LM ReAct policy (chapter 08): tasks, the policy's view, traces, encoding, one policy step."""
import tempfile
from pathlib import Path

import pytest
import torch

from genai_helpers.agents import ReActAgent, RulePlanner, build_models_database, calculator_tool, parse_step, sql_tool
from genai_helpers.agents.lm_policy import (BLOCK_SIZE, POLICY_TEMPLATES, SPLITS, BookLMPolicy, collate,
                                            encode_trace, load_policy, make_policy_tasks, make_traces,
                                            policy_manifest, policy_view, route_of_tools, save_policy,
                                            trace_segments)
from genai_helpers.models.book_lm import load_tokenizer
from genai_helpers.models.gpt import GPT, GPTConfig


@pytest.fixture(scope="module")
def tools():
    db = build_models_database(Path(tempfile.mkdtemp()) / "models.db")
    return [calculator_tool(), sql_tool(db)]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def test_tasks_cover_every_split_and_held_out_kinds_are_unseen():
    tasks = make_policy_tasks(2, seed=0)
    assert {t.split for t in tasks} == set(SPLITS)
    train_kinds = {t.kind for t in tasks if t.split == "train"}
    assert not train_kinds & {t.kind for t in tasks if t.split == "type"}
    assert {t.kind for t in tasks if t.split in ("dev", "phrasing")} <= train_kinds
    assert make_policy_tasks(2, seed=0) == tasks                     # deterministic
    # one stream per template: the dev questions do not depend on how many train questions there are
    assert make_policy_tasks({"dev": 2}, splits=("dev",)) == [t for t in tasks if t.split == "dev"]
    assert len(tasks) == 2 * len(POLICY_TEMPLATES)


@pytest.mark.parametrize("bad", [("nope",), (), "train"])
def test_tasks_reject_unknown_splits(bad):
    with pytest.raises(ValueError, match="splits"):
        make_policy_tasks(2, splits=bad)


def test_tasks_reject_bad_counts():
    with pytest.raises(ValueError, match="n_per_template"):
        make_policy_tasks(0)
    with pytest.raises(TypeError, match="n_per_template"):
        make_policy_tasks(1.5)


def test_rule_traces_are_right_and_fit_the_block(tools, tok):
    tasks = [t for t in make_policy_tasks(2, seed=3, splits=("train",)) if t.route != "search"]
    traces, skipped = make_traces(tasks, tools)
    assert not skipped and len(traces) == len(tasks)
    for task, segments in traces:
        assert segments[0] == (False, f"Question: {task.question}\n")
        assert segments[-1][0] and segments[-1][1].endswith(f"Final Answer: {task.answer}\n")
        x, y = encode_trace(tok, segments)
        assert len(x) == len(y) <= BLOCK_SIZE


def test_policy_view_flattens_observations_and_drops_the_header():
    transcript = ("System header\nTools:\n- sql: ...\nQuestion: old\nQuestion: How big is GPT-2 XL?\n"
                  "Thought: look it up\nAction: sql[SELECT params_m FROM models]\nObservation: params_m\n1558\n")
    view = policy_view(transcript)
    assert view == ("Question: How big is GPT-2 XL?\nThought: look it up\nAction: sql[SELECT params_m FROM models]\n"
                    "Observation: params_m / 1558\n")
    long = policy_view("Question: q\nObservation: " + "x" * 500 + "\n", max_obs_chars=20)
    assert long.splitlines()[1] == "Observation: " + "x" * 20 + "..."


def test_policy_view_bad_input():
    with pytest.raises(TypeError, match="transcript"):
        policy_view(None)
    with pytest.raises(ValueError, match="Question"):
        policy_view("no question here")
    with pytest.raises(ValueError, match="max_obs_chars"):
        policy_view("Question: q\n", max_obs_chars=0)


def test_model_turns_parse_back_to_the_rule_planners_actions(tools):
    """Round trip: every model turn of a trace, parsed by parse_step, is the step the rule planner took."""
    agent = ReActAgent(RulePlanner(), tools, max_steps=6)
    res = agent.run("How many times larger is GPT-2 XL than GPT-2 small?")
    turns = [text for model, text in trace_segments(res) if model]
    steps = [parse_step(t) for t in turns]
    assert [(s.tool, s.arg, s.final) for s in steps] == [(s.tool, s.arg, s.final) for s in res.steps]
    assert all(s.error is None for s in steps)


def test_trace_segments_refuse_unfinished_runs(tools):
    res = ReActAgent(RulePlanner(), tools, max_steps=1).run("How many times larger is GPT-2 XL than GPT-2 small?")
    with pytest.raises(ValueError, match="clean runs"):
        trace_segments(res)
    with pytest.raises(TypeError, match="AgentResult"):
        trace_segments("text")


def test_encode_trace_learns_only_model_turns(tok):
    segments = [(False, "Question: 2+2?\n"), (True, "Thought: add.\nAction: calculator[2+2]\n"),
                (False, "Observation: 4\n"), (True, "Thought: done.\nFinal Answer: 4\n")]
    x, y = encode_trace(tok, segments)
    q = tok.encode(segments[0][1])
    assert x[0] == tok.eot_id and len(x) == len(y)
    assert all(t == -100 for t in y[: len(q)])                       # the question is not learned
    assert y[len(q)] == tok.encode(segments[1][1])[0]                # the first model token is
    assert y[-1] == tok.eot_id                                       # and so is the end of the trace
    learned = tok.decode([t for t in y if t != -100 and t != tok.eot_id])
    assert learned == segments[1][1] + segments[3][1]
    with pytest.raises(ValueError, match="max_len"):
        encode_trace(tok, segments, max_len=5)
    with pytest.raises(ValueError, match="model turn"):
        encode_trace(tok, [(False, "Question: q\n")])
    xb, yb = collate([(x, y), (x[:3], y[:3])], pad_id=tok.eot_id)
    assert xb.shape == yb.shape == (2, len(x)) and (yb[1, 3:] == -100).all()


def test_route_of_tools():
    assert route_of_tools(["sql", "sql", "calculator"]) == "sql+calculator"
    assert route_of_tools(["calculator"]) == "calculator"
    assert route_of_tools([]) == "other" and route_of_tools(["sql", "calculator"]) == "other"


def _tiny_model(tok):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32,
                         pos_encoding="rope", tie_weights=True)).eval()


def test_a_policy_step_returns_text_within_its_budget(tok, tools):
    policy = BookLMPolicy(_tiny_model(tok), tok, max_new_tokens=8)
    out = policy("Header\nQuestion: What is 2 + 2?\n")
    assert isinstance(out, str) and policy.calls == 1 and policy.tokens <= 8
    assert policy("Question: What is 2 + 2?\n") == out                 # greedy: the same text again
    res = ReActAgent(policy, tools, max_steps=2).run("What is 2 + 2?")   # untrained: the step cap stops it
    assert res.stopped in ("max_steps", "final") and len(res.steps) <= 2
    sampled = [BookLMPolicy(_tiny_model(tok), tok, max_new_tokens=8, temperature=1.0, seed=s)("Question: q\n")
               for s in (1, 1)]
    assert sampled[0] == sampled[1]                                    # a seed fixes the sample


def test_policy_bad_input(tok):
    with pytest.raises(TypeError, match="model"):
        BookLMPolicy("gpt", tok)
    with pytest.raises(ValueError, match="temperature"):
        BookLMPolicy(_tiny_model(tok), tok, temperature=-1)
    with pytest.raises(TypeError, match="prompt"):
        BookLMPolicy(_tiny_model(tok), tok)(3)


def test_save_and_load_round_trip(tok, tmp_path):
    model = _tiny_model(tok)
    save_policy(model, tmp_path, {"note": "test"})
    assert policy_manifest(tmp_path)["note"] == "test"
    loaded = load_policy(tmp_path, max_new_tokens=4)
    x = torch.tensor([[1, 2, 3]])
    assert torch.allclose(loaded.model(x)[0], model.half().float()(x)[0], atol=1e-5)
    (tmp_path / "react_policy.safetensors").write_bytes(b"broken")
    with pytest.raises(ValueError, match="sha256"):
        load_policy(tmp_path)


def test_shipped_policy_loads_offline():
    man = policy_manifest()
    assert {"data", "training", "history", "dev", "seed", "sha256"} <= set(man)
    policy = load_policy()
    assert policy.model.config.block_size == man["config"]["block_size"] == BLOCK_SIZE
