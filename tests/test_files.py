"""vlp_course.files: the shipped folder's SHA-256 list, checks with the rebuild command, atomic writes."""

import pytest

from vlp_course import files


def test_record_then_check_a_shipped_file(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"abc")
    digest = files.record_sha256(f)
    # SHA-256 of b"abc", by its published test vector
    assert digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert files.expected_sha256("model.safetensors", tmp_path) == digest
    assert files.check_shipped(f, "make it") == f
    # recording again replaces the line rather than adding one
    f.write_bytes(b"abcd")
    files.record_sha256(f)
    assert (tmp_path / "SHA256SUMS").read_text().count("model.safetensors") == 1


def test_a_changed_or_missing_file_names_the_rebuild_command(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"1")
    files.record_sha256(f)
    f.write_bytes(b"2")
    with pytest.raises(ValueError, match="SHA-256 .* rebuild it with: python -m thing"):
        files.check_shipped(f, "python -m thing")
    with pytest.raises(FileNotFoundError, match="reproduce it with: python -m thing"):
        files.check_shipped(tmp_path / "absent.bin", "python -m thing")


def test_every_shipped_file_matches_its_recorded_sha256():
    sums = (files.shipped_dir() / "SHA256SUMS").read_text().split("\n")
    names = [line.split()[1] for line in sums if line.strip()]
    assert sorted(names) == sorted(p.name for p in files.shipped_dir().iterdir() if p.name not in ("SHA256SUMS", "README.md"))
    # the detector, four checkpoints, the captioner, the text-to-image generator and its GAN baseline, the benchmarks'
    # learning.csv, vlbert_recipe.csv and compare.csv
    assert len(names) == 11
    for name in names:
        files.check_shipped(files.shipped_dir() / name, "git checkout vlp_course/shipped/")
