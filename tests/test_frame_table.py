"""The reference frame table: columns declared once, offsets from the bank's arrays."""

import torch

from flyenv.envs.frame_table import COLUMNS, FrameTable
from flyenv.envs.reference import load_references
from flyenv.motion import tripod_gait


def _bank():
    clips = [tripod_gait(duration_s=0.3), tripod_gait(duration_s=0.5)]
    return load_references(clips, 0.002, torch.device("cpu"), standing_height_mm=1.0,
                           claw_clearance_mm=0.05)


def test_every_column_reads_its_own_bank_field():
    bank = _bank()
    # A column added by name alone (root_quat_w), in the middle: the others' offsets follow.
    names = COLUMNS[:2] + ("root_quat_w",) + COLUMNS[2:]
    for columns in (COLUMNS, names):
        table = FrameTable(bank, columns)
        frames = bank.joint_pos.shape[1]
        assert table.frames == frames and table.rows.shape[0] == bank.nclip * frames
        clip, frame = 1, 7
        row = table.rows[clip * frames + frame]
        for name in columns:
            expected = getattr(bank, name)[clip, frame].flatten()
            assert torch.equal(table.column(row, name), expected), name
        assert table.width == sum(getattr(bank, n)[0, 0].numel() for n in columns)
