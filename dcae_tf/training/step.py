"""One optimisation step, one evaluation step, and the learning rate.

The step is a custom one (strategy.run over a distributed dataset) rather
than `Model.fit`, because the clipping has to see the *aggregated*
gradient: every replica computes its part of the global-batch mean loss
(`tf.nn.compute_average_loss`), the gradients are summed across replicas
(`ReplicaContext.all_reduce`), then clipped, then applied without further
aggregation. One device and N devices therefore take the same step for the
same global batch, as the official DDP code does (DDP averages gradients in
backward, clipping comes after).
"""
import tensorflow as tf

from dcae_tf.training.config import LR_DECAY_FACTOR

# Reconstructions shown in TensorBoard at every validation.
NUM_SUMMARY_IMAGES = 3


class StepDecay(tf.keras.optimizers.schedules.LearningRateSchedule):
  """Constant learning rate, times `factor` from `decay_step` on."""

  def __init__(self, learning_rate, decay_step,
               factor=LR_DECAY_FACTOR):
    super().__init__()
    self.learning_rate = float(learning_rate)
    self.decay_step = decay_step
    self.factor = float(factor)

  def __call__(self, step):
    lr = tf.constant(self.learning_rate, tf.float32)
    if self.decay_step is None:
      return lr
    return tf.where(tf.cast(step, tf.int64) >= self.decay_step,
                    lr * self.factor, lr)

  def value(self, step):
    """Python float, for logging."""
    if self.decay_step is not None and step >= self.decay_step:
      return self.learning_rate * self.factor
    return self.learning_rate

  def get_config(self):
    return dict(learning_rate=self.learning_rate, decay_step=self.decay_step,
                factor=self.factor)


def make_train_step(state, strategy, loss_fn, cfg):
  """A tf.function(iterator) -> metrics summed over replicas; one step.

  The metrics are global-batch means (each replica returns its share),
  plus `grad_norm`, the aggregated gradient's norm before clipping.
  """
  global_batch = cfg.batch_size
  model, optimizer = state.model, state.optimizer
  variables = model.trainable_variables
  num_replicas = strategy.num_replicas_in_sync
  scaled = isinstance(optimizer, tf.keras.mixed_precision.LossScaleOptimizer)

  def replica_step(x):
    with tf.GradientTape() as tape:
      metrics = loss_fn(x, model(x, training=True))
      loss = tf.nn.compute_average_loss(metrics["loss"],
                                        global_batch_size=global_batch)
      if model.losses:
        loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
      if scaled:
        loss = optimizer.get_scaled_loss(loss)
    grads = tape.gradient(loss, variables)
    if scaled:
      # Non-finite gradients stay non-finite: the optimizer then skips
      # the step and lowers the scale.
      grads = optimizer.get_unscaled_gradients(grads)
    pairs = [(tf.convert_to_tensor(g), v)
             for g, v in zip(grads, variables) if g is not None]
    grads = [g for g, _ in pairs]
    # Sum of the replicas' parts = gradient of the global-batch mean.
    grads = tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, grads)
    if cfg.clip_norm > 0:
      grads, norm = tf.clip_by_global_norm(grads, cfg.clip_norm)
    else:
      norm = tf.linalg.global_norm(grads)
    optimizer.apply_gradients(
        zip(grads, [v for _, v in pairs]), skip_gradients_aggregation=True)
    out = {k: tf.nn.compute_average_loss(v, global_batch_size=global_batch)
           for k, v in metrics.items()}
    out["grad_norm"] = norm / num_replicas
    return out

  @tf.function
  def train_step(iterator):
    per_replica = strategy.run(replica_step, args=(next(iterator),))
    state.step.assign_add(1)
    return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            for k, v in per_replica.items()}
  return train_step


def make_eval_step(model, loss_fn, crop_size):
  """A tf.function(x) -> (per-image metrics, reconstruction in [0, 1])."""

  @tf.function(input_signature=[
      tf.TensorSpec([None, crop_size, crop_size, 3], tf.float32)])
  def eval_step(x):
    out = model(x, training=False)
    metrics = loss_fn(x, out)
    return metrics, tf.clip_by_value(out["x_hat"], 0.0, 1.0)
  return eval_step


def evaluate(eval_step, dataset):
  """Mean metrics over `dataset` and a few reconstructions beside their
  originals."""
  sums, count, images = {}, 0, None
  for x in dataset:
    metrics, x_hat = eval_step(x)
    for k, v in metrics.items():
      sums[k] = sums.get(k, 0.0) + float(tf.reduce_sum(v))
    count += int(x.shape[0])
    if images is None:
      n = NUM_SUMMARY_IMAGES
      images = tf.concat([x[:n], x_hat[:n]], axis=2)  # side by side
  if not count:
    raise ValueError("the validation set yielded no image (see warnings "
                     "about unreadable / too small files)")
  return {k: v / count for k, v in sums.items()}, images
