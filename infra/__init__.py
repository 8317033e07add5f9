"""Orchestration: the Step Functions pipeline, the S3 upload trigger and cloud CLI commands."""
