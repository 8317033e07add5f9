"""Building, training and using classifiers: backbones, head, feature cache, recipe, checkpoints."""
