"""The package's imports go one way: down the layers of docs/architecture.md.

Every module of dcae_tf is parsed (ast, so imports inside functions count
too) and each `dcae_tf` import it makes is checked against `LAYERS`: a
module may import its own layer and the layers below, never one above; the
applications may not import one another (only the command line, above
them, may). A module no layer claims fails too, so a new module must be
placed. Then the modules declared free of TensorFlow are imported in a fresh
interpreter in which `import tensorflow` fails.
"""
import ast
import fnmatch
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "dcae_tf"

# (layer, module patterns), bottom first. A module belongs to the first
# layer with a matching pattern.
LAYERS = (
    ("network core", ("dcae_tf", "dcae_tf.config", "dcae_tf.layers",
                      "dcae_tf.layers.*", "dcae_tf.transforms",
                      "dcae_tf.entropy", "dcae_tf.model", "dcae_tf.losses")),
    ("codec", ("dcae_tf.codec", "dcae_tf.codec.*", "dcae_tf.io",
               "dcae_tf.rans", "dcae_tf.rans.*")),
    ("export runtime", ("dcae_tf.runtime", "dcae_tf.runtime.*",
                        "dcae_tf.export")),
    ("model store", ("dcae_tf.zoo", "dcae_tf.zoo.*")),
    ("applications", ("dcae_tf.evaluation", "dcae_tf.evaluation.*",
                      "dcae_tf.serving", "dcae_tf.serving.*",
                      "dcae_tf.training", "dcae_tf.training.*",
                      "dcae_tf.data", "dcae_tf.corpus", "dcae_tf.corpus.*",
                      "dcae_tf.convert")),
    ("command line", ("dcae_tf.cli", "dcae_tf.cli.*", "dcae_tf.__main__")),
)
# Layers whose packages are independent of each other: module -> its app.
INDEPENDENT = {"applications": {
    "dcae_tf.evaluation": "evaluation", "dcae_tf.serving": "serving",
    "dcae_tf.training": "training", "dcae_tf.data": "training",
    "dcae_tf.corpus": "corpus", "dcae_tf.convert": "convert"}}
# Importable without TensorFlow: `dcae-tf models`, header checks and the
# model store start at once.
TF_FREE = ("dcae_tf", "dcae_tf.config", "dcae_tf.io",
           "dcae_tf.codec", "dcae_tf.codec.container", "dcae_tf.codec.errors",
           "dcae_tf.codec.metadata", "dcae_tf.codec.warmup",
           "dcae_tf.codec.heap", "dcae_tf.runtime", "dcae_tf.runtime.layout",
           "dcae_tf.runtime.contract", "dcae_tf.runtime.graph_cache",
           "dcae_tf.zoo", "dcae_tf.cli",
           "dcae_tf.corpus.prepare")


def module_files(root, package):
  """{module name: file path} of every .py file of `package` under root."""
  out = {}
  for directory, dirs, files in os.walk(os.path.join(root, package)):
    dirs[:] = sorted(d for d in dirs if d != "__pycache__")
    for name in files:
      if not name.endswith(".py"):
        continue
      path = os.path.join(directory, name)
      parts = os.path.relpath(path, root)[:-len(".py")].split(os.sep)
      if parts[-1] == "__init__":
        parts = parts[:-1]
      out[".".join(parts)] = path
  return out


def imported_modules(path, module, modules, package):
  """(line, module) of every `package` module that `path` imports, at any
  depth of its code; `from a import b` counts as a.b when that is a module."""
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  is_package = os.path.basename(path) == "__init__.py"
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parent = module.split(".")
        parent = parent[:len(parent) - node.level + (1 if is_package else 0)]
        base = ".".join(parent + ([base] if base else []))
      names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
               for a in node.names]
    else:
      continue
    found += [(node.lineno, n) for n in names
              if n == package or n.startswith(package + ".")]
  return found


def layer_of(module):
  for rank, (name, patterns) in enumerate(LAYERS):
    if any(fnmatch.fnmatchcase(module, p) for p in patterns):
      return rank, name
  return None, None


def app_of(module, layer):
  groups = INDEPENDENT.get(layer, {})
  for prefix, app in groups.items():
    if module == prefix or module.startswith(prefix + "."):
      return app
  return None


def _known(name, modules):
  """The module `name` denotes: itself, or the package it is a name of."""
  while name not in modules and "." in name:
    name = name.rsplit(".", 1)[0]
  return name


def violations(root, package=PACKAGE):
  """Lines 'module:line: ...' for every import against the layer rule."""
  modules = module_files(root, package)
  out = []
  for module, path in sorted(modules.items()):
    rank, layer = layer_of(module)
    if layer is None:
      out.append(f"{module}: in no layer (add it to LAYERS)")
      continue
    for line, target in imported_modules(path, module, modules, package):
      target = _known(target, modules)
      target_rank, target_layer = layer_of(target)
      where = f"{module}:{line}: {module} ({layer}) imports {target}"
      if target_layer is None:
        out.append(f"{where}, which is in no layer")
      elif target_rank > rank:
        out.append(f"{where} ({target_layer}), a higher layer")
      elif (target_rank == rank and app_of(module, layer)
            != app_of(target, layer)):
        out.append(f"{where}, another application")
  return out


def test_imports_only_go_down_the_layers():
  assert violations(ROOT) == []


def _write(root, files):
  for name, text in files.items():
    path = os.path.join(root, *name.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      f.write(textwrap.dedent(text))


def test_a_lower_layer_importing_a_higher_one_is_reported(tmp_path):
  _write(str(tmp_path), {
      "dcae_tf/__init__.py": "",
      "dcae_tf/config.py": "import math\n",
      # The core reaching up into the model store, inside a function.
      "dcae_tf/model.py": """
          from dcae_tf import config

          def build():
            from dcae_tf.zoo import load
            return load
          """,
      "dcae_tf/zoo/__init__.py": "from dcae_tf import model\n",
      "dcae_tf/serving/server.py": "from dcae_tf.evaluation import runner\n",
      "dcae_tf/evaluation/runner.py": "from . import metrics\n",
      "dcae_tf/evaluation/metrics.py": "from dcae_tf import config\n",
      "dcae_tf/stray.py": "",
  })
  found = violations(str(tmp_path))
  assert found == [
      "dcae_tf.model:5: dcae_tf.model (network core) imports dcae_tf.zoo "
      "(model store), a higher layer",
      "dcae_tf.serving.server:1: dcae_tf.serving.server (applications) "
      "imports dcae_tf.evaluation.runner, another application",
      "dcae_tf.stray: in no layer (add it to LAYERS)",
  ], found


@pytest.mark.parametrize("module", TF_FREE)
def test_module_imports_without_tensorflow(module):
  script = ("import sys\n"
            "sys.modules['tensorflow'] = None  # import tensorflow fails\n"
            f"import {module}\n")
  proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
