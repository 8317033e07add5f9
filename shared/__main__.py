"""``python -m headstart``: the console script."""
from headstart.shared.runtime.cli import console

console()
