"""The S3 upload trigger (deployed as a Lambda function from this folder)."""
