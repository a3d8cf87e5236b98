"""pidone: a container-native init (PID 1) and process supervisor."""

__version__ = "0.1.0"
