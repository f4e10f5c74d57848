"""Vector-env wrappers for torch-native training: statistics, normalization, video and more.

Statistics, observation normalization, the privileged observation appended for an asymmetric
critic, a numpy view, video.

Each works on torch tensors on the env's device and in every gymnasium autoreset mode.
"""

from flyenv.wrappers.episode_statistics import EpisodeStatistics as EpisodeStatistics
from flyenv.wrappers.normalize_observation import NormalizeObservation as NormalizeObservation
from flyenv.wrappers.numpy_view import NumpyView as NumpyView
from flyenv.wrappers.privileged import AppendPrivileged as AppendPrivileged
from flyenv.wrappers.record_video import RecordVideo as RecordVideo
