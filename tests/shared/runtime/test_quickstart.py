"""The command's Keras import skips scikit-learn, pandas and matplotlib, which still import normally afterwards."""
from __future__ import annotations

import subprocess
import sys
import textwrap

from headstart.shared.runtime import quickstart


def test_keras_loads_without_sklearn_pandas_or_matplotlib_and_they_still_import_after():
    script = textwrap.dedent("""
        import sys
        from headstart.shared.runtime import quickstart
        quickstart.install()
        import keras
        assert "sklearn" not in sys.modules, "keras loaded scikit-learn"
        assert "pandas" not in sys.modules, "keras loaded pandas"
        assert "matplotlib" not in sys.modules, "keras loaded matplotlib"
        assert not any(type(f).__name__ == "_KerasWithoutSklearn" for f in sys.meta_path), "hook left in place"
        layer = keras.layers.Dense(3)
        assert tuple(layer(keras.ops.ones((2, 4))).shape) == (2, 3)  # keras works
        import sklearn.linear_model  # the audit's cleanlab needs it: a normal import
        assert sys.modules["sklearn"] is not None
        import pandas
        assert len(pandas.DataFrame({"a": [1, 2]})) == 2
        import cleanlab.filter  # the audit's imports, after the hook
        from headstart.shared.report.plots import training_curves  # the reports' matplotlib
        assert training_curves({"loss": [1.0, 0.5]}, {"head": 0}, {"head": 1})[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_install_is_a_no_op_once_keras_is_loaded(monkeypatch):
    import keras  # noqa: F401 - loaded in this process (as in most of the suite)

    before = list(sys.meta_path)
    quickstart.install()
    assert sys.meta_path == before
    monkeypatch.delitem(sys.modules, "keras")  # as if not yet imported: installs once, removes
    quickstart.install()
    quickstart.install()
    assert sum(isinstance(f, quickstart._KerasWithoutSklearn) for f in sys.meta_path) == 1
    quickstart.remove()
    assert sys.meta_path == before


def test_the_console_script_installs_the_hook_before_the_command_runs():
    # The hook is only worth its keep where the command uses it: console() must install it
    # before main() imports Keras (it once sat unused while the README counted its savings).
    script = textwrap.dedent("""
        import sys
        from headstart.shared.runtime import cli

        def fake_main():
            import keras  # noqa: F401 - as a job's run() does
            print(sorted(m for m in ("sklearn", "pandas", "matplotlib") if m in sys.modules))
            return 0

        cli.main = fake_main
        cli.console()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "[]", (done.stdout, done.stderr[-2000:])
