"""A compile-cache identity for every sub-model of the composite.

vLLM keys a compiled module by the config it was *constructed under*, not by
the config passed to it: ``TorchCompileWithNoGuardsWrapper.__init__``
(vllm/compilation/wrapper.py:97-98) overwrites the module's ``vllm_config``
with ``get_current_vllm_config()``, and the AOT artifact's path is
``VLLM_CACHE_ROOT/torch_compile_cache/torch_aot_compile/<sha256 of
[env factors, self.vllm_config.compute_hash(), vllm version + forward's
qualname + first line, (torch/inductor factors)]>/rank_<r>_<dp>/model``
(vllm/compilation/decorators.py:559-585). Built inside the composite, every
sub-model sees the engine's config, and every Llama-like sub-model has the
same ``forward``: all of them get one path, each overwrites the artifact the
previous one saved, and each later one tries to load an artifact compiled for
another shape. On CUDA (``CompilationMode.VLLM_COMPILE``) the same holds for
``VllmBackend``'s cache: one ``compilation_config.cache_dir`` and one local
dir ``rank_<r>_<dp>/backbone`` (``prefix or model_tag``,
vllm/compilation/backends.py:849,1065-1086) for all of them.

``sub_model_scope`` builds a sub-model under its own config and model tag:

- ``set_current_vllm_config(sub_config)``: the key now covers the sub-model's
  own ``model_config`` (``ModelConfig.compute_hash`` hashes the whole
  ``hf_config`` JSON: architecture, layers, hidden size, heads, vocabulary;
  plus dtype, quantization, max_model_len, the base's path) next to the engine's
  shared configs and vLLM's version. Weight values are not in it and need not
  be: the compiled graph takes the parameters as inputs (it is called with the
  module as ``self``), so one artifact serves any weights of those shapes.
- ``set_model_tag(<prefix>-<config hash>)``: ``VllmBackend`` (CUDA) caches
  under ``rank_<r>_<dp>/<that tag>``, and log lines say ``[arm_a-…]`` instead
  of ``[backbone]`` for every sub-model.

Sub-models with identical configs (a merged LoRA ARM has its base's config)
thus get one key and share one artifact: the first compiles and saves it, the
others load it, in the same start and in every later one. That is only sound
because vLLM (torch >= 2.11) passes attention layer names to its custom ops as
a hoisted ``LayerName`` opaque value, a graph *input* read from the module at
run time, not a constant of the graph (vllm/utils/torch_utils.py:1001-1037).
Where names would be constants (``VLLM_USE_LAYERNAME=0`` or an older torch),
the prefix joins the key, so each sub-model gets its own artifact.

``install_aot_reload_fix`` fixes vLLM's AOT reload on CPU, see there.
"""

from __future__ import annotations

import contextlib
import copy
import logging

logger = logging.getLogger(__name__)

# hf_config attributes that describe the composite, not the sub-model's graph.
COMPOSITE_KEYS = ("genarm_arms", "genarm_base_architectures")
# Set on a sub-model's hf_config copy when its graph would bake in layer names.
IDENTITY_KEY = "genarm_compile_identity"


def layer_names_are_graph_inputs() -> bool:
    """Whether vLLM passes layer names to its ops as hoisted opaque inputs."""
    try:
        from vllm.utils.torch_utils import _USE_LAYERNAME
    except ImportError:  # another vLLM: assume the worst
        return False
    return bool(_USE_LAYERNAME)


def sub_model_hf_config(hf_config, prefix: str):
    """The hf_config a sub-model is built and keyed with.

    A copy without the composite's own keys (so the base is keyed by the base
    alone, as a same-shaped ARM is), plus the prefix where the compiled graph
    would carry the layer names.
    """
    own = copy.copy(hf_config)
    for key in COMPOSITE_KEYS:
        if key in own.__dict__:
            delattr(own, key)
    if not layer_names_are_graph_inputs():
        setattr(own, IDENTITY_KEY, prefix)
    return own


@contextlib.contextmanager
def sub_model_scope(sub_config, prefix: str):
    """Build a sub-model inside this block so it is compiled and cached as itself."""
    from vllm.compilation.backends import model_tag, set_model_tag
    from vllm.config import set_current_vllm_config

    name = compile_tag(sub_config, prefix)
    tag = contextlib.nullcontext() if model_tag == name else set_model_tag(name)
    with set_current_vllm_config(sub_config), tag:
        yield


def compile_tag(sub_config, prefix: str) -> str:
    """``<prefix>-<config hash>``: VllmBackend's cache folder and the log tag.

    The hash matters on CUDA: ``VllmBackend`` computes ``compilation_config.cache_dir``
    once, from the first sub-model it compiles, and only the tag separates the
    others' folders under it; with the sub-model's own config hash in the tag, a
    changed ARM gets a new folder rather than the old ARM's graph handles.
    """
    return f"{prefix}-{sub_config.compute_hash()[:10]}"


_FIX_MARK = "_genarm_no_finalize_needed"


def install_aot_reload_fix() -> bool:
    """Let vLLM reload AOT artifacts compiled by the stock inductor backend (CPU).

    On CPU vLLM compiles with ``CompilationMode.DYNAMO_TRACE_ONCE`` and the
    plain ``"inductor"`` backend (vllm/platforms/cpu.py:356-367), so torch wraps
    the artifact as ``BundledAOTAutogradSerializableCallable``
    (torch/_dynamo/aot_compile.py:400-415). vLLM's loader
    (vllm/compilation/decorators.py:315) calls
    ``compiled_fn.finalize_loading(vllm_config)``, a method only vLLM's own
    ``VllmSerializableFunction`` has; the bundled callable forwards unknown
    attributes to the plain function it wraps, hence ``'function' object has no
    attribute 'finalize_loading'``, and every load falls back to compiling.
    That artifact is complete once deserialized (AOTAutograd's bundled cache
    entry), so finalizing it is a no-op, which is what this adds. Idempotent;
    returns whether it changed anything.
    """
    try:
        from torch._dynamo.aot_compile_types import BundledAOTAutogradSerializableCallable
    except ImportError:  # torch without AOT compile: vLLM does not take that path
        return False
    cls = BundledAOTAutogradSerializableCallable
    if "finalize_loading" in cls.__dict__:
        return False

    def finalize_loading(self, vllm_config) -> None:  # noqa: ARG001
        """Nothing to do: deserializing loaded the whole compiled function."""

    setattr(finalize_loading, _FIX_MARK, True)
    cls.finalize_loading = finalize_loading
    return True
