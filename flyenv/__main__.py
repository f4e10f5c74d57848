"""`python -m flyenv`: the `flyenv` command line, as `torchrun -m flyenv` and schedulers call it."""

from flyenv.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
