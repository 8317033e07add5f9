"""Dataset audit: label errors, outliers, duplicates, image health, keep-lists."""
