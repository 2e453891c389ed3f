"""Stage 7, export: a merged model as one zip (safetensors weights + a JSON manifest), loaded back
without executing anything (:mod:`.archive`); the fused model of one task subset as ONNX,
torch.export (.pt2) or safetensors with a JSON manifest (:mod:`.subset`). ``FORMAT``, ``FORMATS``,
``save/load/read_manifest/to_bytes/manifest_of`` and ``SUBSET_FORMAT(S)``, ``save_subset``,
``subset_model_bytes``, ``load_fused`` are public API (``from pam_explorer import export``)."""
from pam_explorer.export.archive import (
    FORMAT,
    FORMATS,
    MANIFEST,
    WEIGHTS,
    check_output,
    load,
    manifest_of,
    read_manifest,
    save,
    to_bytes,
    write_outputs,
)
from pam_explorer.export.subset import (
    MODEL_FORMATS,
    SUBSET_FORMAT,
    SUBSET_FORMATS,
    SUFFIXES,
    check_format,
    load_fused,
    save_subset,
    sidecar,
    subset_bytes_from_archive,
    subset_model_bytes,
)

__all__ = ["FORMAT", "FORMATS", "MANIFEST", "WEIGHTS", "manifest_of", "to_bytes", "save", "read_manifest",
           "load", "check_output", "write_outputs", "MODEL_FORMATS", "SUBSET_FORMAT",
           "SUBSET_FORMATS", "SUFFIXES", "check_format", "load_fused", "save_subset", "sidecar",
           "subset_model_bytes", "subset_bytes_from_archive"]
