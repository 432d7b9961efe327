"""LoRA ARMs: merge a PEFT adapter into its base once, cache the result.

vLLM's sub-models load plain checkpoints, so an ``adapter:`` ARM is served as a
merged checkpoint under ``<cache_dir>/merged-arms/<hash>``. The hash covers the
adapter's files and the identity of its base (config and weight file names and
sizes), so a new adapter or base gets a new folder and an unchanged pair is
never merged twice. The merged folder carries the base's ``config.json``
verbatim (see ``merged_adapter_path``). The merged copy costs one more set of weights: fine for
the small ARMs this targets; serving the adapter on the base's own weights
would avoid it.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)


# Bumped when the merged folder's layout changes, so old merges are not reused.
MERGE_FORMAT = b"merge-v3: base config.json verbatim, base dtype"


def _fingerprint(adapter: Path, base: Path) -> str:
    digest = hashlib.sha256(MERGE_FORMAT)
    for path in sorted(p for p in adapter.rglob("*") if p.is_file()):
        digest.update(path.relative_to(adapter).as_posix().encode())
        digest.update(path.read_bytes())
    digest.update(b"\0base\0")
    for path in sorted(p for p in base.iterdir() if p.is_file()):
        digest.update(path.name.encode())
        if path.suffix == ".json":
            digest.update(path.read_bytes())
        else:
            digest.update(str(path.stat().st_size).encode())
    return digest.hexdigest()[:16]


def _stored_dtype(base: Path):
    """The dtype the base's config.json names (float32 if none)."""
    import json

    import torch

    config = json.loads((base / "config.json").read_text())
    name = config.get("dtype") or config.get("torch_dtype") or "float32"
    dtype = getattr(torch, str(name), None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


def merged_adapter_path(adapter: str, base: str, cache_dir: str) -> Path:
    """Folder of ``adapter`` merged into ``base``, built on first use."""
    adapter_dir, base_dir = Path(adapter), Path(base)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"no PEFT adapter (adapter_config.json) in {adapter_dir}")
    out = Path(cache_dir).expanduser() / "merged-arms" / _fingerprint(adapter_dir, base_dir)
    if (out / "config.json").is_file():
        return out
    logger.info("Merging LoRA adapter %s into %s -> %s (once)", adapter_dir, base_dir, out)
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Merged in float32, stored in the base's own dtype: what its config says, half
    # the bytes of float32 for a bf16 base, and no dtype conversion at every load.
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.to(_stored_dtype(base_dir)).save_pretrained(tmp)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(tmp)
    # The base's architecture by construction, so the base's config byte for byte
    # (save_pretrained rewrites it: drops keys kept for older readers, such as the
    # demo's top-level rope_theta). vLLM then keys the merged ARM's compiled graph
    # as the base's, and one compiled artifact serves both (genarm.engine.compile_cache).
    shutil.copyfile(base_dir / "config.json", tmp / "config.json")
    tmp.rename(out)  # atomic: a crashed merge never looks finished
    return out
