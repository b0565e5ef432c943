"""The Python model server as a child process (for tests and benchmarks).

`ServerProcess` starts `python -m dcae_tf.serving.server FLAGS`, collects
its stdout lines (the server prints "serving NAME version V on HOST:PORT"
whenever it starts serving a version and "stopped serving NAME" when it
exits cleanly) and stops it with SIGTERM, killing it only if it does not
exit in time. A server that fails to start is stopped before the error is
raised, so none is ever left behind.
"""
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

READY_RE = re.compile(r"serving (\S+) version (\d+) on (\S+):(\d+)")
STOPPED_RE = re.compile(r"stopped serving ")
# Loading a real model on 2 busy cores can take minutes.
START_TIMEOUT_SECONDS = 300
STOP_TIMEOUT_SECONDS = 30
LOG_TAIL_CHARS = 3000


class ServerError(RuntimeError):
  """The server did not print what was waited for (or exited first)."""


class ServerProcess:
  """`python -m dcae_tf.serving.server` as a context manager.

  Attributes (after `start`):
    proc: the subprocess.Popen.
    lines: every stdout line read so far.
    ready: the match of the first "serving ..." line; `port` its port.
    exit_code, stopped_cleanly: set by `stop` (clean: exit code 0 after a
      "stopped serving" line).
  """

  def __init__(self, flags, log_path, env=None,
               start_timeout=START_TIMEOUT_SECONDS,
               stop_timeout=STOP_TIMEOUT_SECONDS):
    self.command = [sys.executable, "-m", "dcae_tf.serving.server", *flags]
    self.log_path = log_path
    self.env = env
    self.start_timeout = start_timeout
    self.stop_timeout = stop_timeout
    self.proc = None
    self.lines = []
    self.ready = None
    self.port = None
    self.exit_code = None
    self.stopped_cleanly = None
    self._queue = queue.Queue()
    self._log = None

  def start(self):
    """Starts the server and waits until it serves a version."""
    self._log = open(self.log_path, "w", encoding="utf-8")  # pylint: disable=consider-using-with
    # Own session: a terminal's Ctrl-C reaches the parent only, which then
    # stops the server.
    self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
        self.command, stdout=subprocess.PIPE, stderr=self._log, text=True,
        env=self.env, start_new_session=True)
    threading.Thread(target=self._read, daemon=True).start()
    try:
      self.ready = self.wait_for(READY_RE, self.start_timeout)
    except BaseException:
      self.stop()
      raise
    self.port = int(self.ready.group(4))
    return self

  def __enter__(self):
    return self.start()

  def __exit__(self, *exc_info):
    self.stop()

  def _read(self):
    for line in self.proc.stdout:
      self._queue.put(line.rstrip("\n"))
    self._queue.put(None)

  def wait_for(self, pattern, timeout):
    """The next stdout line matching `pattern` (a regex or its text)."""
    pattern = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
      try:
        line = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
      except queue.Empty:
        raise ServerError(f"server printed no line matching "
                          f"{pattern.pattern!r} in {timeout} s; stdout: "
                          f"{self.lines}; log tail:\n{self.log_tail()}"
                          ) from None
      if line is None:
        self._queue.put(None)  # Later waits see the end too.
        raise ServerError(f"server exited ({self.proc.wait()}) before "
                          f"{pattern.pattern!r}; log tail:\n"
                          f"{self.log_tail()}")
      self.lines.append(line)
      match = pattern.search(line)
      if match:
        return match

  def log(self):
    """The server's stderr (its log) so far."""
    if self._log is not None and not self._log.closed:
      self._log.flush()
    with open(self.log_path, encoding="utf-8", errors="replace") as f:
      return f.read()

  def log_tail(self, chars=LOG_TAIL_CHARS):
    return self.log()[-chars:]

  def stop(self):
    """SIGTERM, wait for a clean exit, kill otherwise. Idempotent."""
    if self.proc is None or self.exit_code is not None:
      return
    if self.proc.poll() is None:
      self.proc.send_signal(signal.SIGTERM)
      try:
        self.proc.wait(timeout=self.stop_timeout)
      except subprocess.TimeoutExpired:
        print(f"warning: server did not stop {self.stop_timeout} s after "
              f"SIGTERM; killing it", file=sys.stderr)
        self.proc.kill()
        self.proc.wait()
    self.exit_code = self.proc.returncode
    if any(STOPPED_RE.search(line) for line in self.lines):
      self.stopped_cleanly = self.exit_code == 0
    else:
      try:
        self.wait_for(STOPPED_RE, self.stop_timeout)
        self.stopped_cleanly = self.exit_code == 0
      except ServerError:
        self.stopped_cleanly = False
    self._log.close()


def repo_env(repo_root, **extra):
  """os.environ with `repo_root` first on PYTHONPATH, plus `extra`."""
  path = os.pathsep.join(filter(None, [repo_root,
                                       os.environ.get("PYTHONPATH")]))
  return dict(os.environ, PYTHONPATH=path, **extra)
