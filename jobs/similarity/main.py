"""Entrypoint of ``headstart similarity``."""
from jobs.similarity.spec import SimilaritySpec

SPEC = SimilaritySpec
HELP = ("which images the model finds alike: embedding similarity matrix, nearest neighbours, "
        "near-duplicates, train/test leakage")


def run(spec: SimilaritySpec) -> None:
    from jobs.similarity.workflow import similarity

    similarity(spec)
