"""Reads the records of an offline W&B run file (`run-*.wandb`): a W&B header, then
LevelDB-log-framed protobuf `Record`s in 32 KiB blocks. wandb 0.31 ships no Python reader."""

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768
HEADER = 7  # ":W&B", magic, version; and each record's crc32, length, type
FULL, LAST = 1, 4


def records(path: Path):
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, buffer = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER]) if left >= HEADER else (0, 0, 0)
        if kind == 0:  # block padding
            pos += left
            continue
        buffer += data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(buffer)
            buffer = b""
            yield record


def history_and_summary(path: Path) -> tuple[list[dict], dict]:
    """Every logged history row, and the final summary."""
    history, summary = [], {}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.summary.update})
    return history, summary


def logged_table(path: Path, key: str) -> tuple[list[str], list[list]]:
    """The columns and rows of the table logged as `key`, read from the run's table artifact (what
    the W&B UI shows: the run's own media/table file holds only placeholders for media cells); an
    HTML cell comes back as its HTML text. Offline, the artifact's files wait in W&B's staging
    folder (the manifest in the run file gives their local paths) until `wandb sync`."""
    tables = [r.artifact for r in records(path) if r.WhichOneof("record_type") == "artifact" and r.artifact.type == "run_table"]
    for artifact in tables:
        files = {e.path: Path(e.local_path) for e in artifact.manifest.contents}
        if f"{key}.table.json" in files:
            table = json.loads(files[f"{key}.table.json"].read_text())
            html = lambda v: isinstance(v, dict) and v.get("_type") == "html-file"  # noqa: E731
            return table["columns"], [[files[v["path"]].read_text() if html(v) else v for v in row] for row in table["data"]]
    raise AssertionError(f"no table {key!r} logged in {path}")
