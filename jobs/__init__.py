"""Container jobs: one folder each; a job reads inputs, calls ``shared`` and writes outputs."""
