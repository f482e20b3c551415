"""The match/set rule language, one implementation shared by the agent and the collector.

RuleProcessor: ordered extraction rules, compiled once, turning fields into audit semantics. The agent
runs it over the fields parsed from each log line (``agent/loading.py``); the collector over the fields
of each OpenTelemetry log record it receives (``collector/api/otlp_mapping.py``), with the same YAML.

The first rule whose every condition holds decides: ``drop`` the line, or ``set`` fields from templates.
Lines no rule matches follow the ``default`` block. A source's own rules are tried before the shared
ones. Each rule compiles into a list of predicates (cheap ones - method, status - first, the route
regex last), so evaluating a line never walks the YAML. When the rules open with drop rules that only
look at the method, access-log lines they discard are recognised from the raw bytes and never parsed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from core.event import ACTOR_TYPES, OUTCOMES
from core.routes import (
    Route,
    RouteTable,
    SetTemplate,
    TemplateError,
    bare_path,
    compile_route,
    compile_set_template,
    is_route_template,
    lookup_path,
)
from core.schema import FIELDS

SETTABLE = frozenset(field.name for field in FIELDS if field.settable)
_STATUS_CLASS = re.compile(r"^([1-5])xx$", re.IGNORECASE)
_RANGE_OPS: dict[str, Callable[[float, float], bool]] = {
    "gte": lambda a, b: a >= b,
    "gt": lambda a, b: a > b,
    "lte": lambda a, b: a <= b,
    "lt": lambda a, b: a < b,
}
_SPEC_OPS = frozenset({"regex", "not", "eq", *_RANGE_OPS})

Predicate = Callable[[Any], bool]

DEFAULT_VERBS = {
    "POST": "created",
    "PUT": "updated",
    "PATCH": "updated",
    "DELETE": "deleted",
    "GET": "read",
    "HEAD": "read",
}
"""What ``{verb}`` in a set template becomes for each method (``verbs:`` in a config replaces the map)."""


@dataclass(frozen=True)
class RuleConfig:
    """One extraction rule: when every condition in ``match`` holds, ``drop`` the line or ``set`` fields.

    ``match`` maps a field (event field, parsed field, JSON dot-path) to a value spec: a scalar, a list
    (any of), ``{regex: ...}``, ``{not: ...}``, ``2xx``..``5xx``, ``{gte/gt/lte/lt: n}``, a CIDR block, or
    for ``path`` a route template such as ``/api/v1/users/{user_id}``. See README "Writing rules".
    """

    name: str
    match: dict[str, Any] = field(default_factory=dict)
    set: dict[str, str] | None = None
    drop: bool = False

    def validate(self) -> list[tuple[str, str]]:
        if self.drop and self.set:
            return [("", "a rule has either drop: true or set:, not both")]
        if not self.drop and not self.set:
            return [("", "a rule needs drop: true or a set: block")]
        return []


@dataclass(frozen=True)
class DefaultRuleConfig:
    """What happens to lines no rule matched: kept with the built-in defaults, ``drop``ped, or ``set``."""

    drop: bool = False
    set: dict[str, str] | None = None

    def validate(self) -> list[tuple[str, str]]:
        if self.drop and self.set:
            return [("", "either drop: true or set:, not both")]
        return []


class RuleError(ValueError):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


@dataclass(frozen=True)
class Condition:
    key: str
    description: str
    test: Predicate
    dotted: bool = False  # a JSON dot-path: looked up in the parsed document


@dataclass
class CompiledRule:
    name: str
    conditions: list[Condition]
    routes: tuple[Route, ...]
    drop: bool
    setters: list[tuple[str, SetTemplate]] = field(default_factory=list)
    only_methods: frozenset[str] | None = None  # set when the rule looks at nothing but literal methods


@dataclass
class Decision:
    """The outcome for one line: dropped, or the values rules set (``None``: nothing matched)."""

    rule: str | None
    dropped: bool
    values: dict[str, Any]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    try:
        return float(str(value))
    except ValueError:
        return None


def _equals(key: str, expected: Any) -> Predicate:
    if key == "method" and isinstance(expected, str):
        wanted = expected.upper()
        return lambda value: isinstance(value, str) and value.upper() == wanted
    if key == "path" and isinstance(expected, str):
        return lambda value: (
            isinstance(value, str)
            and value.split("?", 1)[0].split("#", 1)[0]
            in (
                expected,
                expected.rstrip("/") or "/",
            )
        )
    if isinstance(expected, int | float) and not isinstance(expected, bool):
        return lambda value: _number(value) == expected
    text = str(expected)
    return lambda value: value is not None and str(value) == text


def compile_spec(key: str, spec: Any, path: str) -> tuple[Predicate, str]:
    """A predicate for one ``match`` value and a human description of it; :class:`RuleError` if bad."""
    if isinstance(spec, list):
        if not spec:
            raise RuleError(path, "an empty list matches nothing")
        compiled = [compile_spec(key, item, f"{path}[{i}]") for i, item in enumerate(spec)]
        description = "one of [" + ", ".join(d for _, d in compiled) + "]"
        members = _literal_set(key, spec)
        if members is not None:  # the common case (method: [GET, HEAD]) is one set lookup per line
            if key == "method":
                return (lambda value: isinstance(value, str) and value.upper() in members), description
            return (lambda value: value is not None and str(value) in members), description
        tests = [test for test, _ in compiled]

        return (lambda value: any(test(value) for test in tests)), description
    if isinstance(spec, dict):
        unknown = set(spec) - _SPEC_OPS
        if unknown:
            raise RuleError(
                f"{path}.{sorted(unknown)[0]}", f"unknown operator; use one of {', '.join(sorted(_SPEC_OPS))}"
            )
        parts: list[tuple[Predicate, str]] = []
        for op, operand in spec.items():
            if op == "regex":
                try:
                    regex = re.compile(str(operand))
                except re.error as exc:
                    raise RuleError(
                        f"{path}.regex", f"invalid regular expression at position {exc.pos}: {exc.msg}"
                    ) from None
                parts.append(
                    (lambda value, r=regex: value is not None and r.search(str(value)) is not None, f"~/{operand}/")
                )
            elif op == "not":
                inner, description = compile_spec(key, operand, f"{path}.not")
                parts.append((lambda value, t=inner: not t(value), f"not {description}"))
            elif op == "eq":
                parts.append((_equals(key, operand), repr(operand)))
            else:
                bound = _number(operand)
                if bound is None:
                    raise RuleError(f"{path}.{op}", f"must be a number, got {operand!r}")
                compare = _RANGE_OPS[op]
                parts.append(
                    (
                        lambda value, c=compare, b=bound: (n := _number(value)) is not None and c(n, b),
                        f"{op} {operand}",
                    )
                )
        if len(parts) == 1:  # the usual {regex: ...} or {not: ...}: its own test, without all() around it
            return parts[0]
        tests = [t for t, _ in parts]
        return (lambda value: all(t(value) for t in tests)), " and ".join(d for _, d in parts)
    if key == "status_code" and isinstance(spec, str) and (klass := _STATUS_CLASS.match(spec)):
        low = int(klass.group(1)) * 100
        return (lambda value: (n := _number(value)) is not None and low <= n < low + 100), spec
    if key == "client_ip" and isinstance(spec, str) and "/" in spec:
        try:
            network = ipaddress.ip_network(spec, strict=False)
        except ValueError:
            raise RuleError(path, f"not a CIDR block: {spec!r}") from None
        return (lambda value: _in_network(value, network)), spec
    return _equals(key, spec), repr(spec)


def _literal_set(key: str, spec: list[Any]) -> frozenset[str] | None:
    """The list as a set of strings when every item is a plain string compared as text, else ``None``.

    Paths (trailing-slash and query rules), numbers (compared as numbers), status classes (``4xx``) and
    CIDR blocks keep their own predicates.
    """
    if key == "path" or not all(isinstance(item, str) for item in spec):
        return None
    if key == "status_code" and any(_STATUS_CLASS.match(item) for item in spec):
        return None
    if key == "client_ip" and any("/" in item for item in spec):
        return None
    return frozenset(item.upper() for item in spec) if key == "method" else frozenset(spec)


def _precheck_regex(methods: frozenset[bytes]) -> re.Pattern[bytes] | None:
    """Matches an access-log line whose request (after the first ``] "``) starts with one of ``methods``
    and a target (``/``, ``*`` or ``h``ttp://): a request that is not a request line parses with no method,
    so the rules keep it, and so must this.

    Possessive and atomic, so a line that does not match fails without backtracking: the pipeline runs
    it over every line of a chunk from C (``map``), which is what makes dropped lines nearly free.
    """
    if not methods:
        return None
    alternatives = b"|".join(re.escape(m) for m in sorted(methods))
    return re.compile(rb'(?>[^\]]*+(?:\](?! ")[^\]]*+)*+)\] "(?:' + alternatives + rb") [/*h]")


def _in_network(value: Any, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_address(str(value)) in network
    except ValueError:
        return False


def compile_rule(rule: RuleConfig, path: str, known_fields: frozenset[str] | None) -> CompiledRule:
    """Compile one rule; raise :class:`RuleError` (with its key path) for the first problem found."""
    routes: list[Route] = []
    conditions: list[Condition] = []
    for key, spec in rule.match.items():
        key_path = f"{path}.match.{key}"
        if known_fields is not None and key not in known_fields:
            raise RuleError(key_path, f"unknown field; this source has {', '.join(sorted(known_fields))}")
        templates = spec if isinstance(spec, list) else [spec]
        if key == "path" and any(isinstance(t, str) and is_route_template(t) for t in templates):
            for index, template in enumerate(templates):
                where = f"{key_path}[{index}]" if isinstance(spec, list) else key_path
                try:
                    routes.append(compile_route(str(template)))
                except TemplateError as exc:
                    raise RuleError(where, f"route template {template!r}: {exc}") from None
            continue
        test, description = compile_spec(key, spec, key_path)
        conditions.append(Condition(key, description, test, "." in key))
    conditions.sort(key=lambda c: c.key not in ("method", "status_code"))  # cheapest first
    compiled = CompiledRule(rule.name, conditions, tuple(routes), rule.drop)
    method_spec = rule.match.get("method")
    if set(rule.match) == {"method"}:
        literals = [method_spec] if isinstance(method_spec, str) else method_spec
        if isinstance(literals, list) and all(isinstance(m, str) for m in literals):
            compiled.only_methods = frozenset(m.upper() for m in literals)
    # A placeholder must be captured by every route of the rule, or it could be missing.
    captured = set.intersection(*(set(r.captures) for r in routes)) if routes else set()
    available = (known_fields or frozenset()) | {"verb"} | captured
    compiled.setters = compile_setters(rule.set or {}, f"{path}.set", available, known_fields is None)
    return compiled


def compile_setters(
    values: dict[str, str], path: str, available: Iterable[str], open_fields: bool
) -> list[tuple[str, SetTemplate]]:
    available = set(available)
    setters = []
    for name, raw in values.items():
        key_path = f"{path}.{name}"
        if name not in SETTABLE and not name.startswith("metadata."):
            raise RuleError(key_path, f"not settable; set one of {', '.join(sorted(SETTABLE))} or metadata.<key>")
        try:
            template = compile_set_template(str(raw))
        except TemplateError as exc:
            raise RuleError(key_path, str(exc)) from None
        for placeholder in template.placeholders:
            if placeholder not in available and not (open_fields and placeholder not in ("verb",)):
                raise RuleError(key_path, f"'{{{placeholder}}}' is not a capture of this rule's route nor a field")
        if not template.placeholders:
            literal = str(raw)
            if name == "outcome" and literal not in OUTCOMES:
                raise RuleError(key_path, f"must be one of {', '.join(OUTCOMES)}")
            if name == "actor_type" and literal not in ACTOR_TYPES:
                raise RuleError(key_path, f"must be one of {', '.join(ACTOR_TYPES)}")
        setters.append((name, template))
    return setters


_REMEMBERED = 4096
"""Decisions a :class:`RuleProcessor` remembers (:meth:`RuleProcessor.decide_remembered`)."""


class RuleProcessor:
    """The rules of one source (its own, then the shared ones) and its default."""

    def __init__(
        self,
        own: list[RuleConfig],
        own_path: str,
        shared: list[RuleConfig],
        default: DefaultRuleConfig,
        default_path: str,
        verbs: dict[str, str],
        known_fields: frozenset[str] | None,
    ) -> None:
        self.errors: list[RuleError] = []
        self.rules: list[CompiledRule] = []
        for rules, base in ((own, own_path), (shared, "rules")):
            for index, rule in enumerate(rules):
                try:
                    self.rules.append(compile_rule(rule, f"{base}[{index}]", known_fields))
                except RuleError as exc:
                    self.errors.append(exc)
        self.default_drop = default.drop
        try:
            available = (known_fields or frozenset()) | {"verb"}
            self.default_setters = compile_setters(
                default.set or {}, f"{default_path}.set", available, known_fields is None
            )
        except RuleError as exc:
            self.errors.append(exc)
            self.default_setters = []
        self.verbs = {k.upper(): v for k, v in verbs.items()}
        self.drop_methods = self._leading_method_drops()
        self.drop_regex = _precheck_regex(self.drop_methods)
        self._routes = RouteTable([(index, route) for index, rule in enumerate(self.rules) for route in rule.routes])
        self.reads = self._reads()
        self._remembered: dict[tuple[Any, ...], Decision] = {}

    def _reads(self) -> tuple[str, ...]:
        """Every field a decision can depend on: what conditions test, ``path`` when a rule has routes,
        what set templates fill in, ``method`` (the ``{verb}``), and ``_doc`` when any of them is a dot-path
        (:func:`~core.routes.lookup_path` looks there)."""
        names = {"method"}
        for rule in self.rules:
            names.update(condition.key for condition in rule.conditions)
            if rule.routes:
                names.add("path")
            names.update(name for _, template in rule.setters for name in template.placeholders)
        names.update(name for _, template in self.default_setters for name in template.placeholders)
        if any("." in name for name in names):
            names.add("_doc")
        return tuple(sorted(names))

    def static_texts(self) -> list[str]:
        """Every text the rules can put into an event by themselves: rule names, route templates and the
        literal parts of set templates (the redactor's shortcut checks them once)."""
        texts: list[str] = []
        for rule in self.rules:
            texts.append(rule.name)
            texts.extend(route.template for route in rule.routes)
            texts.extend(text for _, template in rule.setters for is_field, text in template.parts if not is_field)
        texts.extend(text for _, template in self.default_setters for is_field, text in template.parts if not is_field)
        return texts

    @property
    def active(self) -> bool:
        return bool(self.rules or self.default_drop or self.default_setters)

    def _leading_method_drops(self) -> frozenset[bytes]:
        """Methods that the first rules drop by method alone: recognisable before parsing."""
        methods: set[bytes] = set()
        for rule in self.rules:
            if not rule.drop or rule.only_methods is None:  # routes make only_methods None
                break
            methods.update(m.encode() for m in rule.only_methods)
        return frozenset(methods)

    def precheck_drops(self, line: bytes) -> bool:
        """True when an access-log line will certainly be dropped by the leading method rules."""
        return self.drop_regex is not None and self.drop_regex.match(line) is not None

    def decide(self, fields: dict[str, Any]) -> Decision:
        """The first matching rule's decision, else the default's. The routes of all rules are tried at
        once (:class:`~core.routes.RouteTable`): rules with routes before the first whose route fits
        cannot match, so only rules without routes are tried on the way to it."""
        path = fields.get("path")
        bare = None
        hit, at_hit = -1, None  # the first rule with a route that fits (-1: none), its (captures, route)
        if isinstance(path, str):
            bare = path if "?" not in path and "#" not in path and ";" not in path else bare_path(path)
            first = self._routes.first(bare)
            if first is not None:
                hit, route, captures = first
                at_hit = captures, route
        for index, rule in enumerate(self.rules):
            if not rule.routes or index > hit >= 0:  # after the hit only when its conditions failed
                matched = self._matches(rule, fields, bare)
            elif index == hit and self._conditions_hold(rule, fields):
                matched = at_hit
            else:
                continue  # no route of it fits the path, or its conditions fail
            if matched is not None:
                return self._decision(rule, fields, matched)
        return self._decision(None, fields, None)

    def decide_remembered(self, fields: dict[str, Any]) -> Decision:
        """What :meth:`decide` returns, remembered by the values (and their types) of :attr:`reads` - all a
        decision depends on - for sources whose records repeat them (OpenTelemetry records: a few event
        names and methods). The :class:`Decision` returned is shared: read it, never change it.

        Not remembered: a list or map among the values (not hashable), or a float (``-0.0 == 0.0``, yet
        templates and ``eq`` tell them apart as text). Measured (callgrind, the bench's records mapped by
        ``/v1/logs`` under the default ``otlp`` rules): ``decide`` ~12,000 instructions a record (the
        mapping cut short before and after it); this lookup, with the other changes of the same commit
        (bodies cached, size checks bounded), took the receiver's whole path 199,400 -> 191,100."""
        values = tuple(map(fields.get, self.reads))
        types = tuple(map(type, values))
        if float in types:
            return self.decide(fields)
        key = values + types
        try:
            decision = self._remembered.get(key)
        except TypeError:  # an unhashable value
            return self.decide(fields)
        if decision is None:
            if len(self._remembered) >= _REMEMBERED:
                self._remembered.clear()  # bounded memory; clearing only costs deciding again
            decision = self._remembered[key] = self.decide(fields)
        return decision

    def _decision(
        self, rule: CompiledRule | None, fields: dict[str, Any], matched: tuple[dict[str, str], Route | None] | None
    ) -> Decision:
        """What ``rule`` decides for ``fields`` given its match's (captures, route); ``None``: the default's."""
        if rule is None:
            if self.default_drop:
                return Decision(None, True, {})
            return Decision(None, False, self._render(self.default_setters, fields, {}, None, None))
        if rule.drop:
            return Decision(rule.name, True, {})
        assert matched is not None  # a rule decides only when it matched
        captures, route = matched
        return Decision(rule.name, False, self._render(rule.setters, fields, captures, rule, route))

    def decide_one_by_one(self, fields: dict[str, Any]) -> Decision:
        """What :meth:`decide` returns, each rule tried in turn with its routes one by one: the reference
        the route table is tested against (``tests/agent/test_rules.py``)."""
        path = fields.get("path")
        bare = bare_path(path) if isinstance(path, str) else None
        for rule in self.rules:
            matched = self._matches(rule, fields, bare)
            if matched is not None:
                return self._decision(rule, fields, matched)
        return self._decision(None, fields, None)

    def explain(
        self, fields: dict[str, Any], show: Callable[[Any], Any] = lambda value: value
    ) -> list[tuple[str, str | None]]:
        """Per rule tried, in order: (name, the first condition that failed or None for the match).

        ``show`` formats field values for the message (the debugger passes redaction through it).
        """
        trail: list[tuple[str, str | None]] = []
        for rule in self.rules:
            failure = self._first_failure(rule, fields, show)
            trail.append((rule.name, failure))
            if failure is None:
                break
        return trail

    def _matches(
        self, rule: CompiledRule, fields: dict[str, Any], bare: str | None
    ) -> tuple[dict[str, str], Route | None] | None:
        """``(captures, the route that matched)`` when ``rule`` matches the line (``({}, None)`` for a rule
        without routes), else ``None``. ``bare`` is the line's path through :func:`bare_path`."""
        for condition in rule.conditions:
            key = condition.key
            if not condition.test(lookup_path(fields, key) if condition.dotted else fields.get(key)):
                return None
        if not rule.routes:
            return {}, None
        if bare is None:
            return None
        for route in rule.routes:
            captures = route.match_bare(bare)
            if captures is not None:
                return captures, route
        return None

    @staticmethod
    def _conditions_hold(rule: CompiledRule, fields: dict[str, Any]) -> bool:
        for condition in rule.conditions:
            key = condition.key
            if not condition.test(lookup_path(fields, key) if condition.dotted else fields.get(key)):
                return False
        return True

    def _first_failure(self, rule: CompiledRule, fields: dict[str, Any], show: Callable[[Any], Any]) -> str | None:
        for condition in rule.conditions:
            value = lookup_path(fields, condition.key)
            if not condition.test(value):
                return f"{condition.key}: {show(value)!r} is not {condition.description}"
        path = fields.get("path")
        if rule.routes and self._matches(rule, fields, bare_path(path) if isinstance(path, str) else None) is None:
            templates = " or ".join(repr(r.template) for r in rule.routes)
            return f"path: {show(fields.get('path'))!r} does not fit {templates}"
        return None

    def _render(
        self,
        setters: list[tuple[str, SetTemplate]],
        fields: dict[str, Any],
        captures: dict[str, str],
        rule: CompiledRule | None,
        route: Route | None,
    ) -> dict[str, Any]:
        method = fields.get("method")
        verb = None
        if isinstance(method, str):
            verb = self.verbs.get(method)  # as written: the usual upper-case methods need no .upper()
            if verb is None:
                verb = self.verbs.get(method.upper(), method.lower())
        values: dict[str, Any] = {}
        for name, template in setters:
            rendered = template.literal  # most set values are plain text: no call for them
            if rendered is None:
                rendered = template.render(captures, verb, fields)
            if rendered is not None:
                values[name] = rendered
        if rule is not None:
            values["metadata.rule"] = rule.name
            if route is not None:
                values["metadata.route"] = route.template
        return values
