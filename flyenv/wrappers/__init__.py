"""Vector-env wrappers for torch-native training: statistics, normalization, numpy view.

Each works on torch tensors on the env's device and in every gymnasium autoreset mode.
"""

from flyenv.wrappers.episode_statistics import EpisodeStatistics as EpisodeStatistics
from flyenv.wrappers.normalize_observation import NormalizeObservation as NormalizeObservation
from flyenv.wrappers.numpy_view import NumpyView as NumpyView
