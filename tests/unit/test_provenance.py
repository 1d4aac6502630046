"""run.json's git_sha names atlas's own commit, or nothing: never another project's."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from atlas import provenance

pytestmark = pytest.mark.unit


def test_git_sha_of_atlas_checkout_or_none():
    sha = provenance.git_sha()
    if (Path(provenance.__file__).resolve().parent.parent / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", sha or ""), sha
        assert re.fullmatch(r"[0-9a-f]{12}(-dirty)?", provenance.git_sha(12) or "")
    else:
        assert sha is None


def test_an_installed_copy_inside_another_checkout_records_no_commit(tmp_path, monkeypatch):
    """atlas installed into site-packages of a venv inside some project's git checkout: that project's
    HEAD says nothing about atlas."""
    project = tmp_path / "project"
    site = project / ".venv" / "lib" / "site-packages"
    site.mkdir(parents=True)
    git = ["git", "-c", "user.email=a@b", "-c", "user.name=a"]
    subprocess.run([*git, "init", "-q", str(project)], check=True)
    (project / "f").write_text("x")
    subprocess.run([*git, "-C", str(project), "add", "f"], check=True)
    subprocess.run([*git, "-C", str(project), "commit", "-qm", "x"], check=True)
    monkeypatch.setattr(provenance, "_ROOT", site.resolve())
    assert provenance.git_sha() is None
    monkeypatch.setattr(provenance, "_ROOT", project.resolve())  # atlas's own checkout: its commit
    assert re.fullmatch(r"[0-9a-f]{40}", provenance.git_sha() or "")
    (project / "f").write_text("changed")
    assert (provenance.git_sha() or "").endswith("-dirty")


def test_a_short_sha_keeps_the_dirty_mark():
    from atlas.provenance import short_sha

    assert short_sha("0123456789abcdef" * 2 + "01234567") == "0123456789"
    assert short_sha("0123456789abcdef" * 2 + "01234567-dirty") == "0123456789-dirty"
    assert short_sha("c0ffee") == "c0ffee"
