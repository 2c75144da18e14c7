"""Training on the drawings drawn whole: TrainConfig.min_enclosed_marks and its CLI flag."""

import json

import numpy as np
import pytest
from PIL import Image

from minigan.cli import main
from minigan.gan import TrainConfig, Trainer


def _drawings(folder):
    """Six 28x28 drawings as PNGs (sorted by name): three faces (a head around two eyes and a
    mouth), two empty heads, one face whose head is left open."""
    y, x = np.mgrid[:28, :28]
    d = np.hypot(y - 13.5, x - 13.5)
    head = np.where((d <= 11.5) & (d >= 10.0), 255, 0).astype(np.uint8)
    face = head.copy()
    face[9:11, 9:11] = face[9:11, 17:19] = face[17, 9:19] = 255
    faces = [face, np.roll(face, 1, axis=0), np.roll(face, -1, axis=1)]
    opened = face.copy()
    opened[12:16, 23:26] = 0
    drawings = {"a": faces[0], "b": head, "c": faces[1], "d": opened, "e": head.T.copy(),
                "f": faces[2]}
    folder.mkdir()
    for name, img in drawings.items():
        Image.fromarray(img).save(folder / f"{name}.png")
    return np.stack(faces)


def _config(tmp_path, **changes):
    return TrainConfig(**{"dataset": f"folder:{tmp_path / 'drawings'}", "arch": "dcgan",
                          "width": 4, "z_dim": 8, "batch_size": 2, "steps": 1,
                          "out": str(tmp_path / "run"), "progress": False, "fd_every": 0,
                          **changes})


def test_the_trainer_keeps_the_drawings_with_enough_enclosed_marks(tmp_path):
    faces = _drawings(tmp_path / "drawings")
    assert len(Trainer(_config(tmp_path)).images) == 6
    trainer = Trainer(_config(tmp_path, min_enclosed_marks=2), overwrite=True)
    np.testing.assert_array_equal(trainer.images, faces)
    trainer.fit()
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["config"]["min_enclosed_marks"] == 2 and config["num_images"] == 3
    resumed = Trainer.resume(tmp_path / "run", steps=2)       # the same three again
    np.testing.assert_array_equal(resumed.images, faces)
    assert len(Trainer(_config(tmp_path, min_enclosed_marks=0), overwrite=True).images) == 5
    with pytest.raises(ValueError, match="none of the 6 images .* 4 marks or more"):
        Trainer(_config(tmp_path, min_enclosed_marks=4), overwrite=True)


def test_the_cli_flag_reaches_the_run_and_stays_with_it(tmp_path, capsys):
    _drawings(tmp_path / "drawings")
    run = tmp_path / "cli"
    assert main(["train", "--dataset", f"folder:{tmp_path / 'drawings'}", "--arch", "dcgan",
                 "--width", "4", "--z-dim", "8", "--batch-size", "2", "--steps", "1",
                 "--min-enclosed-marks", "2", "--no-progress", "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["min_enclosed_marks"] == 2 and config["num_images"] == 3
    with pytest.raises(SystemExit):
        main(["train", "--resume", str(run), "--min-enclosed-marks", "1"])
    assert "--min-enclosed-marks cannot be given with --resume" in capsys.readouterr().err
