import io

import pyarrow.parquet as pq
from PIL import Image

from ocrtune_devkit import synthetic
from ocrtune_devkit.charset import ALL_CHARS
from ocrtune_shared.labels import read_labels_file


def test_lines_use_the_charset_and_render_as_line_images():
    samples = synthetic.make_samples(12, seed=3)
    assert len({s.text for s in samples}) == 12
    assert all(set(s.text) <= set(ALL_CHARS) for s in samples)
    image = samples[0].image()
    assert image.size == synthetic.LINE_SIZE and image.mode == "RGB"
    # Text was drawn: a real share of the pixels is dark.
    dark = sum(1 for p in image.convert("L").getdata() if p < 128)
    assert dark > 200
    assert synthetic.make_samples(3, seed=3)[0].text == samples[0].text  # deterministic


def test_parquet_layout_reads_back_as_an_hf_image_dataset(tmp_path):
    import datasets

    samples = synthetic.make_samples(5, seed=1)
    path = synthetic.write_parquet(samples, tmp_path / "train.parquet")
    table = pq.read_table(path)
    assert table.column_names == ["image", "text"]
    dataset = datasets.load_dataset("parquet", data_files=str(path), split="train")
    assert isinstance(dataset.features["image"], datasets.Image)
    assert dataset[0]["text"] == samples[0].text
    assert dataset[0]["image"].size == synthetic.LINE_SIZE


def test_image_folder_layout(tmp_path):
    samples = synthetic.make_samples(4, seed=2)
    folder = synthetic.write_image_folder(samples, tmp_path / "folder")
    rows, problems = read_labels_file(folder / "labels.tsv")
    assert not problems and [r.text for r in rows] == [s.text for s in samples]
    assert Image.open(io.BytesIO((folder / rows[0].image).read_bytes())).size == synthetic.LINE_SIZE


def test_save_to_disk_layout(tmp_path):
    import datasets

    samples = synthetic.make_samples(4, seed=2)
    folder = synthetic.write_hf_disk(samples, tmp_path / "disk")
    dataset = datasets.load_from_disk(str(folder))
    assert dataset.column_names == ["image", "text"]
    assert dataset[3]["text"] == samples[3].text
