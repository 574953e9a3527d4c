"""Read back what W&B wrote offline: the ``run-*.wandb`` file is a LevelDB-style record log
(32 KiB blocks; each record a CRC, a length, a type and a protobuf ``Record``). wandb 0.31 ships
no Python reader of its own (its core is a Go binary), so the test parses the log itself."""

import struct
from pathlib import Path

BLOCK = 32768
HEADER = 7  # b":W&B", magic 0xBEE1, version


def records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, chunks, pending = HEADER, [], b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:  # zero padding at a block's end
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            chunks.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            chunks.append(pending + chunk)
    out = []
    for chunk in chunks:
        record = pb.Record()
        record.ParseFromString(chunk)
        out.append(record)
    return out


def history_and_config(path: Path) -> tuple[list[dict], dict, list[str]]:
    """(history rows as {key: json text}, config {key: json text}, run tags) of one run file."""
    history, config, tags = [], {}, []
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append({item.key or "/".join(item.nested_key): item.value_json for item in record.history.item})
        elif kind == "config":
            config.update({item.key or "/".join(item.nested_key): item.value_json for item in record.config.update})
        elif kind == "run":
            tags = list(record.run.tags)
    return history, config, tags
