"""Keep the ``headstart`` command's Keras import from loading scikit-learn, pandas and matplotlib.

Keras 3 imports scikit-learn at start-up when it is installed, for its ``keras.wrappers``
estimators (``SKLearnClassifier``), pandas, to accept DataFrames in ``fit``, and
``matplotlib.pyplot``, for ``keras.visualization``'s galleries; no Headstart job uses any of
them through Keras: 0.5-1.9 s, 0.37 s and 0.32 s of a 2.2-10 s import on these 2 cores
(``python -X importtime -c "import keras"``), paid by every job that loads a model. The
console script (:func:`headstart.shared.runtime.cli.console`) installs a one-shot import hook:
while ``keras`` itself is being executed, they read as not installed, so Keras takes its own
fallbacks (its wrappers and galleries say what is not installed if called; a DataFrame is not
an array to it); right after, they import normally (the audit's cleanlab needs the first two,
the reports matplotlib; the train job imports its plots on a thread during the backbone pass).
Only the command does this: code importing :mod:`headstart` as a library keeps Keras whole.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any, Sequence

BLOCKED = ("sklearn", "pandas", "matplotlib")


class _KerasWithoutSklearn(importlib.abc.MetaPathFinder):
    """Finds nothing itself: on the first ``import keras`` it wraps Keras' own loader."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "keras":
            return None
        remove()  # one shot, and find_spec below must not come back here
        if all(name in sys.modules for name in BLOCKED):  # already imported: nothing to save
            return None
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _Blocking(spec.loader)
        return spec


class _Blocking(importlib.abc.Loader):
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        blocked = [name for name in BLOCKED if name not in sys.modules]
        for name in blocked:
            sys.modules[name] = None  # type: ignore[assignment]  # None in sys.modules: ImportError
        try:
            self.inner.exec_module(module)
        finally:
            for name in blocked:
                if name in sys.modules and sys.modules[name] is None:
                    del sys.modules[name]

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self.inner, name)


def install() -> None:
    """Install the hook (no-op when Keras is already imported or the hook is in place)."""
    if "keras" not in sys.modules and not any(isinstance(f, _KerasWithoutSklearn) for f in sys.meta_path):
        sys.meta_path.insert(0, _KerasWithoutSklearn())


def remove() -> None:
    """Remove the hook if it is still in place."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _KerasWithoutSklearn)]
