"""Builders run in threads while another thread samples process-wide state:
how the tests show that building models and views changes nothing global,
not even for a moment."""
import threading
import time

# How often the watching thread samples (building takes seconds).
SAMPLE_INTERVAL_S = 1e-4


def run_watched(builds, sample):
  """Runs each callable of `builds` in its own thread while a watching
  thread calls `sample()` until they are done (at least once).

  Returns (the builds' results in order, the set of values sampled); the
  first exception a build raised is raised here.
  """
  seen, results, errors = set(), [None] * len(builds), []
  done = threading.Event()

  def watch():
    while True:
      seen.add(sample())
      if done.is_set():
        return
      time.sleep(SAMPLE_INTERVAL_S)

  def run(i):
    try:
      results[i] = builds[i]()
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)

  watcher = threading.Thread(target=watch)
  threads = [threading.Thread(target=run, args=(i,))
             for i in range(len(builds))]
  watcher.start()
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  done.set()
  watcher.join()
  if errors:
    raise errors[0]
  return results, seen
