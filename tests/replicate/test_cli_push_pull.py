"""`imagelake push` / `pull` from the command line: audited on both sides, byte-identical."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from replicate_testkit import tree_sha

from imagelake.lake import open_lake
from imagelake.replicate import MasterKey


def test_push_and_pull_commands(tmp_path: Path, source_lake: Path, imagelake_exe: str) -> None:
    lake_dir = tmp_path / "lake"
    shutil.copytree(source_lake, lake_dir)
    key_file = tmp_path / "keys" / "site.key"
    key_file.parent.mkdir()
    MasterKey.generate("site-2026").to_file(key_file)
    remote = tmp_path / "offsite"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([imagelake_exe, *args], capture_output=True, text=True, check=False)

    pushed = run(
        "push", str(remote), "--lake", str(lake_dir), "--key-file", str(key_file), "--no-progress"
    )
    assert pushed.returncode == 0, pushed.stderr
    assert "uploaded" in pushed.stdout and "verified" in pushed.stdout
    again = run(
        "push", str(remote), "--lake", str(lake_dir), "--key-file", str(key_file), "--no-progress"
    )
    assert again.returncode == 0, again.stderr
    # only what changed since: the audit log and its HEAD (the first push's own record)
    uploaded = int(re.search(r"(\d+) uploaded", again.stdout).group(1))  # type: ignore[union-attr]
    assert uploaded <= 2
    restored = tmp_path / "restored"
    pulled = run("pull", str(remote), str(restored), "--key-file", str(key_file), "--no-progress")
    assert pulled.returncode == 0, pulled.stderr
    src, dst = tree_sha(lake_dir), tree_sha(restored)
    same = {k for k in src if not k.startswith(("audit/", "registry.sqlite", ".lock"))}
    assert {k: dst.get(k) for k in same} == {k: src[k] for k in same}
    assert [e.action for e in open_lake(lake_dir).audit.entries(action="push")] == ["push"] * 2
    assert [e.action for e in open_lake(restored).audit.entries(action="pull")] == ["pull"]
    wrong = tmp_path / "keys" / "other.key"
    MasterKey.generate("other").to_file(wrong)
    refused = run(
        "pull", str(remote), str(tmp_path / "r2"), "--key-file", str(wrong), "--no-progress"
    )
    assert refused.returncode == 2 and refused.stderr.startswith("error:")
    assert "Traceback" not in refused.stderr
