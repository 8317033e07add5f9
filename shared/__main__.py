import sys

from headstart.shared.runtime.cli import main

sys.exit(main())
