import io
import tarfile
import zipfile

import pytest

from ocrtune_shared.archives import ArchiveError, is_archive, safe_extract


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_unpacks_and_descends_into_the_single_folder(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"adapter/adapter_config.json": "{}", "adapter/w.bin": "x"})
    assert is_archive(archive)
    folder = safe_extract(archive, tmp_path / "out", max_bytes=1000)
    assert folder.name == "adapter" and (folder / "adapter_config.json").read_text() == "{}"


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil", "a/../../evil", "C:/evil"])
def test_refuses_members_outside_the_folder_before_writing_anything(tmp_path, name):
    archive = _zip(tmp_path / "a.zip", {"ok.txt": "fine", name: "evil"})
    with pytest.raises(ArchiveError, match="points outside"):
        safe_extract(archive, tmp_path / "out", max_bytes=1000)
    assert not any((tmp_path / "out").iterdir())


def test_refuses_links_and_bombs(tmp_path):
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(ArchiveError, match="is a link"):
        safe_extract(archive, tmp_path / "out", max_bytes=1000)
    bomb = _zip(tmp_path / "bomb.zip", {"zeros": b"\0" * 100_000})
    with pytest.raises(ArchiveError, match="more than 1000 bytes"):
        safe_extract(bomb, tmp_path / "out2", max_bytes=1000)
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not an archive at all" * 10)
    with pytest.raises(ArchiveError, match="not a readable"):
        safe_extract(junk, tmp_path / "out3", max_bytes=1000)


def test_tar_gz_round_trip(tmp_path):
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        data = b"hello"
        info = tarfile.TarInfo("x/file.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    assert (safe_extract(archive, tmp_path / "o", max_bytes=100) / "file.txt").read_bytes() == b"hello"
