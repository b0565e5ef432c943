"""The flags of bin/train.py, derived from TrainConfig's fields.

A flag per field with flag metadata (`config.flag`): same name, the field's
default, its help, an enum flag for a field with choices and otherwise the
flag kind of the field's type. Fields without a default are required flags.
"""
import dataclasses

from absl import flags

from dcae_tf.training import config as config_lib

# absl flag definers per field type.
DEFINERS = {str: flags.DEFINE_string, int: flags.DEFINE_integer,
            float: flags.DEFINE_float}


def define_flags(flag_values=flags.FLAGS):
  """Defines one flag per TrainConfig flag field in `flag_values`."""
  required = []
  for field in config_lib.flag_fields():
    default = (None if field.default is dataclasses.MISSING
               else field.default)
    help_text = field.metadata[config_lib.FLAG_HELP]
    choices = field.metadata.get(config_lib.FLAG_CHOICES)
    if choices is not None:
      flags.DEFINE_enum(field.name, default, list(choices()), help_text,
                        flag_values=flag_values)
    else:
      DEFINERS[field.type](field.name, default, help_text,
                           flag_values=flag_values)
    if field.default is dataclasses.MISSING:
      required.append(field.name)
  flags.mark_flags_as_required(required, flag_values)


def config_from_flags(flag_values=flags.FLAGS):
  """TrainConfig from the flags defined by define_flags."""
  return config_lib.TrainConfig(**{
      field.name: flag_values[field.name].value
      for field in config_lib.flag_fields()})
