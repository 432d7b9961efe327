"""The deployment config: one YAML file, validated at the edge by pydantic.

Unknown keys are rejected (``extra="forbid"``) and every error names the path of
the offending key, e.g. ``arms.1.max_weight``.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ARM_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$"


class ConfigError(ValueError):
    """A deployment config that cannot be served; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseModelConfig(_Strict):
    """The frozen base LLM that the ARMs steer."""

    model: str = Field(description="HF model folder of the base LLM.")
    quantization: Literal["gptq", "awq"] | None = Field(
        default=None,
        description="vLLM quantization of the base only (CUDA); ARMs stay unquantized.",
    )
    tokenizer: str | None = Field(
        default=None, description="Tokenizer folder; default: the model's."
    )


class ArmConfig(_Strict):
    """One autoregressive reward model: a full model folder or a PEFT LoRA adapter."""

    name: str = Field(pattern=ARM_NAME_PATTERN)
    model: str | None = Field(default=None, description="HF model folder of a full ARM.")
    adapter: str | None = Field(default=None, description="PEFT LoRA adapter folder.")
    adapter_base: str | None = Field(
        default=None, description="Model the adapter was trained on; default: the base model."
    )
    default_weight: float = 1.0
    min_weight: float = -5.0
    max_weight: float = 5.0
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> ArmConfig:
        if (self.model is None) == (self.adapter is None):
            raise ValueError("set exactly one of 'model' or 'adapter'")
        if self.adapter_base is not None and self.adapter is None:
            raise ValueError("'adapter_base' needs 'adapter'")
        for key in ("default_weight", "min_weight", "max_weight"):
            if not math.isfinite(getattr(self, key)):
                raise ValueError(f"'{key}' must be finite")
        if not self.min_weight <= self.default_weight <= self.max_weight:
            raise ValueError(
                f"need min_weight <= default_weight <= max_weight, got "
                f"{self.min_weight} <= {self.default_weight} <= {self.max_weight}"
            )
        return self


class RewardModelConfig(_Strict):
    """A trajectory-level reward model: an HF sequence-classification folder, one
    output per objective, served by a vLLM pooling engine of its own."""

    name: str = Field(pattern=ARM_NAME_PATTERN)
    model: str = Field(description="HF folder of a *ForSequenceClassification model.")
    objectives: list[str] | None = Field(
        default=None,
        min_length=1,
        description="One name per output, in order; default: the model's id2label, or "
        "'score' for a single output.",
    )
    objective_weights: dict[str, float] | None = Field(
        default=None,
        description="Default weight of each objective in the combined score (objectives "
        "left out: 0); default: every objective 1 / number of objectives (the mean).",
    )
    description: str = ""
    max_batch: int = Field(default=64, ge=1, description="Items per /v1/rewards request.")
    max_model_len: int = Field(default=2048, ge=16)
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        default=None, description="default: engine.dtype"
    )
    kv_cache_gib: float = Field(default=0.25, gt=0, description="This engine's KV cache.")
    gpu_memory_utilization: float = Field(
        default=0.1, gt=0, le=1, description="GPU: this engine's share of the device memory."
    )

    @model_validator(mode="after")
    def _check(self) -> RewardModelConfig:
        if self.objectives is not None:
            for name in self.objectives:
                if not re.fullmatch(ARM_NAME_PATTERN, name):
                    raise ValueError(f"objective name {name!r} must match {ARM_NAME_PATTERN}")
            if len(set(self.objectives)) != len(self.objectives):
                raise ValueError("objective names must be unique")
        for key, weight in (self.objective_weights or {}).items():
            if not math.isfinite(weight):
                raise ValueError(f"objective_weights.{key} must be finite")
            if self.objectives is not None and key not in self.objectives:
                raise ValueError(f"objective_weights names {key!r}, not one of the objectives")
        return self


class EngineConfig(_Strict):
    """Options passed through to vLLM's engine."""

    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "bfloat16"
    max_model_len: int = Field(default=4096, ge=16)
    tensor_parallel_size: int = Field(default=1, ge=1)
    pipeline_parallel_size: int = Field(
        default=1, ge=1, description="Plain vLLM only: the composite model refuses it."
    )
    distributed_executor_backend: Literal["mp", "ray"] | None = Field(
        default=None,
        description="vLLM's executor for more than one device: 'mp' (processes, one host or "
        "several with nnodes) or 'ray' (an existing Ray cluster); null: vLLM chooses.",
    )
    nnodes: int = Field(default=1, ge=1, description="Hosts of an 'mp' multi-node engine.")
    node_rank: int = Field(default=0, ge=0, description="This host's rank among nnodes.")
    master_addr: str = Field(default="127.0.0.1", description="Rank 0's address (nnodes > 1).")
    master_port: int = Field(default=29501, ge=1, le=65535)
    max_num_seqs: int = Field(default=64, ge=1)
    max_num_batched_tokens: int | None = Field(default=None, ge=16)
    # Compiled by default (1.02-1.17x eager's decode speed at concurrency 16 on a
    # 2-core Intel Xeon, docs/config.md); the first start of a deployment
    # compiles, later ones load the graphs from vLLM's cache.
    enforce_eager: bool = False
    enable_prefix_caching: bool = True
    kv_cache_gib: float | None = Field(
        default=2.0, gt=0, description="KV cache size in GiB; null: vLLM sizes it (GPU)."
    )
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    seed: int = 0
    cache_dir: str = Field(
        default="~/.cache/genarm", description="Where merged LoRA ARMs and prepared models go."
    )

    @model_validator(mode="after")
    def _nodes(self) -> EngineConfig:
        if self.node_rank >= self.nnodes:
            raise ValueError(f"need node_rank < nnodes, got {self.node_rank} >= {self.nnodes}")
        return self


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    api_keys: list[str] = Field(default_factory=list)
    served_model_name: str | None = None
    max_waiting_requests: int = Field(default=256, ge=1)
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    max_header_bytes: int = Field(
        default=64 << 10, ge=1024, description="request line + headers; larger: 431"
    )
    shutdown_grace_seconds: float = Field(
        default=30.0,
        ge=0,
        description="on SIGTERM, how long requests in flight may finish before they are ended",
    )
    engine_watchdog_seconds: float = Field(
        default=5.0,
        ge=0,
        description="how often the server checks that its engines are alive: one that died "
        "stops the server (exit 1) even with no request running (0: only a request notices)",
    )


class DeploymentConfig(_Strict):
    base: BaseModelConfig
    arms: list[ArmConfig] = Field(default_factory=list)
    reward_models: list[RewardModelConfig] = Field(default_factory=list)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)

    @model_validator(mode="after")
    def _no_pipeline_stages_with_arms(self) -> DeploymentConfig:
        if self.arms and self.engine.pipeline_parallel_size > 1:
            raise ValueError(
                "engine.pipeline_parallel_size > 1 is not supported with ARMs: the composite "
                "model runs the base and every ARM in one forward and hands the sampler their "
                "concatenated hidden states, while vLLM's pipeline stages split one decoder's "
                "layers and pass a single hidden state between hosts. Shard with "
                "tensor_parallel_size instead (distributed_executor_backend 'mp' with nnodes "
                "for several hosts, or 'ray')"
            )
        return self

    @field_validator("arms")
    @classmethod
    def _unique_names(cls, arms: list[ArmConfig]) -> list[ArmConfig]:
        names = [a.name for a in arms]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"ARM names must be unique; repeated: {', '.join(dupes)}")
        return arms

    @field_validator("reward_models")
    @classmethod
    def _unique_reward_model_names(cls, models: list[RewardModelConfig]):
        names = [m.name for m in models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"reward model names must be unique; repeated: {', '.join(dupes)}")
        return models

    def arm(self, name: str) -> ArmConfig:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(name)


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {path}: {msg}")
    return "\n".join(lines)


def _resolve_paths(data: dict, root: Path) -> dict:
    """Make relative model/adapter paths relative to the config file's folder."""

    def fix(value: str | None) -> str | None:
        if value is None:
            return None
        p = Path(os.path.expanduser(value))
        return str(p if p.is_absolute() else (root / p).resolve())

    base = data.get("base")
    if isinstance(base, dict):
        for key in ("model", "tokenizer"):
            if isinstance(base.get(key), str):
                base[key] = fix(base[key])
    for arm in data.get("arms") or []:
        if isinstance(arm, dict):
            for key in ("model", "adapter", "adapter_base"):
                if isinstance(arm.get(key), str):
                    arm[key] = fix(arm[key])
    for reward_model in data.get("reward_models") or []:
        if isinstance(reward_model, dict) and isinstance(reward_model.get("model"), str):
            reward_model["model"] = fix(reward_model["model"])
    return data


def parse_config(data: dict, source: str = "<dict>", root: Path | None = None) -> DeploymentConfig:
    """Validate a config mapping; relative paths resolve against ``root`` when given."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {source}: the top level must be a mapping")
    if root is not None:
        data = _resolve_paths(data, root)
    try:
        return DeploymentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def load_config(path: str | os.PathLike) -> DeploymentConfig:
    """Read and validate a deployment YAML file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config {path} is not valid YAML: {err}") from None
    return parse_config(data or {}, source=str(path), root=path.parent.resolve())
