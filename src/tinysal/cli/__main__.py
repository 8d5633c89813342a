import sys

from tinysal.cli.main import main

sys.exit(main())
