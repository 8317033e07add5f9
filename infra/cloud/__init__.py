"""Cloud-side library of the ``submit``, ``status`` and ``results`` commands (all boto3 use)."""
