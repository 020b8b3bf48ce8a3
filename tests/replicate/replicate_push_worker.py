"""Run one push in a child process, reporting each finished object on stdout (for the kill test).

Usage: python replicate_push_worker.py '<json: src, url, opts, key_id, key_hex, delay>'
"""

from __future__ import annotations

import json
import sys
import time

from imagelake.replicate import MasterKey, push


def main() -> None:
    args = json.loads(sys.argv[1])
    key = MasterKey(args["key_id"], bytes.fromhex(args["key_hex"]))

    def progress(path: str, done: int, total: int) -> None:
        print(f"DONE {done} {total}", flush=True)
        time.sleep(args["delay"])  # slow enough for the parent to kill us mid-way

    push(
        args["src"],
        args["url"],
        key=key,
        storage_options=args["opts"],
        progress=progress,
        workers=1,
        journal_every=4,
    )
    print("FINISHED", flush=True)


if __name__ == "__main__":
    main()
