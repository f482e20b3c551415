"""Route and set templates live in :mod:`core.routes`, beside the shared rule language (:mod:`core.rules`);
this name stays for the agent's own imports."""

from core.routes import (
    Route,
    SetTemplate,
    TemplateError,
    bare_path,
    compile_route,
    compile_set_template,
    is_route_template,
    lookup_path,
)

__all__ = [
    "Route",
    "SetTemplate",
    "TemplateError",
    "bare_path",
    "compile_route",
    "compile_set_template",
    "is_route_template",
    "lookup_path",
]
