"""The docs say what the code does.

docs/architecture.md says what tests/test_layers.py enforces: its table
names, per layer, the modules of that layer; every module of dcae_tf must
be named in the row of the layer `LAYERS` gives it, no row may name a
module that does not exist, the rows must be `LAYERS`' layers in order, and
"The package is N layers." must count them. `dcae_tf.export`, the export
runtime's public entry point, must list in `__all__` exactly the names it
imports. A path `saved_models/<model>/<version>` in the README or docs/
must name a version a shipped model has (re-exports replace them).
"""
import ast
import os
import re
import textwrap

from tests import test_layers

ROOT = test_layers.ROOT
PACKAGE = test_layers.PACKAGE
ARCHITECTURE = os.path.join(ROOT, "docs", "architecture.md")
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven",
           "eight", "nine", "ten", "eleven", "twelve")
# "`pkg/` (`a`, `b`)" or "`pkg/`": a package and the modules in it.
PACKAGE_ENTRY = re.compile(r"`(\w+)/`(?:\s*\(([^()]*)\))?")


def _read(path):
  with open(path, encoding="utf-8") as f:
    return f.read()


def _cells(line):
  return [c.strip() for c in line.strip().strip("|").split("|")]


def table_rows(text):
  """(layer, modules cell) of each row of the table headed `| layer |`."""
  lines = text.splitlines()
  start = next(i for i, line in enumerate(lines)
               if _cells(line)[0] == "layer")
  rows = []
  for line in lines[start + 2:]:  # After the header and its |---| line.
    if not line.startswith("|"):
      break
    cells = _cells(line)
    rows.append((cells[0], cells[1]))
  return rows


def modules_named(cell, package=PACKAGE):
  """The module names a table cell lists: `pkg/` (`a`, `b`) gives pkg,
  pkg.a and pkg.b; any other `name` outside parentheses is a module of the
  package (`dcae_tf`: the package itself); text in other parentheses is
  description."""
  names = []
  for sub, inner in PACKAGE_ENTRY.findall(cell):
    names.append(f"{package}.{sub}")
    names += [f"{package}.{sub}.{m}" for m in re.findall(r"`(\w+)`", inner)]
  rest = re.sub(r"\([^()]*\)", "", PACKAGE_ENTRY.sub("", cell))
  for name in re.findall(r"`(\w+)`", rest):
    names.append(package if name == package else f"{package}.{name}")
  return names


def documented_layers(text, package=PACKAGE):
  """{module: layer} of the table; a module named twice is an error."""
  out = {}
  for layer, cell in table_rows(text):
    for module in modules_named(cell, package):
      assert module not in out, f"{module} is named twice in the table"
      out[module] = layer
  return out


def stated_layer_count(text):
  match = re.search(r"The package is (\w+) layers\.", text)
  assert match, "docs/architecture.md no longer says how many layers"
  word = match.group(1).lower()
  return NUMBERS.index(word) if word in NUMBERS else int(word)


def mismatches(text, modules):
  """What the architecture text says that `LAYERS` and `modules` do not."""
  out = []
  layers = [name for name, _ in test_layers.LAYERS]
  count = stated_layer_count(text)
  if count != len(layers):
    out.append(f"the text says {count} layers, LAYERS has {len(layers)}")
  rows = [layer for layer, _ in table_rows(text)]
  if rows != layers:
    out.append(f"the table's layers are {rows}, LAYERS' are {layers}")
  documented = documented_layers(text)
  for module in sorted(modules):
    layer = test_layers.layer_of(module)[1]
    if module not in documented:
      out.append(f"{module} ({layer}) is in no row of the table")
    elif documented[module] != layer:
      out.append(f"{module} is in the row of {documented[module]}, "
                 f"LAYERS puts it in {layer}")
  out += [f"{module} is in the table but not in {PACKAGE}/"
          for module in sorted(set(documented) - set(modules))]
  return out


def test_architecture_doc_places_every_module_in_its_layer():
  modules = test_layers.module_files(ROOT, PACKAGE)
  assert mismatches(_read(ARCHITECTURE), modules) == []


def test_a_stale_architecture_doc_is_reported():
  text = textwrap.dedent("""\
      The package is five layers.

      | layer | package / modules | holds |
      |---|---|---|
      | network core | `dcae_tf` (the package), `layers/` (`base`) | x (`y`) |
      | codec | `codec/` (`core`, `gone`), `io` | x |
      | export runtime | `export` (the public names, `__all__`) | x |
      | model store | `zoo/` | x |
      | applications | `data` | x |
      | command line | `cli/` | x |
      """)
  modules = {"dcae_tf", "dcae_tf.layers", "dcae_tf.layers.base",
             "dcae_tf.layers.new", "dcae_tf.codec", "dcae_tf.codec.core",
             "dcae_tf.io", "dcae_tf.export", "dcae_tf.zoo", "dcae_tf.data",
             "dcae_tf.cli", "dcae_tf.model"}
  assert mismatches(text, modules) == [
      "the text says 5 layers, LAYERS has 6",
      "dcae_tf.layers.new (network core) is in no row of the table",
      "dcae_tf.model (network core) is in no row of the table",
      "dcae_tf.codec.gone is in the table but not in dcae_tf/",
  ]
  # Counted right, the modules all named, but `io` in the wrong row.
  moved = (text.replace("five", "six").replace(", `gone`", "")
           .replace(", `io` |", " |").replace("`data` |", "`data`, `io` |"))
  assert mismatches(moved, modules - {"dcae_tf.layers.new",
                                      "dcae_tf.model"}) == [
      "dcae_tf.io is in the row of applications, LAYERS puts it in codec"]


def test_export_facade_lists_every_name_it_imports():
  path = os.path.join(ROOT, PACKAGE, "export.py")
  tree = ast.parse(_read(path), path)
  imported = [alias.asname or alias.name for node in tree.body
              if isinstance(node, ast.ImportFrom) for alias in node.names]
  listed = next(ast.literal_eval(node.value) for node in tree.body
                if isinstance(node, ast.Assign)
                and [t.id for t in node.targets] == ["__all__"])
  assert len(listed) == len(set(listed)), "a name is listed twice"
  assert sorted(listed) == sorted(imported)


# "saved_models/<model>/<version>" in a document: a version directory.
VERSION_PATH = re.compile(r"saved_models/([\w.-]+)/(\d+)\b")


def stale_version_paths(texts, models_dir):
  """Paths of `texts` ({document: text}) naming a version of a shipped
  model (a directory of `models_dir`) that is not there: re-exports replace
  versions, and a command copied from the docs must find its export."""
  out = []
  for document, text in sorted(texts.items()):
    for model, version in VERSION_PATH.findall(text):
      if (os.path.isdir(os.path.join(models_dir, model)) and
          not os.path.isdir(os.path.join(models_dir, model, version))):
        out.append(f"{document}: saved_models/{model}/{version}")
  return out


def test_docs_name_versions_the_shipped_models_have():
  documents = ["README.md"] + [
      os.path.join("docs", name)
      for name in sorted(os.listdir(os.path.join(ROOT, "docs")))
      if name.endswith(".md")]
  texts = {d: _read(os.path.join(ROOT, d)) for d in documents}
  models_dir = os.path.join(ROOT, "saved_models")
  assert stale_version_paths(texts, models_dir) == []
  # The check itself: a removed version of a shipped model is reported, a
  # new export's example path (no such model directory) is not.
  shipped = sorted(n for n in os.listdir(models_dir)
                   if os.path.isdir(os.path.join(models_dir, n)))[0]
  assert stale_version_paths(
      {"x.md": f"saved_models/{shipped}/999 saved_models/dcae-new/1"},
      models_dir) == [f"x.md: saved_models/{shipped}/999"]
