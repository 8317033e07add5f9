"""Entrypoint of ``headstart audit``."""
from headstart.jobs.audit.spec import AuditSpec

SPEC = AuditSpec
HELP = ("check a dataset before training: likely label errors, off-topic images, near-duplicates, "
        "train/test leakage, image health, class balance; writes a keep-list for train --exclude")


def run(spec: AuditSpec) -> None:
    from headstart.jobs.audit.workflow import audit

    audit(spec)
