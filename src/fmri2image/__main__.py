import sys

from fmri2image.cli.main import main

sys.exit(main())
