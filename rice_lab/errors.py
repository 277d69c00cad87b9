"""Errors raised for users: each message names the file or value and what to do."""


class RiceLabError(Exception):
    """Base class for every error rice-lab reports to a user in one line."""


class DataError(RiceLabError):
    """A data folder, csv file or image is missing, malformed or inconsistent."""


class ConfigError(RiceLabError):
    """A configuration value, preset name or command-line flag is not valid."""


class TrainingError(RiceLabError):
    """Training cannot go on (for example a NaN loss); the last good checkpoint is kept."""


class CheckpointError(RiceLabError):
    """A run directory or checkpoint is missing, incomplete or does not match the config."""


class OfflineError(RiceLabError):
    """Something had to be downloaded but this machine is offline."""
