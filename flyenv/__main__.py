"""`python -m flyenv ...` (and `torchrun ... -m flyenv train ...`): the `flyenv` command line."""

from flyenv.cli import main

raise SystemExit(main())
