"""Keyword-only config objects built from a job spec by field name.

A job's spec (pydantic, :mod:`headstart.shared.runtime.specs`) is the one place parameters and
their defaults are declared. The library's config dataclasses take the same names; they are
built with :meth:`FromSpec.from_spec`, so a config never carries a second, drifting default
for a value the spec owns.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

C = TypeVar("C", bound="FromSpec")


class FromSpec:
    """Mixin for keyword-only dataclasses whose fields are named like spec fields."""

    @classmethod
    def from_spec(cls: type[C], spec: Any, **given: Any) -> C:
        """Build the config: each field from ``given`` if there, else the spec's attribute
        (or key, for a mapping such as a stored ``spec.yaml``) of the same name, else the
        dataclass default. A required field found nowhere raises ``TypeError`` naming it."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if not f.init:
                continue
            if f.name in given:
                values[f.name] = given.pop(f.name)
            elif isinstance(spec, Mapping) and f.name in spec:
                values[f.name] = spec[f.name]
            elif not isinstance(spec, Mapping) and hasattr(spec, f.name):
                values[f.name] = getattr(spec, f.name)
        if given:
            raise TypeError(f"{cls.__name__} has no field(s) {sorted(given)}")
        return cls(**values)

