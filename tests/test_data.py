"""The sample recordings shipped in the package: present, loadable, described, named."""

import pytest

from flyenv import data
from flyenv.ik_preprocess.io import load_recording


def test_every_sample_is_shipped_with_its_licence():
    for name, sample in data.SAMPLES.items():
        assert sample.path.is_file(), name
        assert sample.path.is_relative_to(data.DATA_DIR)
    assert "Apache License" in data.LICENSE.read_text()
    readme = (data.DATA_DIR / "README.md").read_text()
    assert "b8fd234" in readme and all(f"`{name}`" in readme for name in data.SAMPLES)


@pytest.mark.parametrize("name", data.RECORDINGS)
def test_sample_recordings_load_with_what_they_are_said_to_hold(name):
    recording = load_recording(data.path(name))
    frames = {"df3d_walk": 1000, "df3d_walk_100": 100, "anipose_groom": 600}[name]
    legs = {"anipose_groom": ("LF", "RF")}.get(name, ("LF", "LM", "LH", "RF", "RM", "RH"))
    assert recording.num_frames == frames
    assert recording.legs_present == legs
    assert data.sample(name).fps == 100.0


def test_an_unknown_name_lists_the_samples_and_suggests_the_closest():
    with pytest.raises(KeyError, match=r"Did you mean 'df3d_walk'\?") as info:
        data.path("df3d_wakl")
    for name in data.SAMPLES:
        assert name in str(info.value)
