"""Tests of the hash-chained audit log: appending, verifying, tamper detection, concurrency."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import multiprocessing
import threading
from pathlib import Path

import pytest

from imagelake._fs import LakeFS
from imagelake.audit import GENESIS, AuditLog, canonical_json
from imagelake.errors import AuditChainError, ConfigError


@pytest.fixture
def lake(tmp_path: Path) -> LakeFS:
    return LakeFS(tmp_path / "lake")


def _fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.record("ingest", user="alice", objects=[f"series/{i}"], details={"i": i})


def _log_path(lake: LakeFS) -> Path:
    return Path(lake.path("audit/log.jsonl"))


def _lines(lake: LakeFS) -> list[str]:
    return _log_path(lake).read_text(encoding="utf-8").splitlines(keepends=True)


def _write_lines(lake: LakeFS, lines: list[str]) -> None:
    _log_path(lake).write_text("".join(lines), encoding="utf-8")


def _reseal(line: str, key: bytes | None = None, **changes: object) -> str:
    """The line with ``changes`` applied and its hash recomputed, as a forger would."""
    data = json.loads(line)
    data.update(changes)
    data.pop("hash")
    text = canonical_json(data).encode()
    if key is None:
        data["hash"] = hashlib.sha256(text).hexdigest()
    else:
        data["hash"] = hmac.new(key, text, hashlib.sha256).hexdigest()
    return canonical_json(data) + "\n"


def _broken_line(log: AuditLog) -> tuple[int | None, str]:
    report = log.verify(raise_error=False)
    assert not report.ok
    assert report.problem is not None
    with pytest.raises(AuditChainError) as err:
        log.verify()
    assert report.problem in str(err.value)
    return report.line, report.problem


# -- appending and reading ------------------------------------------------------------------


def test_record_chains_entries_and_verify_passes(lake: LakeFS) -> None:
    log = AuditLog(lake)
    first = log.record("ingest", user="alice", objects=["series/1.2.3"], details={"n": 3})
    second = log.record("export", user="bob", details={"to": "s3://x", "note": "Ünïcode"})

    assert (first.seq, second.seq) == (1, 2)
    assert first.prev == GENESIS
    assert second.prev == first.hash
    assert first.time.tzinfo is not None
    assert first.objects == ("series/1.2.3",)

    lines = _lines(lake)
    assert len(lines) == 2
    stored = json.loads(lines[1])
    assert set(stored) == {"seq", "time", "user", "action", "objects", "details", "prev", "hash"}
    assert stored["details"]["note"] == "Ünïcode"
    assert stored["time"].endswith("Z")
    body = {k: v for k, v in stored.items() if k != "hash"}
    assert stored["hash"] == hashlib.sha256(canonical_json(body).encode()).hexdigest()

    anchor = json.loads(Path(lake.path("audit/HEAD")).read_text())
    assert anchor == {"seq": 2, "hash": second.hash}

    report = log.verify()
    assert report.ok
    assert report.entries == 2
    assert report.head == second.hash
    assert report.anchored_seq == 2


def test_empty_log_verifies(lake: LakeFS) -> None:
    report = AuditLog(lake).verify()
    assert report.ok
    assert (report.entries, report.head, report.anchored_seq) == (0, GENESIS, None)


def test_reading_a_lake_without_a_log_creates_nothing(lake: LakeFS) -> None:
    log = AuditLog(lake)
    assert log.verify().entries == 0
    assert list(log.entries()) == []
    assert not Path(lake.root).exists()


def test_seq_continues_across_instances(lake: LakeFS) -> None:
    _fill(AuditLog(lake), 3)
    entry = AuditLog(lake).record("anonymize", user="carol")
    assert entry.seq == 4
    assert AuditLog(lake).verify().entries == 4


def test_cached_head_is_revalidated_after_another_writer_appends(lake: LakeFS) -> None:
    a, b = AuditLog(lake), AuditLog(lake)
    a.record("one", user="u")
    b.record("two", user="u")  # a's cached head is now stale
    third = a.record("three", user="u")
    assert third.seq == 3
    assert a.verify().entries == 3


def test_tail_is_found_past_one_read_block(lake: LakeFS) -> None:
    log = AuditLog(lake)
    log.record("big", user="u", details={"blob": "x" * 10_000})
    log.record("big", user="u", details={"blob": "y" * 10_000})
    assert AuditLog(lake).record("small", user="u").seq == 3
    assert log.verify().entries == 3


def test_entries_filters_by_action_and_time(lake: LakeFS) -> None:
    log = AuditLog(lake)
    log.record("ingest", user="u")
    cut = dt.datetime.now(dt.UTC)
    log.record("export", user="u")
    log.record("ingest", user="u")

    assert [e.seq for e in log.entries()] == [1, 2, 3]
    assert [e.seq for e in log.entries(action="ingest")] == [1, 3]
    assert [e.seq for e in log.entries(since=cut)] == [2, 3]
    assert [e.seq for e in log.entries(action="ingest", since=cut.isoformat())] == [3]
    naive = cut.replace(tzinfo=None)  # naive means UTC
    assert [e.seq for e in log.entries(since=naive)] == [2, 3]


def test_record_rejects_bad_arguments(lake: LakeFS) -> None:
    log = AuditLog(lake)
    with pytest.raises(TypeError, match="one string"):
        log.record("x", user="u", objects="series/1")
    with pytest.raises(TypeError, match="JSON"):
        log.record("x", user="u", details={"when": dt.datetime.now()})
    with pytest.raises(ValueError, match="user"):
        log.record("x", user="")
    assert not _log_path(lake).exists()


# -- tamper detection -------------------------------------------------------------------------


def test_edited_field_is_reported_at_its_line(lake: LakeFS) -> None:
    log = AuditLog(lake)
    _fill(log, 5)
    lines = _lines(lake)
    lines[2] = lines[2].replace('"user":"alice"', '"user":"mallory"')
    _write_lines(lake, lines)

    line, problem = _broken_line(log)
    assert line == 3
    assert "hash mismatch" in problem


def test_edited_line_with_recomputed_hash_breaks_the_next_link(lake: LakeFS) -> None:
    log = AuditLog(lake)
    _fill(log, 5)
    lines = _lines(lake)
    lines[1] = _reseal(lines[1], user="mallory")
    _write_lines(lake, lines)

    line, problem = _broken_line(log)
    assert line == 3
    assert "prev" in problem


def test_deleted_middle_line_is_reported_as_removed(lake: LakeFS) -> None:
    log = AuditLog(lake)
    _fill(log, 5)
    lines = _lines(lake)
    del lines[2]
    _write_lines(lake, lines)

    line, problem = _broken_line(log)
    assert line == 3
    assert "removed" in problem


def test_swapped_lines_are_reported_as_reordered(lake: LakeFS) -> None:
    log = AuditLog(lake)
    _fill(log, 5)
    lines = _lines(lake)
    lines[1], lines[3] = lines[3], lines[1]
    _write_lines(lake, lines)

    line, problem = _broken_line(log)
    assert line == 2
    assert "reordered" in problem
    assert "line 4" in problem


def test_removed_last_line_is_caught_by_the_anchor(lake: LakeFS) -> None:
    log = AuditLog(lake)
    _fill(log, 5)
    _write_lines(lake, _lines(lake)[:-1])

    line, problem = _broken_line(log)
    assert line == 5
    assert "removed from the end" in problem
    # and the writer refuses to append over the gap, which would hide it
    with pytest.raises(AuditChainError, match="removed from the end"):
        AuditLog(lake).record("x", user="u")


def test_last_line_cut_in_the_middle_is_reported(lake: LakeFS) -> None:
    log = AuditLog(lake)
    _fill(log, 4)
    lines = _lines(lake)
    lines[-1] = lines[-1][:30]
    _write_lines(lake, lines)

    line, problem = _broken_line(log)
    assert line == 4
    assert "incomplete last line" in problem
    # the anchor says entry 4 was committed: the cut is not a crash artefact
    with pytest.raises(AuditChainError, match="removed from the end"):
        AuditLog(lake).record("x", user="u")


def test_forged_line_with_wrong_prev_is_reported(lake: LakeFS) -> None:
    log = AuditLog(lake)
    _fill(log, 3)
    lines = _lines(lake)
    forged = _reseal(lines[-1], seq=4, prev="f" * 64, action="delete")
    _write_lines(lake, [*lines, forged])

    line, problem = _broken_line(log)
    assert line == 4
    assert "prev" in problem


def test_malformed_json_line_is_reported(lake: LakeFS) -> None:
    log = AuditLog(lake)
    _fill(log, 3)
    lines = _lines(lake)
    lines[1] = "{not json\n"
    _write_lines(lake, lines)

    line, problem = _broken_line(log)
    assert line == 2
    assert "not a valid entry" in problem


def test_extra_field_is_reported(lake: LakeFS) -> None:
    log = AuditLog(lake)
    _fill(log, 2)
    lines = _lines(lake)
    data = json.loads(lines[0])
    data["note"] = "added"
    lines[0] = canonical_json(data) + "\n"
    _write_lines(lake, lines)

    line, problem = _broken_line(log)
    assert line == 1
    assert "extra ['note']" in problem


def test_missing_anchor_is_reported(lake: LakeFS) -> None:
    log = AuditLog(lake)
    _fill(log, 2)
    Path(lake.path("audit/HEAD")).unlink()

    line, problem = _broken_line(log)
    assert line is None
    assert "HEAD is missing" in problem


def test_deleted_log_with_anchor_refuses_a_new_chain(lake: LakeFS) -> None:
    log = AuditLog(lake)
    _fill(log, 2)
    _log_path(lake).unlink()
    with pytest.raises(AuditChainError, match="deleted or truncated"):
        AuditLog(lake).record("x", user="u")


# -- crashes --------------------------------------------------------------------------------


def test_crash_before_the_anchor_update_is_tolerated(lake: LakeFS) -> None:
    log = AuditLog(lake)
    _fill(log, 3)
    anchor = Path(lake.path("audit/HEAD"))
    before = anchor.read_text()
    log.record("x", user="u")
    anchor.write_text(before)  # as if the process died between append and anchor

    report = log.verify()
    assert report.ok
    assert (report.entries, report.anchored_seq) == (4, 3)
    assert AuditLog(lake).record("y", user="u").seq == 5
    assert log.verify().anchored_seq == 5


def test_torn_fragment_from_a_crash_is_moved_aside(lake: LakeFS) -> None:
    log = AuditLog(lake)
    _fill(log, 3)
    with _log_path(lake).open("a", encoding="utf-8") as fh:
        fh.write('{"action":"ing')  # a write cut short; the anchor still says 3

    assert log.verify(raise_error=False).line == 4
    assert [e.seq for e in log.entries()] == [1, 2, 3]  # the fragment is not an entry
    entry = AuditLog(lake).record("next", user="u")
    assert entry.seq == 4
    assert log.verify().entries == 4
    torn = json.loads(Path(lake.path("audit/log.jsonl.torn")).read_text())
    assert torn["fragment"] == '{"action":"ing'


def test_complete_entry_missing_only_its_newline_is_kept(lake: LakeFS) -> None:
    log = AuditLog(lake)
    _fill(log, 2)
    anchor = Path(lake.path("audit/HEAD"))
    before = anchor.read_text()
    log.record("x", user="u")
    anchor.write_text(before)
    text = _log_path(lake).read_bytes()
    _log_path(lake).write_bytes(text[:-1])  # the newline never reached the disk

    assert AuditLog(lake).record("y", user="u").seq == 4
    assert [e.action for e in log.entries()][-2:] == ["x", "y"]
    assert log.verify().entries == 4


# -- HMAC mode ------------------------------------------------------------------------------


def test_keyed_log_rejects_a_chain_recomputed_without_the_key(lake: LakeFS) -> None:
    key = b"k" * 32
    log = AuditLog(lake, key=key)
    _fill(log, 4)
    assert log.verify().entries == 4
    assert log.keyed

    # rewrite every line and the anchor with plain sha256, as an attacker without the key
    lines, prev, out = _lines(lake), GENESIS, []
    for line in lines:
        forged = _reseal(line, prev=prev, user="mallory")
        prev = json.loads(forged)["hash"]
        out.append(forged)
    _write_lines(lake, out)
    Path(lake.path("audit/HEAD")).write_text(canonical_json({"seq": 4, "hash": prev}))

    assert AuditLog(lake).verify().ok  # the forgery is consistent as plain sha256 ...
    where, problem = _broken_line(log)  # ... but not under the key
    assert where == 1
    assert "hash mismatch" in problem


def test_keyed_log_accepts_lines_resealed_with_the_key_and_detects_wrong_key(
    lake: LakeFS,
) -> None:
    key = b"secret-key-of-enough-length-1234"
    _fill(AuditLog(lake, key=key), 2)
    assert not AuditLog(lake, key=b"another key").verify(raise_error=False).ok
    assert not AuditLog(lake).verify(raise_error=False).ok
    entry = json.loads(_lines(lake)[0])
    body = {k: v for k, v in entry.items() if k != "hash"}
    assert entry["hash"] == hmac.new(key, canonical_json(body).encode(), "sha256").hexdigest()


def test_from_env_reads_the_key_and_repr_hides_it(lake: LakeFS) -> None:
    log = AuditLog.from_env(lake, environ={"IMAGELAKE_AUDIT_KEY": "topsecretvalue"})
    assert log.keyed
    assert "topsecretvalue" not in repr(log)
    assert not AuditLog.from_env(lake, environ={}).keyed
    with pytest.raises(ConfigError):
        AuditLog(lake, key=b"")


# -- concurrency ----------------------------------------------------------------------------


def _append_many(root: str, worker: int, n: int) -> None:
    log = AuditLog(LakeFS(root))
    for i in range(n):
        log.record("ingest", user=f"worker{worker}", details={"i": i})


def test_four_processes_append_200_entries_without_breaking_the_chain(lake: LakeFS) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(lake.root, w, 50)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]

    log = AuditLog(lake)
    report = log.verify()
    assert report.entries == 200
    entries = list(log.entries())
    assert [e.seq for e in entries] == list(range(1, 201))
    for w in range(4):
        mine = [e.details["i"] for e in entries if e.user == f"worker{w}"]
        assert mine == list(range(50))


def test_threads_share_one_log_and_separate_logs(lake: LakeFS) -> None:
    shared = AuditLog(lake)

    def work(log: AuditLog) -> None:
        for _ in range(25):
            log.record("t", user="u")

    threads = [threading.Thread(target=work, args=(shared,)) for _ in range(3)]
    threads += [threading.Thread(target=work, args=(AuditLog(lake),)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert shared.verify().entries == 150
