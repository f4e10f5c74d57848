"""The env's reference frame table: every per-frame reference field of a frame in one row.

The columns are declared once, in `COLUMNS`, by their `ReferenceBank` field names; their widths
and offsets follow from the bank's arrays (as the observation layout follows from its parts), so
a column cannot be read at another's offset. A world's reference at a frame is one row, gathered
by one `index_select` per step.
"""

from __future__ import annotations

import torch

from flyenv.envs.reference import ReferenceBank

# The per-frame `ReferenceBank` fields the env reads at run time, in table order.
COLUMNS: tuple[str, ...] = ("joint_pos", "joint_vel", "claw_pos_b", "root_pos_w",
                            "root_lin_vel_w", "gravity_b", "stance", "claw_height")


class FrameTable:
    """`ReferenceBank` fields of every clip frame side by side.

    Attributes:
        rows: (nclip * T, width) float32, row `clip * T + frame`.
        frames: T, the frames of each (padded) clip.
        columns: {field: slice of its columns}; multi-dimensional fields are flattened (e.g.
            claw_pos_b's (6, 3) into 18 columns, leg-major).
    """

    def __init__(self, bank: ReferenceBank, columns: tuple[str, ...] = COLUMNS) -> None:
        parts = [getattr(bank, name).flatten(2) for name in columns]
        self.columns: dict[str, slice] = {}
        offset = 0
        for name, part in zip(columns, parts, strict=True):
            self.columns[name] = slice(offset, offset + part.shape[2])
            offset += part.shape[2]
        self.rows = torch.cat(parts, dim=2).flatten(0, 1)
        self.frames = bank.joint_pos.shape[1]

    @property
    def width(self) -> int:
        """Columns of a row."""
        return self.rows.shape[1]

    def column(self, rows: torch.Tensor, name: str) -> torch.Tensor:
        """The columns of field `name` of gathered rows (..., width) -> (..., its width)."""
        return rows[..., self.columns[name]]
