"""Builds the MuJoCo model of the fly from a `BodyConfig` through `mujoco.MjSpec`.

Units are mm, g and s: gravity is -9810 mm/s², the whole fly weighs about 1 mg. Every leg is a
chain of four capsule segments whose hinge joints reproduce `flyenv.body.kinematics` exactly
(the joint angles of an IK solution are the simulator's `qpos`), with a site at each keypoint and
a position actuator per DOF, and a touch sensor per tarsus (`TOUCH_SENSOR_NAMES`, the normal
contact force on it [µN]). With `ModelOptions.adhesion_gain_uN` > 0 (the default, 20 µN) each
tarsus also gets an adhesion actuator (`ADHESION_NAMES`, after the 42 joint actuators, control
in [0, 1]): MuJoCo pulls the tarsus onto the surfaces it touches with up to that force, shared
among its contacts, so the friction cone widens as in FlyGym's and flybody's sticky claws. Only
the tarsi and the body touch the ground; nothing collides with itself.

Two variants come from the same builder: free-walking (a free root joint above a floor) and
tethered (the thorax fixed in space, no floor unless asked for).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import mujoco
import numpy as np

from flyenv.body import constants as c
from flyenv.body.config import BodyConfig

# Collision bits: the floor collides with everything that has bit 0 in its conaffinity, and
# nothing else collides with anything (contype 0), so there are no self-contacts.
_FLOOR_CONTYPE, _TOUCH_CONAFFINITY = 1, 1
# Side of a floor checker square [mm]: a few per body length, so walking shows against them.
_FLOOR_SQUARE_MM = 1.0
_INTEGRATORS = {"euler": mujoco.mjtIntegrator.mjINT_EULER,
                "implicitfast": mujoco.mjtIntegrator.mjINT_IMPLICITFAST}
_CONES = {"pyramidal": mujoco.mjtCone.mjCONE_PYRAMIDAL, "elliptic": mujoco.mjtCone.mjCONE_ELLIPTIC}


# The contact model before issue 22 made the feet hold (no tarsus adhesion, no noslip), as
# `ModelOptions` fields: for comparisons with today's defaults (e.g. `flyenv bench
# --model-option adhesion_gain_uN=0 --model-option noslip_iterations=0`).
SLIDING_FEET: dict[str, float | int] = {"adhesion_gain_uN": 0.0, "noslip_iterations": 0}


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """Physical parameters of the compiled model (units mm, g, s).

    The defaults follow NeuroMechFly as FlyGym builds it, except joint damping and armature:
    FlyGym's damping 0.5 with armature 1e-6 makes a capsule fly's feet chatter and the standing
    fly creep forward; it holds still once dt * damping / M_ii stays below about 3. Of the quiet
    settings, damping 0.05 with armature 1e-5 tracks the embedded gait at 10 Hz stepping to
    0.4 deg RMS tethered with kp 50, where damping 0.5 with armature 1e-4 (over-damped, 10 ms
    lag) lags by 3.4 deg RMS. Joint stiffness is 0: the position actuators hold the pose.

    The joint gain is 150 (issue 22, benchmarks/physics_study.py --screen): with kp 50 the
    loaded legs give, the thorax sags ~0.1 mm below the clip's height, swing claws drag on the
    ground (27-35% of swing samples) and the free fly walks at 0.84x the speed and 0.81x the yaw
    rate of tripod gaits with known root motion; kp 150 keeps the height, drags in 10%, walks at
    0.94-0.95x the speed and 0.94x the yaw rate, tracks to 0.1 deg RMS tethered and stands
    still (no more terminations from random starts). Stance claws still slide (1.2 mm/s mean at
    the contact). What holds them (issue 22) is tarsus adhesion up to 20 µN (~2x the fly's
    weight) with noslip 3, on by default: at 1e-4 s the tripod gaits then walk at 0.96x their
    speed and 0.94x their yaw rate with 0.16 mm/s mean slide at the contact in stance, the df3d
    walk's stance claws slide 0.46 mm/s, and random starts end no more often (`SLIDING_FEET`:
    the model without them).

    Attributes:
        timestep_s: physics step [s].
        total_mass_g: mass of the whole fly [g], spread over the geoms by volume.
        actuator_kp: position gain of each joint actuator [µN·mm/rad].
        actuator_force_limit: actuator torque limit [µN·mm].
        joint_damping: [µN·mm·s/rad].
        joint_armature: [g·mm²].
        segment_radii_mm: capsule radius of coxa, femur, tibia, tarsus [mm].
        thorax_radius_mm: thorax capsule radius [mm].
        head_radius_mm: head sphere radius [mm].
        abdomen_radius_mm: abdomen capsule radius [mm].
        friction: sliding friction of the ground contacts.
        contact_solref: (timeconst [s], dampratio) of the ground contacts.
        contact_solimp: solimp of the ground contacts.
        standing_height_mm: initial thorax height of the free fly [mm].
        tether_height_mm: thorax height of the tethered fly [mm].
        solver_iterations: most Newton iterations of the constraint solver per physics step.
            MuJoCo Warp's solver loop runs until the slowest world converges, so this bounds
            what one hard world costs the whole batch. Measured (benchmarks/solver_iterations.py,
            32 free flies, 150 steps per scenario): replaying a clip, with or without PPO's
            exploration noise, needs at most 9 (p99 7); random flailing p99 13, while a few
            worlds never converge and ran to MuJoCo's 100. With 20 the rewards of every scenario
            equal those with 100 to three decimals and a stuck world costs 5x less.
        linesearch_iterations: most line-search iterations per solver iteration (one kernel
            loops each world's search, so the slowest world sets its time too): 8 left every
            scenario's rewards unchanged against MuJoCo's 50.
        integrator: "euler" (semi-implicit, damping explicit) or "implicitfast" (joint damping
            and actuator velocity terms implicit).
        cone: friction cone of the contacts, "pyramidal" or "elliptic".
        solver_tolerance: the constraint solver stops when the cost improves less than this
            (relative).
        noslip_iterations: iterations of MuJoCo's noslip post-solver (0: off); it removes the
            slip that soft contacts allow, at extra cost per step (3, with adhesion, holds the
            stance claws: alone it does not).
        impratio: ratio of frictional to normal constraint impedance (elliptic cones: > 1
            makes friction harder, MuJoCo suggests 10-100 for legged locomotion).
        adhesion_gain_uN: largest adhesion force of a tarsus [µN] (the fly weighs ~9.8 µN);
            0 builds no adhesion actuators. The env drives them with the clip's stance
            (`FlyImitationConfig.adhesion_control`).
        actuator_timeconst_s: time constant of a first-order filter on the joint actuators'
            commands [s] (flybody: 10 ms); 0 applies the command at once.
    """

    timestep_s: float = 1e-4
    total_mass_g: float = c.TOTAL_MASS_G
    actuator_kp: float = 150.0
    actuator_force_limit: float = 30.0
    joint_damping: float = 0.05
    joint_armature: float = 1e-5
    segment_radii_mm: tuple[float, float, float, float] = (0.06, 0.05, 0.04, 0.03)
    thorax_radius_mm: float = 0.25
    head_radius_mm: float = 0.2
    abdomen_radius_mm: float = 0.28
    friction: float = 1.0
    contact_solref: tuple[float, float] = (2e-4, 1.0)
    contact_solimp: tuple[float, float, float, float, float] = (0.98, 0.99, 1e-5, 0.5, 3.0)
    standing_height_mm: float = c.STANDING_HEIGHT_MM
    tether_height_mm: float = 2.0
    solver_iterations: int = 20
    linesearch_iterations: int = 8
    integrator: Literal["euler", "implicitfast"] = "euler"
    cone: Literal["pyramidal", "elliptic"] = "pyramidal"
    solver_tolerance: float = 1e-8
    noslip_iterations: int = 3
    impratio: float = 1.0
    adhesion_gain_uN: float = 20.0
    actuator_timeconst_s: float = 0.0

    @property
    def adhesion(self) -> bool:
        """Whether the model has tarsus adhesion actuators."""
        return self.adhesion_gain_uN > 0

    def __post_init__(self) -> None:
        positive = ("timestep_s", "total_mass_g", "actuator_kp", "actuator_force_limit",
                    "thorax_radius_mm", "head_radius_mm", "abdomen_radius_mm")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"ModelOptions.{name} must be > 0, got {getattr(self, name)}")
        if min(self.segment_radii_mm) <= 0 or len(self.segment_radii_mm) != c.NUM_SEGMENTS:
            raise ValueError(f"ModelOptions.segment_radii_mm must be 4 values > 0, "
                             f"got {self.segment_radii_mm}")
        for name in ("solver_iterations", "linesearch_iterations"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"ModelOptions.{name} must be an int >= 1, got "
                                 f"{getattr(self, name)!r}")
        for name, choices in (("integrator", _INTEGRATORS), ("cone", _CONES)):
            if getattr(self, name) not in choices:
                raise ValueError(f"ModelOptions.{name} must be one of {list(choices)}, got "
                                 f"{getattr(self, name)!r}")
        if not (isinstance(self.noslip_iterations, int) and self.noslip_iterations >= 0):
            raise ValueError(f"ModelOptions.noslip_iterations must be an int >= 0, got "
                             f"{self.noslip_iterations!r}")
        if not self.impratio >= 1:
            raise ValueError(f"ModelOptions.impratio must be >= 1, got {self.impratio}")
        for name in ("adhesion_gain_uN", "actuator_timeconst_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"ModelOptions.{name} must be >= 0, got {getattr(self, name)}")
        if not self.solver_tolerance >= 0:
            raise ValueError(f"ModelOptions.solver_tolerance must be >= 0, got "
                             f"{self.solver_tolerance}")
        if self.joint_damping < 0 or self.joint_armature < 0:
            raise ValueError("ModelOptions.joint_damping and joint_armature must be >= 0")


def build_spec(config: BodyConfig | None = None, *, tethered: bool = False,
               floor: bool | None = None, options: ModelOptions | None = None,
               ) -> mujoco.MjSpec:
    """The fly as an editable `mujoco.MjSpec` (compile it, or see `build_model`).

    Args:
        config: the body; the default template when None.
        tethered: fix the thorax in space instead of giving it a free joint.
        floor: add the ground plane; default True for the free fly, False when tethered.
        options: physical parameters; `ModelOptions()` when None.

    Returns:
        The spec. Joint and actuator names are `DOF_NAMES`; sites are `KEYPOINT_NAMES`.
    """
    config = BodyConfig.default() if config is None else config
    options = ModelOptions() if options is None else options
    floor = (not tethered) if floor is None else floor

    spec = mujoco.MjSpec()
    spec.modelname = "fly_tethered" if tethered else "fly"
    spec.compiler.degree = False
    spec.compiler.autolimits = True
    spec.option.timestep = options.timestep_s
    spec.option.gravity = (0.0, 0.0, -c.GRAVITY_MM_S2)
    spec.option.integrator = _INTEGRATORS[options.integrator]
    spec.option.cone = _CONES[options.cone]
    spec.option.solver = mujoco.mjtSolver.mjSOL_NEWTON
    spec.option.tolerance = options.solver_tolerance
    spec.option.iterations = options.solver_iterations
    spec.option.ls_iterations = options.linesearch_iterations
    spec.option.noslip_iterations = options.noslip_iterations
    spec.option.impratio = options.impratio
    spec.stat.meansize = 0.5
    spec.stat.extent = 5.0
    spec.visual.map.znear = 0.01

    world = spec.worldbody
    if floor:
        _add_floor(spec, options)

    height = options.tether_height_mm if tethered else options.standing_height_mm
    thorax = world.add_body(name="thorax", pos=(0, 0, height))
    if not tethered:
        thorax.add_freejoint(name="root")
    thorax.add_camera(name="track", mode=mujoco.mjtCamLight.mjCAMLIGHT_TRACKCOM,
                      pos=(-1.0, -6.0, 3.0), xyaxes=(1, -0.17, 0, 0.1, 0.5, 0.86))
    # The light follows the fly like the camera: a directional light's shadow map covers only
    # +-stat.extent around the light, so a light fixed in the world lost the fly's shadow once
    # it had walked 5 mm (0.5-0.8 s of a replay).
    thorax.add_light(name="top", mode=mujoco.mjtCamLight.mjCAMLIGHT_TRACKCOM, pos=(0, 0, 20),
                     dir=(0, 0, -1), type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL)
    _add_trunk(thorax, options)
    for legid, leg in enumerate(c.LEGS):
        _add_leg(spec, thorax, leg, config.thc[legid], config.lengths[legid],
                 config.bounds[legid * c.DOF_PER_LEG:(legid + 1) * c.DOF_PER_LEG], options)

    if options.adhesion:
        for leg, name in zip(c.LEGS, c.ADHESION_NAMES, strict=True):
            spec.add_actuator(name=name, target=f"{leg}_Tarsus",
                              trntype=mujoco.mjtTrn.mjTRN_BODY,
                              ctrlrange=(0.0, 1.0)).set_to_adhesion(gain=options.adhesion_gain_uN)
    _set_uniform_density(spec, options.total_mass_g)
    _add_stand_keyframe(spec, tethered, height, options)
    return spec


def build_model(config: BodyConfig | None = None, *, tethered: bool = False,
                floor: bool | None = None, options: ModelOptions | None = None,
                ) -> mujoco.MjModel:
    """Compiles the fly (see `build_spec` for the arguments).

    Returns:
        The `mujoco.MjModel`. Its last 42 qpos entries (and its first 42 actuators) are the
        joint angles in `DOF_NAMES` order: `qpos[-42:] = angles` needs no conversion. With
        adhesion, actuators 42-47 are the tarsi's (`ADHESION_NAMES`).
    """
    return build_spec(config, tethered=tethered, floor=floor, options=options).compile()


def _contact_params(options: ModelOptions) -> dict:
    return dict(friction=(options.friction, 0.005, 0.0001), solref=options.contact_solref,
                solimp=options.contact_solimp)


def _add_floor(spec: mujoco.MjSpec, options: ModelOptions) -> None:
    # A checkerboard of _FLOOR_SQUARE_MM squares with thin grid lines, so forward progress shows
    # on video; a plain plane looks the same wherever the fly is. Looks only: the collision and
    # contact parameters are those of a plain plane.
    spec.add_texture(name="floor_grid", type=mujoco.mjtTexture.mjTEXTURE_2D,
                     builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER, mark=mujoco.mjtMark.mjMARK_EDGE,
                     rgb1=(0.62, 0.62, 0.57), rgb2=(0.5, 0.5, 0.46), markrgb=(0.35, 0.35, 0.32),
                     width=256, height=256)
    # texuniform: texrepeat counts textures per mm; a checker texture holds 2 x 2 squares.
    repeat = 1.0 / (2.0 * _FLOOR_SQUARE_MM)
    material = spec.add_material(name="floor", texrepeat=(repeat, repeat), texuniform=True,
                                 reflectance=0.0)
    material.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "floor_grid"
    spec.worldbody.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=(0, 0, 0.05),
                            contype=_FLOOR_CONTYPE, conaffinity=0, material="floor",
                            **_contact_params(options))


def _add_trunk(thorax: mujoco.MjsBody, options: ModelOptions) -> None:
    capsule, sphere = mujoco.mjtGeom.mjGEOM_CAPSULE, mujoco.mjtGeom.mjGEOM_SPHERE
    common = dict(contype=0, conaffinity=_TOUCH_CONAFFINITY, **_contact_params(options))
    r = options.thorax_radius_mm
    thorax.add_geom(name="thorax", type=capsule, size=(r, 0, 0),
                    fromto=(-0.25, 0, 0.1, 0.3, 0, 0.1), rgba=(0.55, 0.4, 0.25, 1), **common)
    thorax.add_geom(name="head", type=sphere, size=(options.head_radius_mm, 0, 0),
                    pos=(0.75, 0, 0.25), rgba=(0.6, 0.25, 0.2, 1), **common)
    thorax.add_geom(name="abdomen", type=capsule, size=(options.abdomen_radius_mm, 0, 0),
                    fromto=(-0.5, 0, 0.05, -1.2, 0, -0.05), rgba=(0.5, 0.42, 0.3, 1), **common)


def _add_leg(spec: mujoco.MjSpec, thorax: mujoco.MjsBody, leg: str, thc: np.ndarray,
             lengths: np.ndarray, bounds: np.ndarray, options: ModelOptions) -> None:
    # Segment k's body sits at its proximal keypoint with the thorax's orientation in the zero
    # pose; its joints are listed in chain order, which MuJoCo composes as R = R1 R2 ... about
    # the body's own (moving) axes, exactly the chain of `leg_forward_kinematics`.
    parent, pos = thorax, thc
    for segid, segment in enumerate(c.SEGMENTS):
        body = parent.add_body(name=f"{leg}_{segment}", pos=tuple(pos))
        for jointid, joint in enumerate(c.JOINTS):
            if c.JOINT_SEGMENT[jointid] != segid:
                continue
            dof = f"{leg}_{joint}"
            lo, hi = bounds[jointid]
            body.add_joint(name=dof, type=mujoco.mjtJoint.mjJNT_HINGE, axis=c.JOINT_AXES[jointid],
                           range=(lo, hi), limited=mujoco.mjtLimited.mjLIMITED_TRUE,
                           damping=options.joint_damping, armature=options.joint_armature)
            spec.add_actuator(name=dof, target=dof, trntype=mujoco.mjtTrn.mjTRN_JOINT,
                              ctrlrange=(lo, hi), forcerange=(-options.actuator_force_limit,
                              options.actuator_force_limit)).set_to_position(
                                  kp=options.actuator_kp,
                                  timeconst=options.actuator_timeconst_s or -1)
        length = float(lengths[segid])
        touches = segment == "Tarsus"
        body.add_geom(name=f"{leg}_{segment}", type=mujoco.mjtGeom.mjGEOM_CAPSULE,
                      size=(options.segment_radii_mm[segid], 0, 0),
                      fromto=(0, 0, 0, 0, 0, -length), contype=0,
                      conaffinity=_TOUCH_CONAFFINITY if touches else 0,
                      rgba=(0.7, 0.55, 0.35, 1), **_contact_params(options))
        body.add_site(name=f"{leg}_{c.KEYPOINTS[segid]}", size=(0.02, 0, 0))
        if touches:
            _add_touch_sensor(spec, body, leg, length, options.segment_radii_mm[segid])
        parent, pos = body, (0.0, 0.0, -length)
    parent.add_site(name=f"{leg}_Claw", pos=tuple(pos), size=(0.02, 0, 0))


def _add_touch_sensor(spec: mujoco.MjSpec, tarsus: mujoco.MjsBody, leg: str, length: float,
                      radius: float) -> None:
    # A touch sensor sums the normal forces of the contacts inside its site's volume: a capsule
    # around the tarsus geom, a little wider so contacts on its surface fall inside.
    name = c.TOUCH_SENSOR_NAMES[c.LEGS.index(leg)]
    tarsus.add_site(name=name, type=mujoco.mjtGeom.mjGEOM_CAPSULE, size=(1.5 * radius, 0, 0),
                    fromto=(0, 0, 0, 0, 0, -length), group=4, rgba=(0, 0, 0, 0))
    spec.add_sensor(name=name, type=mujoco.mjtSensor.mjSENS_TOUCH,
                    objtype=mujoco.mjtObj.mjOBJ_SITE, objname=name)


def _set_uniform_density(spec: mujoco.MjSpec, total_mass_g: float) -> None:
    # One density for every geom, chosen so the fly weighs total_mass_g (capsule volume is
    # pi r^2 L + 4/3 pi r^3, as MuJoCo computes it for a solid capsule).
    volume = 0.0
    for geom in spec.geoms:
        if geom.type == mujoco.mjtGeom.mjGEOM_PLANE:
            continue
        r = geom.size[0]
        length = np.linalg.norm(np.subtract(geom.fromto[3:], geom.fromto[:3]))
        if geom.type == mujoco.mjtGeom.mjGEOM_SPHERE:
            length = 0.0
        volume += np.pi * r**2 * length + 4.0 / 3.0 * np.pi * r**3
    # Rounded to the six significant digits MJCF export writes, so an exported model has the
    # same density (the total mass is then within 5e-6 relative of total_mass_g).
    density = float(f"{total_mass_g / volume:.6g}")
    for geom in spec.geoms:
        geom.density = density


def _add_stand_keyframe(spec: mujoco.MjSpec, tethered: bool, height: float,
                        options: ModelOptions) -> None:
    pose = list(c.STANDING_POSE_RAD)
    root = [] if tethered else [0.0, 0.0, height, 1.0, 0.0, 0.0, 0.0]
    # Standing: every tarsus on the ground, so adhesion (when built) is on; filtered actuators
    # start at the pose they hold.
    key = spec.add_key(name="stand", qpos=root + pose,
                       ctrl=pose + [1.0] * (c.NUM_LEGS * options.adhesion))
    if options.actuator_timeconst_s > 0:
        key.act = pose
