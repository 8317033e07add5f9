"""run_job: the one place mapping outcomes to exit codes and ``_FAILURE.json``."""
from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from headstart.shared.runtime.errors import (EXIT_CRASH, EXIT_INTERRUPTED, EXIT_OK, EXIT_USER_ERROR, Interrupted,
                                             UserError)
from headstart.shared.storage.manifest import FAILURE, MANIFEST, RunOutput, is_published, read_manifest
from headstart.shared.runtime.runner import run_job, write_failure
from headstart.shared.runtime.stop import STOP
from headstart.shared.runtime.specs import JobSpec
from headstart.shared.storage.store import open_store


class OutSpec(JobSpec):
    out: str | None = None
    epochs: int = 1


@pytest.fixture(autouse=True)
def _restore_signal_handlers():
    """Whatever run_job does, leave the test process's handlers as they were."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)
    STOP.reset()


def failure(uri):
    return json.loads(open_store(uri).read_text(FAILURE))


def test_success_exits_0_without_failure_record(store_uri):
    calls = []
    code = run_job("toy", OutSpec(out=store_uri), lambda spec: calls.append(spec.epochs))
    assert code == EXIT_OK
    assert calls == [1]
    assert not open_store(store_uri).exists(FAILURE)


@pytest.mark.parametrize("exc, code, kind", [
    (UserError("bad dataset path: 'x'"), EXIT_USER_ERROR, "user_error"),
    (Interrupted("received SIGTERM"), EXIT_INTERRUPTED, "interrupted"),
    (RuntimeError("boom"), EXIT_CRASH, "crash"),
    (KeyError("k"), EXIT_CRASH, "crash"),
])
def test_exceptions_map_to_exit_codes_and_failure_record(store_uri, exc, code, kind):
    def fn(spec):
        out = RunOutput(open_store(spec.out), "toy")
        out.write_text("partial.txt", "half")
        raise exc

    spec = OutSpec(out=store_uri, epochs=3)
    assert run_job("toy", spec, fn) == code
    record = failure(store_uri)
    assert record["kind"] == kind
    assert record["exit_code"] == code
    assert record["job"] == "toy"
    assert record["spec"] == {"out": store_uri, "epochs": 3}
    if kind == "crash":
        assert record["message"].startswith(type(exc).__name__ + ":")
        assert "Traceback" in record["traceback"]
    else:
        assert record["message"] == str(exc)
        assert record["traceback"] is None
    store = open_store(store_uri)
    assert not store.exists(MANIFEST)
    assert not is_published(store)
    with pytest.raises(UserError, match=FAILURE):
        read_manifest(store)


def test_user_error_is_logged_as_one_line(tmp_path, caplog):
    def fn(spec):
        raise UserError("`epochs` must be >= 1. Received: epochs=0")

    assert run_job("toy", OutSpec(out=str(tmp_path)), fn) == EXIT_USER_ERROR
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == ["error: `epochs` must be >= 1. Received: epochs=0"]


def test_no_out_means_no_failure_record(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def fn(spec):
        raise UserError("nope")

    assert run_job("toy", OutSpec(), fn) == EXIT_USER_ERROR
    assert list(tmp_path.iterdir()) == []


def test_failure_record_problems_do_not_mask_the_failure(caplog):
    def fn(spec):
        raise UserError("the real problem")

    assert run_job("toy", OutSpec(out="gs://nowhere/x"), fn) == EXIT_USER_ERROR
    assert any("could not write _FAILURE.json" in r.getMessage() for r in caplog.records)


def test_write_failure_never_raises(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    write_failure(str(blocker / "out"), "toy", "crash", "m", 1)  # cannot mkdir below a file
    write_failure(None, "toy", "crash", "m", 1)


def test_sigterm_interrupts_non_cooperative_job_at_once(tmp_path):
    reached = []

    def fn(spec):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # interrupted by the handler's exception, not waited out
        reached.append("after sleep")

    start = time.monotonic()
    assert run_job("toy", OutSpec(out=str(tmp_path)), fn) == EXIT_INTERRUPTED
    assert time.monotonic() - start < 5
    assert reached == []
    record = failure(str(tmp_path))
    assert record["kind"] == "interrupted"
    assert "SIGTERM" in record["message"]


def test_sigint_is_handled_like_sigterm(tmp_path):
    def fn(spec):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(10)

    assert run_job("toy", OutSpec(out=str(tmp_path)), fn) == EXIT_INTERRUPTED
    assert "SIGINT" in failure(str(tmp_path))["message"]


def test_cooperative_job_finishes_its_step_then_stops(tmp_path):
    steps = []

    def fn(spec):
        STOP.cooperative = True
        for epoch in range(5):
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)  # the handler runs; the step continues
                assert STOP.requested
            steps.append(epoch)
            open_store(spec.out).write_text("checkpoint.txt", str(epoch))
            STOP.check()

    assert run_job("toy", OutSpec(out=str(tmp_path)), fn) == EXIT_INTERRUPTED
    assert steps == [0, 1]
    assert open_store(str(tmp_path)).read_text("checkpoint.txt") == "1"
    assert failure(str(tmp_path))["kind"] == "interrupted"


def test_second_signal_interrupts_cooperative_job_at_once(tmp_path):
    def fn(spec):
        STOP.cooperative = True
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert STOP.requested
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)

    start = time.monotonic()
    assert run_job("toy", OutSpec(out=str(tmp_path)), fn) == EXIT_INTERRUPTED
    assert time.monotonic() - start < 5


def test_stop_flag_is_reset_between_runs(tmp_path):
    def interrupted(spec):
        STOP.cooperative = True
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        STOP.check()

    assert run_job("toy", OutSpec(out=str(tmp_path)), interrupted) == EXIT_INTERRUPTED

    def ok(spec):
        assert not STOP.requested
        assert not STOP.cooperative
        STOP.check()

    assert run_job("toy", OutSpec(out=str(tmp_path)), ok) == EXIT_OK


def test_stop_flag_request_check_reset():
    STOP.reset()
    STOP.check()  # not requested: no-op
    STOP.cooperative = True
    STOP.request(signal.SIGTERM)  # cooperative: only sets the flag
    assert STOP.requested and STOP.signal_name == "SIGTERM"
    with pytest.raises(Interrupted, match="SIGTERM"):
        STOP.check()
    with pytest.raises(Interrupted):
        STOP.request(signal.SIGTERM)  # a second request interrupts at once
    STOP.reset()
    assert (STOP.requested, STOP.cooperative, STOP.signal_name) == (False, False, "")
    STOP.check()
    with pytest.raises(Interrupted, match="SIGINT"):
        STOP.request(signal.SIGINT)  # non-cooperative: at once


def test_signal_handlers_restored_after_run(tmp_path):
    def sentinel(signum, frame):  # pragma: no cover - never called
        pass

    signal.signal(signal.SIGTERM, sentinel)
    seen = []
    assert run_job("toy", OutSpec(out=str(tmp_path)),
                   lambda spec: seen.append(signal.getsignal(signal.SIGTERM))) == EXIT_OK
    assert seen and seen[0] is not sentinel  # run_job's handler while the job runs
    assert signal.getsignal(signal.SIGTERM) is sentinel
    assert signal.getsignal(signal.SIGINT) is not STOP.request


def test_run_job_from_a_worker_thread(tmp_path):
    """No signal handlers can be installed off the main thread; exit codes still work."""
    codes = []

    def fn(spec):
        raise UserError("bad")

    t = threading.Thread(target=lambda: codes.append(run_job("toy", OutSpec(out=str(tmp_path)), fn)))
    t.start()
    t.join(10)
    assert codes == [EXIT_USER_ERROR]
