"""Reference motions: the versioned clip format, resampling, augmentation and the embedded gait."""

from flyenv.motion.augment import AugmentConfig as AugmentConfig
from flyenv.motion.augment import mirror as mirror
from flyenv.motion.augment import time_scale as time_scale
from flyenv.motion.format import BoundViolation as BoundViolation
from flyenv.motion.format import ReferenceMotion as ReferenceMotion
from flyenv.motion.gait import tripod_gait as tripod_gait
from flyenv.motion.io import SCHEMA_VERSION as SCHEMA_VERSION
from flyenv.motion.io import load as load
from flyenv.motion.io import save as save
from flyenv.motion.resample import resample as resample
