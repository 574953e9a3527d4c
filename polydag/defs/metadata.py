"""Asset metadata that never crashes serialization.

Core results can carry numpy or torch scalars (the researchers' evaluation died on
``float32 is not JSON serializable``). Every metadata dict goes through ``to_jsonable`` first;
lists and dicts become JSON metadata, None becomes an explicit null.
"""

from typing import Any, Mapping

from dagster import DataVersion, MetadataValue, Output

from polydag.core.ops.hashing import frame_sha256
from polydag.core.ops.jsonable import to_jsonable


def jsonable_metadata(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, MetadataValue):
            out[key] = value
            continue
        plain = to_jsonable(value)
        if plain is None:
            out[key] = MetadataValue.null()
        elif isinstance(plain, (list, dict)):
            out[key] = MetadataValue.json(plain)
        else:
            out[key] = plain
    return out


def table_output(table, metadata: Mapping[str, Any]) -> Output:
    """``Output(table)`` whose data version is the table's content hash, so a re-run that
    produces the same rows leaves everything downstream fresh."""
    return Output(table, data_version=DataVersion(frame_sha256(table)), metadata=dict(metadata))
