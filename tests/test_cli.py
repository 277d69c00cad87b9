"""The ``rice-lab data`` commands: exit codes and what a user reads."""

from __future__ import annotations

import subprocess
import sys

from rice_lab.cli import main
from zindi_folder import make_zindi


def test_validate_good_folder_prints_summary_and_exits_0(tmp_path, capsys):
    root = make_zindi(tmp_path / "rice")
    assert main(["data", "validate", str(root)]) == 0
    out = capsys.readouterr().out
    assert "18 plants" in out and "train  blast" in out and "image size 40x32: 36 images" in out


def test_validate_bad_folder_lists_every_problem_and_exits_1(tmp_path, capsys):
    root = make_zindi(tmp_path / "rice")
    (root / "images" / "id_he20000.jpg").write_bytes(b"junk")
    (root / "images" / "id_bl00001_rgn.jpg").unlink()
    assert main(["data", "validate", str(root)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].endswith("2 problem(s) found")
    assert any("id_he20000.jpg: unreadable image" in line for line in err)
    assert any("id_bl00001_rgn.jpg" in line for line in err)


def test_validate_skip_bad_reports_dropped_plants_and_exits_0(tmp_path, capsys):
    root = make_zindi(tmp_path / "rice")
    (root / "images" / "id_he20000.jpg").write_bytes(b"junk")
    assert main(["data", "validate", str(root), "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert "dropped 1 plant(s)" in captured.err and "17 plants" in captured.out


def test_validate_missing_folder_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "rice_lab.cli", "data", "validate",
                             str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert result.returncode == 1
    assert "data folder not found" in result.stderr and "Traceback" not in result.stderr


def test_bad_flag_value_is_one_line_not_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "rice_lab.cli", "data", "synth", str(tmp_path / "x"),
                             "--balance", "1,2"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "--balance '1,2'" in result.stderr and "Traceback" not in result.stderr


def test_synth_then_validate(tmp_path, capsys):
    root = tmp_path / "synth"
    assert main(["data", "synth", str(root), "--plants", "12", "--size", "48", "--seed", "1",
                 "--workers", "1"]) == 0
    assert main(["data", "validate", str(root)]) == 0
    out = capsys.readouterr().out
    assert "12 plants" in out and "image size 48x38" in out


def test_validate_prints_near_duplicates_as_warnings_and_exits_0(tmp_path, capsys):
    from PIL import Image

    root = make_zindi(tmp_path / "rice")
    (root / "images" / "id_te00001.jpg").unlink()
    Image.open(root / "images" / "id_bl00000.jpg").save(root / "images" / "id_te00001.png")  # same pixels
    assert main(["data", "validate", str(root)]) == 1
    assert "identical to id_bl00000.jpg" in capsys.readouterr().err
    Image.open(root / "images" / "id_bl00000.jpg").point(lambda v: min(255, v + 3)).save(
        root / "images" / "id_te00001.png")  # a little brighter: looks the same, is not the same
    assert main(["data", "validate", str(root)]) == 0
    captured = capsys.readouterr()
    assert "warning:" in captured.err and "looks almost the same as id_bl00000.jpg" in captured.err
    assert "warnings: 1" in captured.out


def test_synth_width_names_the_width_and_size_is_still_accepted(tmp_path, capsys):
    assert main(["data", "synth", str(tmp_path / "a"), "--plants", "4", "--width", "40", "--workers", "1",
                 "--same-lesion-colours"]) == 0
    assert "(40x32 px)" in capsys.readouterr().out
    assert '"same_lesion_colours": true' in (tmp_path / "a" / "synth_config.json").read_text()
    assert main(["data", "synth", str(tmp_path / "b"), "--plants", "4", "--size", "40", "--workers", "1"]) == 0
    assert '"width": 40' in (tmp_path / "b" / "synth_config.json").read_text()


def test_every_command_has_a_help_page():
    """argparse formats help lazily: a stray '%' in a help string breaks `--help` only when it is asked for."""
    import argparse

    from rice_lab.cli import build_parser

    parser = build_parser()
    assert "experiment" in parser.format_help()
    pending = [parser]
    while pending:
        current = pending.pop()
        current.format_help()
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())
