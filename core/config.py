"""YAML configuration: environment substitution, typed loading and errors with key paths.

A config file becomes a tree of frozen dataclasses. The loader walks the dataclass field types and the
YAML document side by side and collects *every* problem before it gives up, each one prefixed with the
key path where it was found::

    exporter.batch.max_wait: must be a duration like 200ms or 5s, got 'soon'
    sources.nginx.fromat: unknown key (did you mean 'format'?)

Supported field types: ``str``, ``int``, ``float``, ``bool``, :data:`Duration` (seconds as ``float``,
written ``200ms``, ``5s``, ``1m``, ``400d``), :data:`Size` (bytes as ``int``, written ``1MiB``, ``512KB``),
``Literal[...]``, ``list[T]``, ``dict[str, T]``, ``T | None``, nested dataclasses, and unions of
dataclasses told apart by their ``type: Literal[...]`` field.

A dataclass may define ``validate(self) -> list[tuple[str, str]]`` returning ``(sub_path, message)`` pairs
for checks that span several fields; they are reported like any other error.

String values may contain ``${VAR}`` or ``${VAR:-default}``; ``$$`` stands for a literal ``$``.
Substitution happens after YAML parsing, on string scalars only, so a variable's value can never change
the document's structure.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

__all__ = ["ConfigError", "Duration", "Size", "load_file", "load_mapping", "parse_duration", "parse_size"]


# Exit status of both programs when the config is invalid or cannot be loaded (sysexits.h EX_CONFIG).
CONFIG_ERROR_EXIT = 78


class ConfigError(Exception):
    """Raised with every problem found in a config, one ``path: message`` line each."""

    def __init__(self, errors: list[str], source: str | None = None) -> None:
        self.errors = errors
        self.source = source
        super().__init__(self.__str__())

    def __str__(self) -> str:
        head = f"{self.source}: " if self.source else ""
        count = len(self.errors)
        noun = "error" if count == 1 else "errors"
        return f"{head}{count} config {noun}:\n" + "\n".join(f"  {e}" for e in self.errors)


class _DurationMarker:
    pass


class _SizeMarker:
    pass


Duration = Annotated[float, _DurationMarker]
"""Seconds, written in YAML as ``250ms``, ``5s``, ``10m``, ``2h``, ``400d`` (a bare number is seconds)."""

Size = Annotated[int, _SizeMarker]
"""Bytes, written in YAML as ``512``, ``64KiB``, ``1MiB``, ``2GB``."""

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_ENV_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def parse_duration(value: object) -> float:
    """Return seconds for ``200ms``/``5s``/``3`` style values; raise ``ValueError`` otherwise."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(value)
        return float(value)
    match = _DURATION_RE.match(str(value))
    if not match:
        raise ValueError(value)
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_size(value: object) -> int:
    """Return bytes for ``1MiB``/``512KB``/``4096`` style values; raise ``ValueError`` otherwise."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(value)
        return value
    match = _SIZE_RE.match(str(value))
    if not match:
        raise ValueError(value)
    unit = (match.group(2) or "b").lower()
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


T = TypeVar("T")


def load_file(
    cls: type[T], path: str | os.PathLike[str], environ: Mapping[str, str] | None = None, *, unset_ok: bool = False
) -> T:
    """Read a YAML file into ``cls``; raise :class:`ConfigError` listing every problem (see :func:`load_mapping`)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read file: {exc.strerror or exc}"], source) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}invalid YAML: {problem}"], source) from None
    return load_mapping(cls, document if document is not None else {}, environ, source, unset_ok=unset_ok)


def load_mapping(
    cls: type[T],
    document: object,
    environ: Mapping[str, str] | None = None,
    source: str | None = None,
    *,
    unset_ok: bool = False,
) -> T:
    """Build ``cls`` from an already parsed YAML document (a mapping).

    An unset ``${VAR}`` (without a default) is an error at its key path, and the only one reported there:
    the empty value it leaves is not also reported as empty. With ``unset_ok`` (checking a config without
    its secrets) the reference is kept as written instead, ``${VAR}`` literally, and is no error.
    """
    errors: list[str] = []
    unset_paths: set[str] = set()
    substituted = _substitute(document, "", os.environ if environ is None else environ, errors, unset_paths, unset_ok)
    substitution_errors = len(errors)
    result = _convert(cls, substituted, "", errors)
    errors[substitution_errors:] = [e for e in errors[substitution_errors:] if e.split(": ", 1)[0] not in unset_paths]
    if errors:
        raise ConfigError(errors, source)
    return typing.cast(T, result)


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _where(path: str) -> str:
    return path or "(top level)"


def _substitute(
    node: object, path: str, environ: Mapping[str, str], errors: list[str], unset_paths: set[str], unset_ok: bool
) -> object:
    if isinstance(node, str):

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            value = environ.get(name)
            if value in (None, "") and default is not None:
                return default
            if value is None:
                if unset_ok:
                    return match.group(0)
                errors.append(f"{_where(path)}: environment variable {name} is not set")
                unset_paths.add(_where(path))
                return ""
            return value

        return _ENV_RE.sub(replace, node)
    if isinstance(node, dict):
        return {k: _substitute(v, _join(path, k), environ, errors, unset_paths, unset_ok) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, f"{path}[{i}]", environ, errors, unset_paths, unset_ok) for i, v in enumerate(node)]
    return node


_MISSING = object()
_DISCRIMINATORS = ("type", "backend")


def _convert(tp: Any, value: object, path: str, errors: list[str]) -> object:
    """Convert ``value`` to type ``tp``; on failure append an error and return ``_MISSING``."""
    origin = get_origin(tp)
    if origin is Annotated:
        base, *extras = get_args(tp)
        parser = {_DurationMarker: parse_duration, _SizeMarker: parse_size}.get(extras[0])
        if parser is None:
            return _convert(base, value, path, errors)
        try:
            return parser(value)
        except ValueError:
            kind = "a duration like 200ms or 5s" if parser is parse_duration else "a size like 64KiB or 1MiB"
            errors.append(f"{_where(path)}: must be {kind}, got {value!r}")
            return _MISSING
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _convert_dataclass(tp, value, path, errors)
    if origin in (Union, types.UnionType):
        return _convert_union(tp, value, path, errors)
    if origin is Literal:
        allowed = get_args(tp)
        if value in allowed:
            return value
        errors.append(f"{_where(path)}: must be one of {', '.join(map(str, allowed))}; got {value!r}")
        return _MISSING
    if origin is list:
        if not isinstance(value, list):
            errors.append(f"{_where(path)}: must be a list, got {_describe(value)}")
            return _MISSING
        (item_tp,) = get_args(tp)
        items = [_convert(item_tp, v, f"{path}[{i}]", errors) for i, v in enumerate(value)]
        return _MISSING if _MISSING in items else items
    if origin is dict:
        if not isinstance(value, dict):
            errors.append(f"{_where(path)}: must be a mapping, got {_describe(value)}")
            return _MISSING
        _key_tp, value_tp = get_args(tp)
        entries = {str(k): _convert(value_tp, v, _join(path, k), errors) for k, v in value.items()}
        return _MISSING if _MISSING in entries.values() else entries
    return _convert_scalar(tp, value, path, errors)


def _convert_scalar(tp: Any, value: object, path: str, errors: list[str]) -> object:
    if tp is Any or tp is object:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
            return value.lower() in ("true", "yes", "on")
        errors.append(f"{_where(path)}: must be true or false, got {value!r}")
        return _MISSING
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            return int(value)
        errors.append(f"{_where(path)}: must be an integer, got {value!r}")
        return _MISSING
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        try:
            return float(str(value))
        except ValueError:
            errors.append(f"{_where(path)}: must be a number, got {value!r}")
            return _MISSING
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        errors.append(f"{_where(path)}: must be a string, got {_describe(value)}")
        return _MISSING
    raise TypeError(f"unsupported config type {tp!r} at {path}")


def _convert_union(tp: Any, value: object, path: str, errors: list[str]) -> object:
    options = [a for a in get_args(tp) if a is not type(None)]
    if value is None and len(options) < len(get_args(tp)):
        return None
    if len(options) == 1:
        return _convert(options[0], value, path, errors)
    # A union of dataclasses is told apart by a Literal field named ``type`` (or ``backend``).
    by_type: dict[str, type] = {}
    field_name = ""
    for option in options:
        hints = get_type_hints(option, include_extras=True)
        field_name = next((n for n in _DISCRIMINATORS if n in hints), "")
        for name in get_args(hints.get(field_name, Literal[()])):
            by_type[name] = option
    if not by_type:
        raise TypeError(f"unsupported union {tp!r} at {path}")
    if not isinstance(value, dict):
        errors.append(f"{_where(path)}: must be a mapping, got {_describe(value)}")
        return _MISSING
    kind = value.get(field_name)
    if kind is None:  # an option whose discriminator has a default is the default option
        defaults = [
            f.default
            for option in options
            for f in dataclasses.fields(option)
            if f.name == field_name and f.default is not dataclasses.MISSING
        ]
        kind = defaults[0] if defaults else None
    if kind not in by_type:
        errors.append(f"{_join(path, field_name)}: must be one of {', '.join(by_type)}; got {kind!r}")
        return _MISSING
    return _convert_dataclass(by_type[kind], value, path, errors)


def _convert_dataclass(cls: type, value: object, path: str, errors: list[str]) -> object:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        errors.append(f"{_where(path)}: must be a mapping, got {_describe(value)}")
        return _MISSING
    hints = get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in value:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            known = "" if close else f"; known keys: {', '.join(fields)}"
            errors.append(f"{_join(path, key)}: unknown key{hint}{known}")
    kwargs: dict[str, object] = {}
    failed: set[str] = set()
    for name, field in fields.items():
        field_path = _join(path, name)
        if name in value:
            converted = _convert(hints[name], value[name], field_path, errors)
            if converted is _MISSING:
                failed.add(name)
            else:
                kwargs[name] = converted
        elif not _has_default(field):
            errors.append(f"{field_path}: required key is missing")
            failed.add(name)
    # Cross-field checks still run when some field failed (defaults stand in for it), so one bad key
    # never hides another; errors about the stand-ins themselves are left out.
    stand_ins_ok = all(name not in failed or _has_default(fields[name]) for name in fields)
    if stand_ins_ok:
        instance = cls(**kwargs)
        validate = getattr(instance, "validate", None)
        if callable(validate):
            for sub_path, message in validate():
                if sub_path.split(".", 1)[0] not in failed:
                    errors.append(f"{_where(_join(path, sub_path) if sub_path else path)}: {message}")
        if not failed:
            return instance
    return _MISSING


def _has_default(field: dataclasses.Field[Any]) -> bool:
    return field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING


def _describe(value: object) -> str:
    if value is None:
        return "nothing (null)"
    return {dict: "a mapping", list: "a list", str: f"the string {value!r}"}.get(type(value), repr(value))
