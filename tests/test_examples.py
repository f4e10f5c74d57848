import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_replay_reference_example_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "replay_reference.py"), "--output", str(tmp_path),
         "--duration", "0.2", "--leg", "RM"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "tethered: RMS" in result.stdout and "free: RMS" in result.stdout
    assert (tmp_path / "tracking.png").stat().st_size > 10_000
