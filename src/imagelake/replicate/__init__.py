"""Encrypted offsite copies of a lake: push, pull, key rotation, and read-through access.

Every file of a lake is sealed client-side before it leaves the site: a fresh AES-256-GCM
data key per object, the object's lake path bound as associated data, large files in
independently sealed 8 MiB segments, and the data key wrapped by a named master key
(:class:`MasterKey`). A sealed manifest lists every object's plaintext and ciphertext
sha256; it is written last, after a journal that lets a killed push resume.

>>> key = MasterKey.from_file("site.key")                              # doctest: +SKIP
>>> push("lake", "s3://offsite/site-a", key=key)                        # doctest: +SKIP
>>> verify_remote("s3://offsite/site-a", key=key, decrypt=True)         # doctest: +SKIP
>>> pull("s3://offsite/site-a", "restored", key=key)                    # doctest: +SKIP
>>> rotate("s3://offsite/site-a", key, MasterKey.generate("site-2027"))  # doctest: +SKIP
>>> rl = open_remote("s3://offsite/site-a", key=key, cache_dir="cache")  # doctest: +SKIP
>>> rl.prefetch(query={"modality": "CT"})                               # doctest: +SKIP
>>> ds = rl.open_stack(rl.query({"modality": "CT"})["stores"][0][0])    # doctest: +SKIP

Layer L3. Needs the ``crypto`` extra (``cryptography``), and ``s3`` (``s3fs``) for S3 URLs.
"""

from __future__ import annotations

from imagelake.replicate._cache import RemoteLake, open_remote
from imagelake.replicate._envelope import FORMAT_VERSION
from imagelake.replicate._errors import (
    RemoteNotFoundError,
    RemoteUnavailableError,
    ReplicateError,
    TamperedObjectError,
    WrongKeyError,
)
from imagelake.replicate._keys import MasterKey
from imagelake.replicate._transfer import (
    Progress,
    PullReport,
    PushReport,
    RotateReport,
    VerifyReport,
    lake_files,
    pull,
    push,
    rotate,
    verify_remote,
)

__all__ = [
    "FORMAT_VERSION",
    "MasterKey",
    "Progress",
    "PullReport",
    "PushReport",
    "RemoteLake",
    "RemoteNotFoundError",
    "RemoteUnavailableError",
    "ReplicateError",
    "RotateReport",
    "TamperedObjectError",
    "VerifyReport",
    "WrongKeyError",
    "lake_files",
    "open_remote",
    "pull",
    "push",
    "rotate",
    "verify_remote",
]
