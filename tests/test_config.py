"""One test per deployment-config validation rule, plus the reward-weight rules."""

from __future__ import annotations

import math

import pytest

from genarm.config import ConfigError, load_config, parse_config
from genarm.reward_weights import ArmSpec, RewardWeightError, resolve_reward_weights


def minimal(**extra) -> dict:
    return {"base": {"model": "/models/base"}, **extra}


def arm(**fields) -> dict:
    return {"name": "concise", "model": "/models/arm", **fields}


def assert_rejected(data: dict, *fragments: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_minimal_config_gets_defaults():
    cfg = parse_config(minimal())
    assert cfg.arms == [] and cfg.engine.dtype == "bfloat16"
    assert cfg.server.host == "127.0.0.1" and cfg.server.port == 8000


def test_full_example_from_the_docs(tmp_path):
    text = """
base: {model: base, quantization: null}
arms:
  - {name: concise, model: arm, default_weight: 1.0, min_weight: -5.0, max_weight: 5.0,
     description: "short answers"}
  - {name: harmless, adapter: lora, default_weight: 0.5}
engine: {dtype: bfloat16, max_model_len: 4096, tensor_parallel_size: 1}
server: {host: 127.0.0.1, port: 8000, api_keys: []}
"""
    path = tmp_path / "deploy.yaml"
    path.write_text(text)
    cfg = load_config(path)
    # Relative paths resolve against the config file's folder.
    assert cfg.base.model == str(tmp_path / "base")
    assert cfg.arm("harmless").adapter == str(tmp_path / "lora")
    assert cfg.arm("concise").description == "short answers"


@pytest.mark.parametrize(
    ("data", "path"),
    [
        (minimal(extra=1), "extra: unknown key"),
        (minimal(base={"model": "m", "quant": "gptq"}), "base.quant: unknown key"),
        (minimal(arms=[arm(weight=1)]), "arms.0.weight: unknown key"),
        (minimal(engine={"dtyp": "float32"}), "engine.dtyp: unknown key"),
        (minimal(server={"key": "x"}), "server.key: unknown key"),
    ],
)
def test_unknown_keys_are_rejected_with_their_path(data, path):
    assert_rejected(data, path)


def test_base_model_is_required():
    assert_rejected({"arms": []}, "base: Field required")


def test_arm_needs_exactly_one_source():
    assert_rejected(minimal(arms=[{"name": "x"}]), "arms.0", "exactly one of 'model' or 'adapter'")
    assert_rejected(
        minimal(arms=[arm(adapter="/lora")]), "arms.0", "exactly one of 'model' or 'adapter'"
    )


def test_adapter_base_needs_adapter():
    assert_rejected(minimal(arms=[arm(adapter_base="/b")]), "'adapter_base' needs 'adapter'")


def test_weight_bounds_must_hold():
    assert_rejected(minimal(arms=[arm(default_weight=6.0)]), "arms.0", "min_weight <= default")
    assert_rejected(minimal(arms=[arm(min_weight=2.0, max_weight=1.0)]), "arms.0")


def test_weights_must_be_finite():
    assert_rejected(minimal(arms=[arm(max_weight=math.inf)]), "arms.0", "finite")


def test_arm_names_unique_and_well_formed():
    assert_rejected(minimal(arms=[arm(), arm()]), "arms", "repeated: concise")
    assert_rejected(minimal(arms=[arm(name="has space")]), "arms.0.name")


def test_quantization_is_gptq_or_awq():
    assert parse_config(minimal(base={"model": "m", "quantization": "gptq"})).base.quantization
    assert_rejected(minimal(base={"model": "m", "quantization": "int3"}), "base.quantization")


def test_engine_and_server_ranges():
    assert_rejected(minimal(engine={"tensor_parallel_size": 0}), "engine.tensor_parallel_size")
    assert_rejected(minimal(engine={"dtype": "float8"}), "engine.dtype")
    assert_rejected(minimal(server={"port": 70000}), "server.port")


def test_distributed_settings_and_the_pipeline_refusal():
    cfg = parse_config(
        minimal(
            engine={
                "tensor_parallel_size": 4,
                "distributed_executor_backend": "mp",
                "nnodes": 2,
                "node_rank": 1,
                "master_addr": "10.0.0.1",
            }
        )
    )
    assert (cfg.engine.nnodes, cfg.engine.node_rank, cfg.engine.master_port) == (2, 1, 29501)
    assert_rejected(minimal(engine={"distributed_executor_backend": "slurm"}), "engine")
    assert_rejected(minimal(engine={"nnodes": 2, "node_rank": 2}), "node_rank < nnodes")
    # Plain vLLM may use pipeline stages; the composite refuses them, saying why.
    assert parse_config(minimal(engine={"pipeline_parallel_size": 2})).engine
    with pytest.raises(ConfigError, match="pipeline_parallel_size > 1 is not supported with ARMs"):
        parse_config(minimal(arms=[arm()], engine={"pipeline_parallel_size": 2}))


def rm(**fields) -> dict:
    return {"name": "aspects", "model": "/models/rm", **fields}


def test_reward_models_resolve_and_validate(tmp_path):
    path = tmp_path / "deploy.yaml"
    path.write_text("base: {model: base}\nreward_models: [{name: judge, model: rm}]\n")
    cfg = load_config(path)
    assert cfg.reward_models[0].model == str(tmp_path / "rm")
    assert cfg.reward_models[0].max_batch == 64 and cfg.reward_models[0].objectives is None
    assert_rejected(minimal(reward_models=[rm(), rm()]), "repeated: aspects")
    assert_rejected(minimal(reward_models=[rm(objectives=["a b"])]), "objective name")
    assert_rejected(minimal(reward_models=[rm(objectives=["a", "a"])]), "unique")
    assert_rejected(
        minimal(reward_models=[rm(objectives=["a"], objective_weights={"b": 1})]),
        "reward_models.0",
        "not one of the objectives",
    )
    assert_rejected(minimal(reward_models=[rm(objective_weights={"a": math.inf})]), "finite")
    assert_rejected(minimal(reward_models=[rm(max_batch=0)]), "reward_models.0.max_batch")
    assert_rejected(minimal(reward_models=[rm(head=1)]), "reward_models.0.head: unknown key")


def test_reward_model_objectives_come_from_the_head(tiny_reward_models):
    from genarm.config import RewardModelConfig
    from genarm.engine.reward_engine import objective_weights, reward_model_objectives

    three, one = tiny_reward_models["three"], tiny_reward_models["one"]
    aspects = ["helpful", "harmless", "concise"]
    assert reward_model_objectives(RewardModelConfig(name="r", model=three)) == aspects
    assert reward_model_objectives(RewardModelConfig(name="r", model=one)) == ["score"]
    renamed = RewardModelConfig(name="r", model=three, objectives=["x", "y", "z"])
    assert reward_model_objectives(renamed) == ["x", "y", "z"]
    with pytest.raises(ConfigError, match="2 objectives configured, but its head"):
        reward_model_objectives(RewardModelConfig(name="r", model=three, objectives=["x", "y"]))
    mean = objective_weights(RewardModelConfig(name="r", model=three), aspects)
    assert mean == dict.fromkeys(aspects, 1 / 3)
    some = RewardModelConfig(name="r", model=three, objective_weights={"concise": 2.0})
    assert objective_weights(some, aspects) == {"helpful": 0.0, "harmless": 0.0, "concise": 2.0}
    with pytest.raises(ConfigError, match="not one of its objectives"):
        objective_weights(
            RewardModelConfig(name="r", model=one, objective_weights={"x": 1}), ["score"]
        )


def test_unnamed_outputs_must_be_named(tiny_models, tmp_path):
    from transformers import AutoTokenizer

    from genarm.config import RewardModelConfig
    from genarm.engine.reward_engine import reward_model_objectives
    from genarm.tiny_models import make_reward_model

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["base"])
    path = make_reward_model(tmp_path / "rm", tokenizer, ["a", "b"], seed=0)
    config = path / "config.json"
    config.write_text(config.read_text().replace('"a"', '"LABEL_0"').replace('"b"', '"LABEL_1"'))
    with pytest.raises(ConfigError, match="list them in reward_models"):
        reward_model_objectives(RewardModelConfig(name="r", model=str(path)))


def test_wrong_types_name_the_key():
    assert_rejected(minimal(engine={"max_model_len": "long"}), "engine.max_model_len")
    assert_rejected(minimal(server={"api_keys": "secret"}), "server.api_keys")


def test_file_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(top)


SPECS = [ArmSpec("a", default_weight=0.5), ArmSpec("b", default_weight=0.0, min_weight=-1.0)]


def test_resolve_weights_fills_defaults_in_spec_order():
    assert resolve_reward_weights(SPECS, None) == {"a": 0.5, "b": 0.0}
    assert resolve_reward_weights(SPECS, {"b": -1, "a": 2}) == {"a": 2.0, "b": -1.0}
    assert list(resolve_reward_weights(SPECS, {"b": 1.0})) == ["a", "b"]


@pytest.mark.parametrize(
    ("requested", "param", "message"),
    [
        ({"c": 1.0}, "reward_weights.c", "unknown ARM 'c'"),
        ({"a": math.nan}, "reward_weights.a", "finite"),
        ({"a": -math.inf}, "reward_weights.a", "finite"),
        ({"b": -1.5}, "reward_weights.b", "within [-1.0, 5.0]"),
        ({"a": "2"}, "reward_weights.a", "must be a number"),
        ({"a": False}, "reward_weights.a", "must be a number"),
        ([1, 2], "reward_weights", "must be an object"),
    ],
)
def test_resolve_weights_rejects_by_name(requested, param, message):
    with pytest.raises(RewardWeightError, match=message.replace("[", r"\[")) as err:
        resolve_reward_weights(SPECS, requested)
    assert err.value.param == param
