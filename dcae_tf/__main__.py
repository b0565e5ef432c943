"""`python -m dcae_tf`: the `dcae-tf` command line (see dcae_tf/cli/)."""
from dcae_tf.cli import run_main

if __name__ == "__main__":
  run_main()
