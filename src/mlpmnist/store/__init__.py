"""The results store: keys on disk, atomic files, records, weights, the one trust check every
reader goes through (``trust``), failures, locks, and the tidy frame (``load``)."""

from mlpmnist.errors import StoreError
from mlpmnist.store.files import (
    KINDS,
    Reservation,
    atomic_write_bytes,
    atomic_write_text,
    check_folder,
    check_space,
    check_store,
    file_target,
    inside,
    outside,
    path,
    read_json,
    remove,
    remove_stale_temporaries,
    writable_folder,
)
from mlpmnist.store.frame import frame, load
from mlpmnist.store.locks import Claims, owner
from mlpmnist.store.records import (
    clear_failure,
    make_record,
    output_bytes,
    read_failure,
    read_record,
    record_text,
    save_result,
    stored_config,
    write_failure,
)
from mlpmnist.store.trust import find, problem, retire_legacy, stored, trusted
from mlpmnist.store.weights import load_models

__all__ = [
    "KINDS",
    "Claims",
    "Reservation",
    "StoreError",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_folder",
    "check_space",
    "check_store",
    "clear_failure",
    "file_target",
    "find",
    "frame",
    "inside",
    "load",
    "load_models",
    "make_record",
    "output_bytes",
    "outside",
    "owner",
    "path",
    "problem",
    "read_failure",
    "read_json",
    "read_record",
    "record_text",
    "remove",
    "remove_stale_temporaries",
    "retire_legacy",
    "save_result",
    "stored",
    "stored_config",
    "trusted",
    "writable_folder",
    "write_failure",
]
