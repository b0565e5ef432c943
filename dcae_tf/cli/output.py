"""What the command line prints, and how its errors look.

Errors are one line on stderr ("dcae-tf: error: ..."); while a progress bar
is shown, lines go through it so they do not tear it.
"""
import os
import sys

import tqdm

PROG = "dcae-tf"
DEBUG_ENV = "DCAE_TF_DEBUG"
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130
# TF's C++ logging level that hides everything but fatal errors.
_TF_QUIET_LOG_LEVEL = "3"


class CliError(Exception):
  """A user-facing error: printed as one line, exit code 1; in a folder or
  glob it stops the whole run (a ValueError or OSError stops one file)."""


def debug():
  """Whether DCAE_TF_DEBUG asks for TensorFlow's logs and tracebacks."""
  return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def import_tf():
  """Imports TensorFlow quietly (its C++ logs would break one-line errors).

  Deliberately lazy: `dcae-tf models` and header checks never need it.
  """
  if not debug():
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = _TF_QUIET_LOG_LEVEL
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if not debug():
    tf.get_logger().setLevel("ERROR")
  return tf


class _Writer:
  """print, or a progress bar's write while one is shown."""

  def __init__(self):
    self.write = None

  def __call__(self, text, file):
    if self.write:
      self.write(text, file=file)
    else:
      print(text, file=file, flush=True)


_WRITER = _Writer()


def show(text):
  """A line of results on stdout."""
  _WRITER(text, sys.stdout)


def show_error(text):
  """A line on stderr, prefixed with the program's name."""
  _WRITER(f"{PROG}: {text}", sys.stderr)


def one_line(error):
  text = str(error) or type(error).__name__
  return " ".join(text.split())


class progress:  # pylint: disable=invalid-name
  """A progress bar over `items` on stderr; lines printed meanwhile go
  through it. A context manager yielding the bar (iterate it)."""

  def __init__(self, items, unit):
    self._items = items
    self._unit = unit
    self._bar = None

  def __enter__(self):
    self._bar = tqdm.tqdm(self._items, unit=self._unit, disable=None,
                          file=sys.stderr, dynamic_ncols=True)
    _WRITER.write = self._bar.write
    return self._bar

  def __exit__(self, *exc):
    _WRITER.write = None
    self._bar.close()
    return False
