"""open_remote: a decrypting cache, prefetch(query), then reading with the server gone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imagelake._fs import LakeFS
from imagelake.index import query
from imagelake.replicate import (
    MasterKey,
    RemoteUnavailableError,
    ReplicateError,
    TamperedObjectError,
    WrongKeyError,
    open_remote,
    push,
)
from imagelake.replicate._remote import Remote
from imagelake.store import open_stack


@pytest.fixture
def own_server(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A moto server of this test alone, so the test can stop it."""
    moto_cls = type(request.getfixturevalue("moto_s3"))
    server = moto_cls()
    yield server
    try:
        server.stop()
    except Exception:  # already stopped by the test
        pass


def test_prefetch_query_then_read_offline(
    source_lake: Path, own_server: Any, key: MasterKey, tmp_path: Path
) -> None:
    url = f"s3://{own_server.new_bucket()}/offsite"
    # one attempt per request: the offline read at the end fails fast instead of retrying
    opts = {**own_server.options(), "config_kwargs": {"retries": {"max_attempts": 1}}}
    push(source_lake, url, key=key, storage_options=opts)

    rl = open_remote(url, key=key, cache_dir=tmp_path / "cache", storage_options=opts)
    assert rl.files() and not any((tmp_path / "cache").iterdir())  # nothing fetched yet
    ct = rl.query({"modality": "CT"})
    assert len(ct) == 1
    wanted = rl.prefetch(query={"modality": "CT"})
    ct_store = ct["stores"][0][0]
    assert wanted and all(p.startswith(ct_store + "/") for p in wanted)
    mr_store = rl.query({"modality": "MR"})["stores"][0][0]
    assert not (tmp_path / "cache" / mr_store).exists()  # only what the query needs

    expected = open_stack(str(source_lake / ct_store)).image.values

    own_server.stop()  # no network from here on
    ds = rl.open_stack(ct_store)
    np.testing.assert_array_equal(ds.image.values, expected)
    # the cached index answers queries through the ordinary reader too
    assert list(
        query(LakeFS(tmp_path / "cache"), {"modality": "CT"})["series_instance_uid"]
    ) == list(ct["series_instance_uid"])
    # what was not prefetched cannot be read offline
    with pytest.raises(RemoteUnavailableError):
        rl.open_stack(mr_store)


def test_cache_fetch_checks_objects(
    source_lake: Path, s3_url: str, s3_opts: dict[str, Any], key: MasterKey, tmp_path: Path
) -> None:
    push(source_lake, s3_url, key=key, storage_options=s3_opts)
    with pytest.raises(WrongKeyError):
        open_remote(
            s3_url, key=MasterKey.generate("x"), cache_dir=tmp_path / "c0", storage_options=s3_opts
        )
    rl = open_remote(s3_url, key=key, cache_dir=tmp_path / "c1", storage_options=s3_opts)
    rel = "catalog.yaml"
    assert rl.fetch(rel).read_bytes() == (source_lake / rel).read_bytes()

    # a cached file edited locally is fetched again
    (tmp_path / "c1" / rel).write_text("edited")
    assert not rl.is_cached(rel)
    assert rl.fetch(rel).read_bytes() == (source_lake / rel).read_bytes()

    remote = Remote(s3_url, s3_opts)
    remote.open(key)
    name = remote.lfs.path(remote.object_name("imagelake.json"))
    data = bytearray(remote.lfs.fs.cat_file(name))
    data[-1] ^= 1
    remote.lfs.fs.pipe_file(name, bytes(data))
    with pytest.raises(TamperedObjectError) as err:
        rl.fetch("imagelake.json")
    assert err.value.path == "imagelake.json"
    assert not (tmp_path / "c1" / "imagelake.json").exists()
    with pytest.raises(ReplicateError, match="no file"):
        rl.fetch("no/such/file")
