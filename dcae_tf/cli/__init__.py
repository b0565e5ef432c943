"""`dcae-tf`, the command line (usage: `dcae_tf.cli.args`).

`run_main` is the console script; `main(parse_args(argv))` runs a command
in-process and returns its exit code.
"""
import sys

from absl import app

from dcae_tf.cli.args import parse_args
from dcae_tf.cli.output import (
    EXIT_FAILURE, EXIT_INTERRUPTED, CliError, debug, one_line, show_error)

__all__ = ["CliError", "main", "parse_args", "run_main"]


def main(args):
  try:
    return args.run(args)
  except KeyboardInterrupt:
    show_error("interrupted")
    return EXIT_INTERRUPTED
  except (CliError, ValueError, OSError) as e:
    if debug():
      raise
    show_error(f"error: {one_line(e)}")
    return EXIT_FAILURE
  except Exception as e:  # pylint: disable=broad-except
    if debug():
      raise
    show_error(f"error: {type(e).__name__}: {one_line(e)}")
    return EXIT_FAILURE


def run_main(argv=None):
  """Console-script entry point (`dcae-tf`)."""
  try:
    app.run(main, argv=argv, flags_parser=parse_args)
  except KeyboardInterrupt:
    show_error("interrupted")
    sys.exit(EXIT_INTERRUPTED)
