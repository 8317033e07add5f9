"""Entrypoint of ``headstart scrape``."""
from headstart.jobs.scrape.spec import ScrapeSpec
from headstart.shared.runtime.summary import Summary

SPEC = ScrapeSpec
HELP = "download image URL lists into a clean, deduplicated train/valid/test dataset (SSRF-safe)"


def run(spec: ScrapeSpec) -> Summary | None:
    from headstart.jobs.scrape.merge import summary_of
    from headstart.jobs.scrape.workflow import scrape

    return summary_of("scrape", spec.out, scrape(spec))
