"""The state folder is private: created 0700, tightened when loose, refused when shared."""

import os
import stat

import pytest

from storage import LooseFolderError, ensure_private_dir, write_private


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_state_folder_is_owner_only(tmp_path):
    folder = tmp_path / "state" / "collector"
    write_private(str(folder / "x.json"), "{}")
    assert mode(folder) == 0o700
    assert mode(folder / "x.json") == 0o600


def test_an_existing_loose_folder_of_ours_is_tightened(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    ensure_private_dir(str(folder))
    assert mode(folder) == 0o700


def test_a_shared_folder_is_refused_with_what_to_do(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, 0o1777)  # like /tmp
    with pytest.raises(LooseFolderError, match=r"open to other users \(mode 1777\).*chmod 700"):
        write_private(str(folder / "users.yaml"), "x")
    assert mode(folder) == 0o1777
    assert not (folder / "users.yaml").exists()
