"""Agents (chapter 08): the ReAct loop, tools, offline planners, multi-agent patterns,
long-term memory and a semantic cache.

- :mod:`.react`        ``ReActAgent`` and the robust action parser ``parse_step``
- :mod:`.tools`        safe calculator, read-only SQL over sqlite, retrieval over any ``.search(query, k)``
- :mod:`.planners`     ``RulePlanner`` / ``LearnedPlanner`` (offline policies) and ``make_tool_tasks``
- :mod:`.lm_policy`    ``BookLMPolicy``: the book LM fine-tuned on the rule planner's tool-use traces
                       (``load_policy``, ``make_policy_tasks``; ``make finetune-agent`` trains it)
- :mod:`.multi_agent`  sequential, parallel and debate patterns
- :mod:`.memory`       ``LongTermMemory`` in sqlite, recalled by embedding similarity
- :mod:`.cache`        ``SemanticCache`` (similarity threshold + LRU eviction) and its stream simulation
- :mod:`.embedders`    ``minilm_embedder`` (all-MiniLM-L6-v2, offline) and ``HashingEmbedder`` with chapter 08's
                       settings (both from :mod:`genai_helpers.embedders`, the package's one embedder interface)
"""
from .react import AgentResult, ReActAgent, Step, parse_step  # noqa: F401
from .tools import (MODEL_ROWS, Tool, build_models_database, calculator_tool, format_number,  # noqa: F401
                    retrieval_tool, run_sql, safe_eval, sql_tool)
from .planners import (ROUTES, LearnedPlanner, RulePlanner, ToolTask, expression_in, make_tool_tasks,  # noqa: F401
                       route_by_rules, router_text, sql_for)
from .multi_agent import debate, majority_vote, parallel, sequential  # noqa: F401
from .memory import LongTermMemory  # noqa: F401
from .cache import CacheStats, SemanticCache, load_paraphrase_set, make_query_stream, replay_stream  # noqa: F401
from .embedders import HashingEmbedder, minilm_embedder  # noqa: F401

__all__ = ["AgentResult", "ReActAgent", "Step", "parse_step", "MODEL_ROWS", "Tool", "build_models_database",
           "calculator_tool", "format_number", "retrieval_tool", "run_sql", "safe_eval", "sql_tool", "ROUTES",
           "LearnedPlanner", "RulePlanner", "ToolTask", "expression_in", "make_tool_tasks", "route_by_rules",
           "router_text", "sql_for", "debate", "majority_vote", "parallel", "sequential", "LongTermMemory",
           "CacheStats", "SemanticCache", "load_paraphrase_set", "make_query_stream", "replay_stream",
           "HashingEmbedder", "minilm_embedder"]
