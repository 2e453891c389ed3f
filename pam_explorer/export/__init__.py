"""Stage 7, export: a merged model as one zip (safetensors weights + a JSON manifest), loaded back
without executing anything. ``pam_explorer.export.save/load/read_manifest/to_bytes/manifest_of``
and ``FORMAT``/``FORMATS`` are public API (``from pam_explorer import export``)."""
from pam_explorer.export.archive import (
    FORMAT,
    FORMATS,
    MANIFEST,
    WEIGHTS,
    load,
    manifest_of,
    merged_model_bytes,
    read_manifest,
    save,
    to_bytes,
)

__all__ = ["FORMAT", "FORMATS", "MANIFEST", "WEIGHTS", "manifest_of", "to_bytes", "save", "read_manifest",
           "load", "merged_model_bytes"]
