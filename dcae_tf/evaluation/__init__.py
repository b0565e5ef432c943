"""Rate-distortion evaluation of learned codecs against classical anchors.

    from dcae_tf import evaluation
    results = evaluation.run_evaluation("kodak/", "results/",
                                        models=["saved_models/dcae_q3"],
                                        anchors=["jpeg", "webp", "avif", "jxl"])

See runner.run_evaluation for the options and report for the files written.
"""
from dcae_tf.evaluation.anchors import ANCHOR_NAMES, DEFAULT_QUALITIES
from dcae_tf.evaluation.anchors import AnchorUnavailableWarning, ImageCodec
from dcae_tf.evaluation.anchors import anchor_codecs
from dcae_tf.evaluation.bd import BDResult
from dcae_tf.evaluation.images import list_images, read_image
from dcae_tf.evaluation.metrics import SmallImageWarning, msssim, msssim_db
from dcae_tf.evaluation.metrics import psnr
from dcae_tf.evaluation.models import load_model_codec, model_codec
from dcae_tf.evaluation.runner import PAPER_DATASETS, main, run_evaluation
