"""Auto mode: choose backbone, input size and recipe within a time budget."""
