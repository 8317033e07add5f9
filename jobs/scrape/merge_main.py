"""Entrypoint of ``headstart scrape-merge``."""
from headstart.jobs.scrape.spec import MergeSpec

SPEC = MergeSpec
HELP = "merge the shards of a sharded scrape into the split dataset and its manifest"


def run(spec: MergeSpec) -> None:
    from headstart.jobs.scrape.merge import merge_command

    merge_command(spec)
