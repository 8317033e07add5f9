"""The command line and the job boundary: CLI, specs, errors and exit codes, logging and progress."""
