"""The typed errors of the project. Library code raises them; only entry points turn them into
a one-line message and an exit code (pretrain.common.cli.run_entry_point).

Each is also a ValueError or RuntimeError, so callers that caught those before still do."""

from __future__ import annotations

import yaml


class UserError(Exception):
    """A problem the user can fix (bad config, data, path, checkpoint): its message is one line
    that names the file or key and says what is wrong, and no traceback is shown."""


class ConfigError(UserError, ValueError):
    """A config key or command-line setting that is missing, unknown or out of range."""


class DatasetError(UserError, ValueError):
    """Images or annotations that are missing, unreadable or malformed."""


class CheckpointError(UserError, ValueError):
    """A checkpoint or weights file that is missing, unreadable or does not fit the model."""


class OutputDirError(UserError, RuntimeError):
    """An output folder that cannot be used as asked (e.g. a finished run's folder)."""


class TrainingDivergedError(UserError, RuntimeError):
    """The loss (or the weights) became NaN or infinite: the run stops and names the last
    checkpoint written before it (e.g. a learning rate too high for the batch)."""


class LaunchError(UserError, RuntimeError):
    """The processes, devices or scheduler cannot be set up as asked."""


# What reading a config file can raise: yacs's unknown or mistyped keys (KeyError,
# AssertionError, ValueError), YAML syntax (yaml.YAMLError), a _BASE_ that is missing (OSError),
# a file whose YAML is not a mapping of keys (AttributeError, TypeError in yacs's merge).
FILE_ERRORS = (
    KeyError,
    AssertionError,
    ValueError,
    yaml.YAMLError,
    OSError,
    AttributeError,
    TypeError,
)


def file_error_text(err: Exception) -> str:
    """One line for an error of FILE_ERRORS."""
    if isinstance(err, OSError):
        return f"{err.filename or ''}: {err.strerror or err} (a _BASE_ it names?)"
    if isinstance(err, yaml.YAMLError):
        return "not valid YAML: " + " ".join(str(err).split())
    if isinstance(err, (AttributeError, TypeError)):
        return "not a config file (a YAML mapping of KEY: value)"
    return " ".join(str(err.args[0]).split()) if err.args else type(err).__name__
