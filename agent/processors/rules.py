"""The agent's extraction rules are the shared rule language in :mod:`core.rules` (the collector applies
the same rules to OpenTelemetry log records); this name stays for the agent's own imports."""

from core.rules import CompiledRule, Condition, Decision, RuleError, RuleProcessor, compile_rule, compile_spec

__all__ = ["CompiledRule", "Condition", "Decision", "RuleError", "RuleProcessor", "compile_rule", "compile_spec"]
