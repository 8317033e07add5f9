"""From stored files to checked pixel arrays: decoding, datasets, splits, image sets, sharding."""
