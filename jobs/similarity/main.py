"""Entrypoint of ``headstart similarity``."""
from headstart.jobs.similarity.spec import SimilaritySpec

SPEC = SimilaritySpec
HELP = ("which images the model finds alike: embedding similarity matrix, nearest neighbours, "
        "near-duplicates, train/test leakage")


def run(spec: SimilaritySpec):
    from headstart.jobs.similarity.workflow import similarity

    return similarity(spec)
