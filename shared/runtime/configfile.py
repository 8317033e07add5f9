"""The one Headstart config file, for storage and cloud settings alike.

Each setting resolves, highest first: an environment variable (``HEADSTART_<NAME>``, plus any
alias such as ``AWS_ENDPOINT_URL_S3``) > the config file (``$HEADSTART_CONFIG``, else
``~/.config/headstart/cloud.yaml``) > the caller's default. The file is a YAML mapping of the
keys in :data:`KEYS`; any other key is refused, naming the file and the key, so a typo does
not silently fall back to a default.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from headstart.shared.runtime.errors import UserError

CONFIG_ENV = "HEADSTART_CONFIG"
DEFAULT_CONFIG = Path("~/.config/headstart/cloud.yaml")
# Every key the file may hold, with what it sets (README: "Configuration").
KEYS = {
    "s3_endpoint": "S3-compatible endpoint URL for s3:// paths (MinIO, a moto server)",
    "stack": "CloudFormation stack deployed from template.yaml",
    "region": "AWS region of submit/status/results",
    "bucket": "data bucket (default: the stack's output)",
    "state_machine": "pipeline state machine ARN (default: the stack's output)",
    "gpu_queue": "GPU Batch job queue (default: the stack's output)",
    "cpu_queue": "CPU Batch job queue (default: the stack's output)",
    "read_buckets": "comma-separated buckets cloud jobs may read (default: the stack's ReadBuckets output)",
}


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the config file is (it may not exist)."""
    env = os.environ if env is None else env
    return Path(env.get(CONFIG_ENV) or DEFAULT_CONFIG).expanduser()


def read_config(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The config file's settings; {} when there is none. ``UserError`` for a named file
    that is missing, unreadable, not YAML, not a mapping, or holding unknown keys."""
    env = os.environ if env is None else env
    path = config_path(env)
    if not path.is_file():
        if env.get(CONFIG_ENV):
            raise UserError(f"{CONFIG_ENV} points to a missing file: {str(path)!r}")
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"config file {str(path)!r} is not readable YAML: {reason}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {str(path)!r} must be a mapping of settings {sorted(KEYS)}. "
                        f"Received: {type(data).__name__}")
    unknown = sorted(str(k) for k in set(data) - set(KEYS))
    if unknown:
        raise UserError(f"config file {str(path)!r} has unknown setting(s) {unknown}; expected "
                        f"any of {sorted(KEYS)}")
    return data


def setting(name: str, default: Any = None, *, aliases: tuple[str, ...] = (),
            env: Mapping[str, str] | None = None) -> Any:
    """One setting: ``HEADSTART_<NAME>`` or an alias env var > the config file > ``default``."""
    if name not in KEYS:
        raise KeyError(f"unknown setting {name!r}")
    env = os.environ if env is None else env
    for var in (f"HEADSTART_{name.upper()}", *aliases):
        if env.get(var):
            return env[var]
    value = read_config(env).get(name)
    return default if value is None else value
