"""Which devices and workers a run trains on (tf.distribute)."""
import os

from absl import logging
import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")


def check_strategy(name):
  if name not in STRATEGIES:
    raise ValueError(f"strategy must be one of {STRATEGIES}, not {name!r}")


def split_cpu(num_devices):
  """Makes the CPU appear as `num_devices` logical devices.

  Lets MirroredStrategy run (and be tested) with several replicas on a
  machine without GPUs. Must happen before TensorFlow initialises its
  devices, i.e. before the first op runs.
  """
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)


def make_strategy(name, logical_cpus=0):
  """default | mirrored (all local GPUs, else all CPUs) | multi_worker."""
  check_strategy(name)
  if logical_cpus > 1:
    split_cpu(logical_cpus)
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    devices = (tf.config.list_logical_devices("GPU") or
               tf.config.list_logical_devices("CPU"))
    return tf.distribute.MirroredStrategy([d.name for d in devices])
  if "TF_CONFIG" not in os.environ:
    logging.warning("strategy multi_worker without TF_CONFIG: one worker")
  return tf.distribute.MultiWorkerMirroredStrategy()


def worker_role(strategy):
  """(is_chief, task_type, task_id) of this process."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True, None, None
  task_type, task_id = resolver.task_type, resolver.task_id
  cluster = resolver.cluster_spec().as_dict()
  chief = (task_type == "chief" or
           (task_type == "worker" and task_id == 0 and "chief" not in cluster))
  return chief, task_type, task_id
