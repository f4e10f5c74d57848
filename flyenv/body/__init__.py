"""The fly body: one description feeding both the IK chain and the MuJoCo model."""

from flyenv.body.config import BodyConfig as BodyConfig
from flyenv.body.constants import DOF_NAMES as DOF_NAMES
from flyenv.body.constants import FLYGYM_DOF_NAMES as FLYGYM_DOF_NAMES
from flyenv.body.constants import JOINTS as JOINTS
from flyenv.body.constants import KEYPOINTS as KEYPOINTS
from flyenv.body.constants import LEGS as LEGS
from flyenv.body.constants import SEGMENTS as SEGMENTS
from flyenv.body.conventions import from_flygym as from_flygym
from flyenv.body.conventions import to_flygym as to_flygym
from flyenv.body.kinematics import forward_kinematics as forward_kinematics
from flyenv.body.kinematics import leg_forward_kinematics as leg_forward_kinematics
from flyenv.body.mjcf import ModelOptions as ModelOptions
from flyenv.body.mjcf import build_model as build_model
from flyenv.body.mjcf import build_spec as build_spec
