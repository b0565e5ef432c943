"""Model cards: what a shipped model is and how well it does, measured.

A card is written next to the versions of an export, as
`saved_models/NAME/model_card.json` (read by `dcae-tf models` for the bpp
range and by `--target_bpp` for the order of models) and `MODEL_CARD.md`
(for people). Every number in it comes from one evaluation run
(`run_evaluation`) on held-out images, and the card records the command that
reproduces it, so nothing in a card is typed by hand.
"""
import datetime
import os

from dcae_tf import zoo
from dcae_tf.codec import metadata as metadata_lib
from dcae_tf.evaluation import models as models_lib
from dcae_tf.evaluation import report


def _model_rows(results, setting):
  return [m for m in results["per_image"] if m.setting == setting]


def _mean(values):
  return sum(values) / len(values)


def card(results, setting, metadata, command):
  """The card (a dict) of the model evaluated under `setting` (its path)."""
  rows = _model_rows(results, setting)
  if not rows:
    raise ValueError(f"model {setting} is not in the evaluation results")
  curve = rows[0].curve
  bd = [dict(anchor=b.anchor, metric=b.metric, bd_rate=b.bd_rate,
             bd_metric=b.bd_metric, note=b.note, test_points=b.test_points)
        for b in results["bd"] if b.test == curve]
  bpps = [m.bpp for m in rows]
  return {
      "name": metadata.get("name"),
      "fingerprint": metadata.get("fingerprint"),
      "preset": metadata.get("preset"),
      "lmbda": metadata.get("lmbda"),
      "metric": metadata.get("metric"),
      "weight_dtype": metadata.get("weight_dtype",
                                   metadata_lib.DEFAULT_WEIGHT_DTYPE),
      "transform_dtype": metadata.get("transform_dtype",
                                      metadata_lib.DEFAULT_TRANSFORM_DTYPE),
      "training": {k: metadata[k] for k in metadata_lib.TRAINING_METADATA
                   if k in metadata},
      "evaluation": {
          "images": results["images"],
          "num_images": len(rows),
          "mean_bpp": _mean(bpps),
          "mean_psnr": _mean([m.psnr for m in rows]),
          "mean_msssim": _mean([m.msssim for m in rows]),
          "mean_msssim_db": _mean([m.msssim_db for m in rows]),
          "mean_encode_seconds": _mean([m.encode_seconds for m in rows]),
          "mean_decode_seconds": _mean([m.decode_seconds for m in rows]),
          "per_image": [dict(image=m.image, bpp=m.bpp, psnr=m.psnr,
                             msssim_db=m.msssim_db) for m in rows],
          # BD figures are of the whole curve this model is a point of.
          "curve": curve,
          "bd": bd,
          "date": datetime.date.today().isoformat(),
          "command": command,
      },
      "bpp_range": [min(bpps), max(bpps)],
  }


def _fmt(value, spec):
  return "n/a" if value is None or value != value else format(value, spec)


def markdown(c):
  """MODEL_CARD.md text of a card."""
  e = c["evaluation"]
  t = c["training"]
  lines = [
      f"# Model card: {c['name']}",
      "",
      f"DCAE (Lu et al., CVPR 2025), preset `{c['preset']}`, trained with "
      f"{c['metric']} distortion at lambda {c['lmbda']} "
      f"(weights fingerprint `{c['fingerprint']}`; weights stored as "
      f"{c['weight_dtype']}; g_a and g_s compute in "
      f"{c.get('transform_dtype', metadata_lib.DEFAULT_TRANSFORM_DTYPE)}, "
      "everything else in float32).",
      "",
      "## Training",
      "",
      f"- steps: {t.get('step', 'n/a')}, batch {t.get('batch_size', 'n/a')} "
      f"random {t.get('crop_size', 'n/a')}px crops, Adam at "
      f"{t.get('learning_rate', 'n/a')}",
      f"- started from: {t.get('init_from') or 'random weights'}",
      f"- data: {t.get('train_data', 'n/a')} (sources and licences: "
      "`data/README.md`; no evaluation image is in the training set)",
      "",
      f"## Rate-distortion on {e['num_images']} held-out images "
      f"(`{os.path.relpath(e['images'])}`, measured {e['date']})",
      "",
      "Actual bitstream sizes (header included), PSNR over RGB, MS-SSIM "
      "from `tf.image.ssim_multiscale`.",
      "",
      "| image | bpp | PSNR (dB) | MS-SSIM (dB) |",
      "|---|---|---|---|",
  ]
  for r in e["per_image"]:
    lines.append(f"| {r['image']} | {r['bpp']:.4f} | {r['psnr']:.2f} | "
                 f"{_fmt(r['msssim_db'], '.2f')} |")
  lines.append(f"| **mean** | **{e['mean_bpp']:.4f}** | "
               f"**{e['mean_psnr']:.2f}** | "
               f"**{_fmt(e['mean_msssim_db'], '.2f')}** |")
  lines += ["", f"Mean encode {e['mean_encode_seconds']:.2f} s, decode "
                f"{e['mean_decode_seconds']:.2f} s per image on the "
                "evaluation machine's CPU.", ""]
  if e["bd"]:
    lines += [f"BD figures of the curve `{e['curve']}` (all shipped models "
              "of this preset and metric) against classical codecs on the "
              "same images (negative BD-rate: fewer bits for the same "
              "quality):", "",
              "| anchor | metric | BD-rate (%) | BD (dB) | note |",
              "|---|---|---|---|---|"]
    for b in e["bd"]:
      lines.append(f"| {b['anchor']} | {b['metric']} | "
                   f"{_fmt(b['bd_rate'], '.2f')} | "
                   f"{_fmt(b['bd_metric'], '.3f')} | {b['note']} |")
    lines.append("")
  lines += ["## Reproduce", "", "```sh", e["command"], "```", ""]
  return "\n".join(lines)


def write_model_cards(results, model_specs, command):
  """Writes model_card.json and MODEL_CARD.md for every evaluated export.

  Args:
    results: what `run_evaluation` returned.
    model_specs: the model paths given to it (version dir or base path;
      'LABEL=path' allowed).
    command: the command line that reproduces the evaluation.

  Returns:
    The paths written.
  """
  written = []
  for spec in model_specs:
    _, path = models_lib.parse_model_spec(spec)
    base, metadata = zoo.export_metadata(path)
    c = card(results, path, metadata, command)
    json_path, md_path = zoo.card_paths(base)
    report.write_json(json_path, c)
    with open(md_path, "w", encoding="utf-8") as f:
      f.write(markdown(c))
    written += [json_path, md_path]
  return written

