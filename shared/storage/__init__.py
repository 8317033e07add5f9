"""Where bytes live: one Store over local paths and s3://, atomic writes, run manifests."""
