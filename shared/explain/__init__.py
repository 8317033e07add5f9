"""Why the model decides: class-activation maps, overlays, faithfulness, embedding similarity."""
