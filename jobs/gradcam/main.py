"""Entrypoint of ``headstart gradcam``."""
from headstart.jobs.gradcam.spec import GradcamSpec

SPEC = GradcamSpec
HELP = "explain a trained model's predictions: batched Grad-CAM overlays, heatmaps, faithfulness"


def run(spec: GradcamSpec):
    from headstart.jobs.gradcam.workflow import gradcam

    return gradcam(spec)
