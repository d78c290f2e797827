import sys

from kamstrup382.cli import main

sys.exit(main())
