"""The dataset-builder CLI: a folder of images + labels file -> parquet, bad rows reported by line."""

import subprocess
import sys

import pyarrow.parquet as pq

from ocrtune_devkit import synthetic


def _run(*args):
    return subprocess.run([sys.executable, "-m", "ocrtune_client.cli", "dataset", "build", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_builds_a_parquet_from_a_good_folder(tmp_path):
    samples = synthetic.make_samples(6, seed=5)
    folder = synthetic.write_image_folder(samples, tmp_path / "data")
    done = _run(folder, "-o", tmp_path / "out.parquet")
    assert done.returncode == 0, done.stderr
    assert "wrote 6 rows" in done.stdout
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column("text").to_pylist() == [s.text for s in samples]
    assert table.column("image").to_pylist()[0]["bytes"] == samples[0].png


def test_reports_each_bad_row_by_line_and_writes_nothing(tmp_path):
    samples = synthetic.make_samples(3, seed=6)
    folder = synthetic.write_image_folder(samples, tmp_path / "data")
    (folder / "images" / "broken.png").write_bytes(samples[0].png[:100])
    (folder / "images" / "text.png").write_text("not an image")
    labels = folder / "labels.tsv"
    labels.write_text(
        labels.read_text()
        + "images/missing.png\t一二\n"  # line 4
        + "images/broken.png\t三\n"  # line 5
        + "images/000001.png\t\n"  # line 6
        + "../outside.png\t四\n"  # line 7
        + "images/text.png\t五\n",  # line 8
        encoding="utf-8",
    )
    done = _run(folder, "-o", tmp_path / "out.parquet")
    assert done.returncode == 1
    err = done.stderr
    assert "line 4: image file 'images/missing.png' not found" in err
    assert "line 5: image 'images/broken.png': image is corrupt or truncated" in err
    assert "line 6: empty text" in err
    assert "line 7: image path '../outside.png' points outside" in err
    assert "line 8: image 'images/text.png': not a recognised image format" in err
    assert "5 bad row(s)" in err
    assert not (tmp_path / "out.parquet").exists()

    done = _run(folder, "-o", tmp_path / "out.parquet", "--skip-bad")
    assert done.returncode == 0 and "wrote 3 rows" in done.stdout and "skipped 5" in done.stdout


def test_missing_labels_file_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    done = _run(tmp_path / "empty", "-o", tmp_path / "o.parquet")
    assert done.returncode == 2
    assert "expected one labels file" in done.stderr and "Traceback" not in done.stderr
