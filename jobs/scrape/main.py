"""Entrypoint of ``headstart scrape``."""
from headstart.jobs.scrape.spec import ScrapeSpec

SPEC = ScrapeSpec
HELP = "download image URL lists into a clean, deduplicated train/valid/test dataset (SSRF-safe)"


def run(spec: ScrapeSpec) -> None:
    from headstart.jobs.scrape.workflow import scrape

    scrape(spec)
