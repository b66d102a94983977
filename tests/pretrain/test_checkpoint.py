import pytest

from pretrain.common.errors import CheckpointError
from pretrain.engine.checkpoint import last_checkpoint, load_checkpoint, save_checkpoint


def test_save_points_at_newest_and_keeps_only_recent_periodic(tmp_path):
    for it in (10, 20, 30):
        save_checkpoint(str(tmp_path), f"checkpoint_{it:08d}.pth", {"iteration": it}, keep_last=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint_00000020.pth", "checkpoint_00000030.pth", "last_checkpoint"]
    assert load_checkpoint(last_checkpoint(str(tmp_path)))["iteration"] == 30


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path):
    save_checkpoint(str(tmp_path), "checkpoint_00000001.pth", {"iteration": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_checkpoint(str(tmp_path), "checkpoint_00000002.pth", {"bad": Unpicklable()})
    assert load_checkpoint(last_checkpoint(str(tmp_path)))["iteration"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint_00000001.pth",
        "last_checkpoint",
    ]


def test_unreadable_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.pth"):
        load_checkpoint(str(bad))
