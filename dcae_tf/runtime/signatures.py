"""A SavedModel's signatures, run without rebuilding its Python graphs.

`tf.saved_model.load` turns every function of a SavedModel back into a
Python `FuncGraph` (an `Operation` object per node) so that the loaded
functions can be retraced, differentiated and re-saved. A codec never does
any of that: it calls a signature. For the paper preset's export (727
functions, 78 k nodes) that reconstruction took 13 s and about 1.3 GB more
RSS than this loader needs (78 s with the pure-Python protobuf runtime).

`SavedSignatures` does what TF Serving's C++ loader does instead: it parses
`saved_model.pb`, restores the variables the signatures capture from the
checkpoint, and at a signature's first call hands the functions it needs
to the TensorFlow runtime as protos (no Python objects per node; a process
that only compresses never holds the decoder's graphs), then calls its
function by name with its inputs and those variables' handles. Same graphs,
same kernels, same Grappler optimisation at the first call, so the same
results bit for bit.

A signature's first call can take its optimised graph from a
`runtime.graph_cache.GraphCache` (the graph TensorFlow optimised for this
export on this machine before) instead of running Grappler again, when
the load is given one (`cache`; none by default).

Function names are given a suffix unique to the load (`_L<n>`): two exports
(or two versions of one model) hold different functions under the same
generated names, and the runtime's function library is per process. The
functions are removed from the runtime when the last `SignatureFunction` of
the load is garbage-collected.

Every op a SavedModel uses must be registered in this process before its
functions reach the runtime. dcae_tf's own exports use only stock
TensorFlow ops; a SavedModel that needs others (the range-coding ops of
tensorflow_compression, in exports made with its coder) gets them from
`CUSTOM_OPS_MODULE` if that is installed, imported only then, or is
refused with the names of the missing ops.
"""
import hashlib
import importlib
import itertools
import os
import threading
import weakref

import tensorflow as tf
from tensorflow.core.framework import function_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.core.protobuf import trackable_object_graph_pb2
from tensorflow.python.eager import context
from tensorflow.python.framework import op_def_registry
from tensorflow.python.saved_model import nested_structure_coder

from dcae_tf.runtime.layout import SAVED_MODEL_FILENAME, VARIABLES_PREFIX
# Where a TF2 checkpoint keeps its object graph (node ids = the SavedModel's).
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
VARIABLE_VALUE = "VARIABLE_VALUE"
SIGNATURES_CHILD = "signatures"
# Importing it registers the only custom ops a DCAE export may hold.
CUSTOM_OPS_MODULE = "tensorflow_compression"

_LOAD_IDS = itertools.count()


class SavedModelError(ValueError):
  """A SavedModel this loader cannot run (or not a SavedModel at all)."""


def _rename_attr(value, names, used):
  """Renames function references inside an AttrValue, in place; adds the
  new names to `used`."""
  if value.HasField("func"):
    _rename_name_attr_list(value.func, names, used)
  elif value.HasField("list"):
    for func in value.list.func:
      _rename_name_attr_list(func, names, used)


def _rename_name_attr_list(func, names, used):
  if func.name in names:
    func.name = names[func.name]
    used.add(func.name)
  for attr in func.attr.values():
    _rename_attr(attr, names, used)


def graph_ops(meta_graph):
  """The op types a meta graph runs: its graph's nodes and its library
  functions' nodes, less the calls of those functions."""
  graph_def = meta_graph.graph_def
  functions = {f.signature.name for f in graph_def.library.function}
  ops = {node.op for node in graph_def.node}
  for f in graph_def.library.function:
    ops.update(node.op for node in f.node_def)
  return ops - functions


def unregistered_ops(meta_graph):
  """Sorted op types of `meta_graph` that this process does not register."""
  return sorted(op for op in graph_ops(meta_graph)
                if op_def_registry.get(op) is None)


def _check_ops(meta_graph, path):
  """Registers what `meta_graph` needs beyond stock ops, or refuses it."""
  missing = unregistered_ops(meta_graph)
  if not missing:
    return
  try:
    importlib.import_module(CUSTOM_OPS_MODULE)
  except ImportError:
    pass
  missing = unregistered_ops(meta_graph)
  if missing:
    raise SavedModelError(
        f"{path} uses ops this TensorFlow does not register: "
        f"{', '.join(missing)} (custom ops: install the library that "
        f"defines them, e.g. {CUSTOM_OPS_MODULE} for its range coder, or "
        f"re-export the model with dcae_tf, whose exports need none)")


class _Library:
  """A SavedModel's functions, handed to the runtime as they are needed.

  Holds each function serialized as saved; `add(name)` renames a function
  and everything it calls with `suffix` and adds them to the runtime (once),
  so a process that only compresses never holds (nor even renames) the
  decoder's graphs. The functions added are removed from the runtime when
  the library is garbage-collected.
  """

  def __init__(self, library, suffix):
    self.names = {f.signature.name: f.signature.name + suffix
                  for f in library.function}
    # Renamed name -> the function as saved.
    self._serialized = {self.names[f.signature.name]: f.SerializeToString()
                        for f in library.function}
    self._lock = threading.Lock()
    self._added = []
    weakref.finalize(self, _remove_functions, self._added)

  def _renamed(self, name):
    """(FunctionDef renamed, with its calls renamed; the names it calls)."""
    function_def = function_pb2.FunctionDef.FromString(
        self._serialized.pop(name))
    function_def.signature.name = name
    calls = set()
    for node in function_def.node_def:
      if node.op in self.names:  # A direct call of a function.
        node.op = self.names[node.op]
        calls.add(node.op)
      for attr in node.attr.values():
        _rename_attr(attr, self.names, calls)
    return function_def, calls

  def add(self, name):
    """Adds `name` and the functions it calls, if not added yet."""
    with self._lock:
      todo = [name]
      while todo:
        name = todo.pop()
        if name not in self._serialized:
          continue
        function_def, calls = self._renamed(name)
        context.context().add_function_def(function_def)
        self._added.append(name)
        todo.extend(calls)


def _remove_functions(names):
  ctx = context.context()
  for name in names:
    if ctx.has_function(name):
      ctx.remove_function(name)


class SignatureFunction:
  """One signature: call with keyword tensors, get a dict of tensors.

  Its first call goes through `graph_cache` (when the load has one), which
  hands TensorFlow the graph it optimised for this export on this machine
  before, instead of optimising it again.
  """

  def __init__(self, key, function_name, input_specs, output_keys,
               captured, library, cache=None, export_digest=None):
    self.key = key
    self._library = library
    self._function_name = function_name
    self.input_specs = input_specs  # name -> tf.TensorSpec, in call order
    self.output_keys = output_keys  # in the function's output order
    # Variables and constants, in the function's order.
    self._captured = captured
    self._cache = cache
    self._export_digest = export_digest
    self._first_call_lock = threading.Lock()
    self._called = False
    # "hit" / "miss" / "off" of the first call, None before it or uncached.
    self.cache_state = None

  def _check_inputs(self, inputs):
    if sorted(inputs) != sorted(self.input_specs):
      raise TypeError(f"signature {self.key!r} takes inputs "
                      f"{sorted(self.input_specs)}, got {sorted(inputs)}")
    args = []
    for name, spec in self.input_specs.items():
      tensor = tf.convert_to_tensor(inputs[name])
      if (tensor.dtype != spec.dtype
          or not spec.shape.is_compatible_with(tensor.shape)):
        raise ValueError(
            f"signature {self.key!r}: input {name!r} must be {spec.dtype.name}"
            f" with shape {spec.shape}, got {tensor.dtype.name} with shape "
            f"{tensor.shape}")
      args.append(tensor)
    return args

  def _call(self, args):
    outputs = context.context().call_function(
        self._function_name.encode(), args, len(self.output_keys)) or []
    return dict(zip(self.output_keys, outputs))

  def __call__(self, **inputs):
    args = self._check_inputs(inputs)
    args.extend(c.handle if isinstance(c, tf.Variable) else c
                for c in self._captured)
    self._library.add(self._function_name)
    if self._called or self._cache is None:
      return self._call(args)
    with self._first_call_lock:
      if self._called:
        return self._call(args)
      config = context.context().function_call_options.config_proto_serialized
      with self._cache.first_call(self._export_digest, config,
                                  self.key) as state:
        out = self._call(args)
      self.cache_state, self._called = state, True
      return out


class SavedSignatures:
  """The signatures of the SavedModel in `directory` (see module doc).

  Attributes:
    signature_defs: signature key -> SignatureDef proto, as saved (what TF
      Serving reports).
    functions: signature key -> `SignatureFunction`.
  """

  def __init__(self, directory, cache=None):
    path = os.path.join(directory, SAVED_MODEL_FILENAME)
    try:
      with open(path, "rb") as f:
        data = f.read()
      # Names the export's graphs in `cache`: every function and constant.
      self.digest = hashlib.sha256(data).hexdigest()
      saved_model = saved_model_pb2.SavedModel.FromString(data)
      del data
    except OSError as e:
      raise SavedModelError(f"cannot read {path}: {e.strerror}") from None
    except Exception as e:  # pylint: disable=broad-except
      # protobuf's DecodeError differs between its runtimes.
      raise SavedModelError(f"not a SavedModel: {path} ({e})") from None
    if len(saved_model.meta_graphs) != 1:
      raise SavedModelError(f"expected one meta graph in {path}, found "
                            f"{len(saved_model.meta_graphs)}")
    meta_graph = saved_model.meta_graphs[0]
    _check_ops(meta_graph, path)
    objects = meta_graph.object_graph_def
    if not objects.nodes:
      raise SavedModelError(f"{path} is a TF1 SavedModel (no object graph)")
    # Copies: a view into the parsed proto would keep all of it in memory.
    self.signature_defs = {
        key: meta_graph_pb2.SignatureDef.FromString(sig.SerializeToString())
        for key, sig in meta_graph.signature_def.items()}
    library = _Library(meta_graph.graph_def.library,
                       suffix=f"_L{next(_LOAD_IDS)}")

    signature_nodes = _signature_nodes(objects)
    for key, function_name in signature_nodes.items():
      if (function_name not in library.names
          or function_name not in objects.concrete_functions):
        raise SavedModelError(f"signature {key!r}: its function "
                              f"{function_name!r} is not in {path}")
    needed = sorted({node_id for function_name in signature_nodes.values()
                     for node_id in
                     objects.concrete_functions[function_name].bound_inputs})
    captures = _restore_captures(
        os.path.join(directory, VARIABLES_PREFIX), objects, needed,
        meta_graph.graph_def)
    self.functions = {}
    for key, function_name in signature_nodes.items():
      saved = objects.concrete_functions[function_name]
      _, kwargs = nested_structure_coder.decode_proto(
          saved.canonicalized_input_signature)
      input_specs = {name: kwargs[name] for name in sorted(kwargs)}
      outputs = nested_structure_coder.decode_proto(saved.output_signature)
      output_keys = sorted(outputs) if isinstance(outputs, dict) else None
      if output_keys is None:
        raise SavedModelError(f"signature {key!r} does not return a dict")
      self.functions[key] = SignatureFunction(
          key, library.names[function_name], input_specs, output_keys,
          [captures[i] for i in saved.bound_inputs], library, cache=cache,
          export_digest=self.digest)


def _signature_nodes(objects):
  """Signature key -> name of its concrete function, from the object graph."""
  root = objects.nodes[0]
  ids = [c.node_id for c in root.children if c.local_name == SIGNATURES_CHILD]
  if not ids:
    return {}
  out = {}
  for child in objects.nodes[ids[0]].children:
    node = objects.nodes[child.node_id]
    if node.WhichOneof("kind") != "bare_concrete_function":
      raise SavedModelError(f"signature {child.local_name!r} is not a "
                            f"concrete function")
    out[child.local_name] = node.bare_concrete_function.concrete_function_name
  return out


def _restore_captures(prefix, objects, node_ids, graph_def):
  """Node id -> what a signature function captures: a variable (restored
  from the checkpoint) or a constant tensor.

  The variables are read in one RestoreV2 op (one op per variable costs
  seconds for the paper preset's 800 variables).
  """
  constants = {}
  out = {}
  variables = []  # (node id, checkpoint key, dtype)
  graph = None
  for node_id in node_ids:
    node = objects.nodes[node_id]
    kind = node.WhichOneof("kind")
    if kind == "constant":
      if not constants:
        constants = {n.name: n for n in graph_def.node if n.op == "Const"}
      const = constants.get(node.constant.operation)
      if const is None:
        raise SavedModelError(f"captured constant {node.constant.operation!r}"
                              f" is not in the graph")
      out[node_id] = tf.constant(tf.make_ndarray(const.attr["value"].tensor))
      continue
    if kind != "variable":
      raise SavedModelError(f"a signature captures object {node_id} "
                            f"({kind}), neither a variable nor a constant")
    if graph is None:
      graph = _checkpoint_object_graph(prefix)
    keys = [a.checkpoint_key for a in graph.nodes[node_id].attributes
            if a.name == VARIABLE_VALUE]
    if not keys:
      raise SavedModelError(f"variable {node.variable.name!r} has no value "
                            f"in the checkpoint {prefix}")
    variables.append((node_id, keys[0], node.variable.dtype))
  if variables:
    try:
      values = tf.raw_ops.RestoreV2(
          prefix=prefix, tensor_names=[k for _, k, _ in variables],
          shape_and_slices=[""] * len(variables),
          dtypes=[d for _, _, d in variables])
    except tf.errors.OpError as e:
      raise SavedModelError(f"cannot read the variables at {prefix}: "
                            f"{e.message}") from None
    for (node_id, _, _), value in zip(variables, values):
      out[node_id] = tf.Variable(value, trainable=False)
  return out


def _checkpoint_object_graph(prefix):
  """The object graph of the checkpoint at `prefix` (ids = the SavedModel's)."""
  try:
    reader = tf.train.load_checkpoint(prefix)
    return trackable_object_graph_pb2.TrackableObjectGraph.FromString(
        reader.get_tensor(OBJECT_GRAPH_KEY))
  except (tf.errors.OpError, ValueError) as e:
    raise SavedModelError(f"cannot read the variables at {prefix}: "
                          f"{getattr(e, 'message', e)}") from None
