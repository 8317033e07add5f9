"""Entrypoint of ``headstart scrape-merge``."""
from headstart.jobs.scrape.spec import MergeSpec
from headstart.shared.runtime.summary import Summary

SPEC = MergeSpec
HELP = "merge the shards of a sharded scrape into the split dataset and its manifest"


def run(spec: MergeSpec) -> Summary | None:
    from headstart.jobs.scrape.merge import merge_command, summary_of

    return summary_of("scrape-merge", spec.out, merge_command(spec))
