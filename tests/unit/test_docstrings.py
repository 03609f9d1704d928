"""Every public name has a docstring: what the API reference is built from."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing
from typing import Any

import wecom_async

OPTIONAL = {"redis", "otel"}  # importable where their extra is installed (the test extra)


def public_modules() -> list[str]:
    names = ["wecom_async"]
    for info in pkgutil.walk_packages(wecom_async.__path__, "wecom_async."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def undocumented(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    missing = [] if inspect.getdoc(module) else [module_name]
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name)
        where = f"{module_name}.{name}"
        if inspect.isclass(obj):
            if not obj.__doc__:
                missing.append(where)
            missing += [f"{where}.{m}" for m in undocumented_members(obj)]
        elif inspect.isfunction(obj) and not obj.__doc__:
            missing.append(where)
    return missing


def undocumented_members(cls: type) -> list[str]:
    """Public methods and properties defined on ``cls`` itself (protocols included)."""
    missing = []
    if issubclass(cls, BaseException) or _is_enum(cls):
        return missing
    for name, member in vars(cls).items():
        if name.startswith("_") and name != "__call__":
            continue
        target: Any = member.fget if isinstance(member, property) else member
        if isinstance(target, (staticmethod, classmethod)):
            target = target.__func__
        # getdoc: a method that overrides a documented one inherits its docstring.
        documented = (
            inspect.getdoc(getattr(cls, name)) if not isinstance(member, property) else None
        )
        if inspect.isfunction(target) and not (target.__doc__ or documented):
            missing.append(name)
    return missing


def _is_enum(cls: type) -> bool:
    import enum

    return issubclass(cls, enum.Enum)


def test_every_public_module_is_walked() -> None:
    modules = public_modules()
    assert {"wecom_async.models", "wecom_async.testing", "wecom_async.callback"} <= set(modules)
    assert {"wecom_async.sync", "wecom_async.hooks", "wecom_async.pump"} <= set(modules)


def test_every_public_name_has_a_docstring() -> None:
    missing = [name for module in public_modules() for name in undocumented(module)]
    assert not missing, f"{len(missing)} public names without a docstring:\n" + "\n".join(missing)


def test_protocol_methods_a_user_implements_are_documented() -> None:
    from wecom_async import RateLimiter, TokenStore
    from wecom_async.callback import CallbackQueue
    from wecom_async.cursors import CursorStore

    for protocol in (TokenStore, RateLimiter, CallbackQueue, CursorStore):
        assert typing.cast(Any, protocol)._is_protocol
        assert undocumented_members(protocol) == [], protocol
