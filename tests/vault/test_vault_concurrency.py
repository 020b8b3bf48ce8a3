"""Two processes putting into one vault at once neither lose nor corrupt records."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from imagelake.vault import Vault, VaultKey, create_key_file

N = 40

WRITER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from imagelake.vault import Vault, VaultKey, VaultConflictError

    vault_dir, key_file, go, me, n = sys.argv[1:6]
    n = int(n)
    vault = Vault.open(vault_dir, VaultKey.from_file(key_file))
    while not Path(go).exists():
        time.sleep(0.005)
    result = {"own": 0, "shared_new": 0, "race_won": [], "race_lost": []}
    for i in range(n):
        # the same pseudonyms from both writers, in the same order, so they collide
        if vault.put(f"SHARED-{i:03d}", {"PatientID": f"SHARED-ID-{i}"}):
            result["shared_new"] += 1
        try:
            vault.put(f"RACE-{i:03d}", {"PatientID": f"RACE-ID-{i}-writer-{me}"})
            result["race_won"].append(i)
        except VaultConflictError:
            result["race_lost"].append(i)
        vault.put(f"OWN-{me}-{i:03d}", {"PatientID": f"OWN-ID-{me}-{i}"})
        result["own"] += 1
    print(json.dumps(result))
    """
)


def test_concurrent_puts_from_two_processes(tmp_path: Path) -> None:
    key_file = tmp_path / "vault.key"
    key = create_key_file(key_file)
    Vault.create(tmp_path / "vault", key, permitted_users=["alice"])
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                str(tmp_path / "vault"),
                str(key_file),
                str(go),
                me,
                str(N),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for me in ("a", "b")
    ]
    time.sleep(1.0)  # let both import and open the vault
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))

    vault = Vault.open(tmp_path / "vault", VaultKey.from_file(key_file))
    report = vault.verify()
    assert report.ok, report.problems
    expected = {f"SHARED-{i:03d}" for i in range(N)} | {f"RACE-{i:03d}" for i in range(N)}
    expected |= {f"OWN-{me}-{i:03d}" for me in "ab" for i in range(N)}
    assert set(vault.pseudonyms()) == expected and report.records == len(expected)
    # every shared pseudonym was written exactly once, by one of the two
    assert sum(r["shared_new"] for r in results) == N
    # every contested pseudonym went to exactly one writer, and it holds that writer's identity
    for i in range(N):
        winners = [me for me, r in zip("ab", results, strict=True) if i in r["race_won"]]
        assert len(winners) == 1, f"RACE-{i:03d} won by {winners}"
        got = vault.lookup(f"RACE-{i:03d}", user="alice").identity
        assert got == {"PatientID": f"RACE-ID-{i}-writer-{winners[0]}"}
    # nothing half-written or temporary is left
    leftovers = [p.name for p in (tmp_path / "vault" / "records").iterdir() if p.suffix != ".rec"]
    assert leftovers == []
